"""WebRTC legs per core with audio flowing both ways (issue 12), against stock aiortc.

    python -m benchmarks.webrtc_load --pin [--legs 50 100 200] [--seconds 20]
    python -m benchmarks.webrtc_load --pin --mode phone --codec opus --legs 60

The system under test is one media engine, ``python -m media.worker``, driven
over its control protocol (a Unix socket) and, with ``--pin``, alone on the
machine's last CPU.  Load comes from ``--clients`` processes on the other
CPUs, each playing its share of the calls with the light peers of
:mod:`benchmarks.webrtc_client` (ICE, DTLS-SRTP and one RTP packet per 20 ms
per leg, no decoding): every leg sends 50 packets/s and counts the SRTP packets
it receives.  Modes:

- ``relay``: a call is two browser legs of the same codec, each hearing the
  other (the engine's relay path: SRTP unprotected from one leg, protected for
  the other).  ``--legs N`` makes N/2 calls.
- ``phone``: a call is one browser leg bridged to a plain RTP phone leg in
  PCMA, so the audio path runs (jitter buffer, PLC, decode and encode each
  tick); with ``--codec opus`` the browser leg is Opus, decoded and encoded by
  the engine.  ``--legs N`` makes N calls; only browser legs are counted.

The baseline is :mod:`benchmarks.aiortc_bridge`: one ``RTCPeerConnection``
per leg in its own process (pinned the same way), the two legs of a call
bridged frame by frame as an aiortc application does it, driven by the same
clients in ``relay`` mode at ``--baseline-legs``.

Figures, over ``--seconds`` after ``--warmup``: the system's CPU (utime +
stime from /proc) in cores, CPU per leg, ``legs/core`` (legs over that CPU
share: what one busy core would carry), loss (for each leg, the packets its
peer sent that it did not receive, over all packets sent; target < 1 %) and
the clients' CPU, summed (with ``--pin`` they share the other CPUs: near
100 % per client CPU means the clients, not the system, were the limit).  A
level passes when every leg connected and loss < 1 %; the last line is the
ratio of legs per core, ours over aiortc's, at each system's highest passing
load.  Everything runs on 127.0.0.1 (aiortc's candidates are the host's own
address, which the kernel also delivers over loopback).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import uvloop

from benchmarks.webrtc_client import BrowserLeg, ClientLeg, PhoneLeg, tone_payloads
from media.control import ControlAddress, ControlClient, ControlError, UdpControlClient, connect
from media.webrtc import DtlsIdentity
from tests.harness import cpu_seconds, pin_process, reserve_cpu

VOIPCORE = "voipcore"
AIORTC = "aiortc"
#: The browser legs' codec, as the control protocol's ``codecs`` entry.
CODECS: dict[str, dict[str, Any]] = {
    "pcmu": {"pt": 0, "name": "PCMU", "rate": 8000},
    "opus": {"pt": 111, "name": "opus", "rate": 48000},
}
#: RTP clock ticks per 20 ms packet.
SAMPLES = {"pcmu": 160, "opus": 960}
#: The phone leg of ``--mode phone``: PCMA, so a PCMU browser leg is transcoded too.
PHONE_CODEC: dict[str, Any] = {"pt": 8, "name": "PCMA", "rate": 8000}
#: The engine's RTP ports: 2 per leg (its browser legs keep an unused RTCP port).
RTP_PORTS = (30000, 39999)
#: Send groups per 20 ms: the legs' packets leave spread over the frame, as
#: independent browsers send them.
SLOTS = 10
#: Loss at or above this fails a level (the issue's target: < 1 %).
MAX_LOSS = 0.01
CONNECT_TIMEOUT = 60.0
#: Seconds after sending stops for packets in flight to arrive.
DRAIN = 0.5
Address = tuple[str, int]
CallCounts = tuple[int, int, int, int]
"""One call: leg A sent, A received, B sent, B received."""


def calls_for(mode: str, legs: int) -> int:
    """Calls that make ``legs`` browser legs: two per call in relay mode, one in phone mode."""
    return -(-legs // 2) if mode == "relay" else legs


def browser_legs(mode: str, calls: int) -> int:
    return 2 * calls if mode == "relay" else calls


def loss(counts: list[CallCounts]) -> float:
    """Packets a leg's peer sent that the leg never received, over all packets sent.

    Counted per leg and clipped at zero, so a leg that received more than its
    peer sent (the audio path sends a frame every tick, whatever arrived) does
    not hide another leg's loss.
    """
    sent = sum(a + b for a, _, b, _ in counts)
    missing = sum(max(0, b - got_a) + max(0, a - got_b) for a, got_a, b, got_b in counts)
    return missing / sent if sent else 1.0


@dataclass
class Result:
    """One load level of one system."""

    system: str
    mode: str
    codec: str
    legs: int
    calls: int
    connected: int = 0
    """Browser legs whose ICE and DTLS completed."""
    connect_s: float = 0.0
    loss: float = 1.0
    cpu: float = 0.0
    """The system's CPU over the measured window, in cores."""
    client_cpu: float = 0.0
    """All client processes' CPU over the window, in cores."""
    stalls: int | None = None
    """Engine only: times its 20 ms tick fell behind during the window."""
    refused: str | None = None
    """Why the system refused the legs (a codec it does not support), if it did."""

    @property
    def cpu_per_leg(self) -> float:
        """Share of a core per browser leg."""
        return self.cpu / self.legs if self.legs else float("nan")

    @property
    def legs_per_core(self) -> float:
        return self.legs / self.cpu if self.cpu > 0 else float("nan")

    @property
    def passes(self) -> bool:
        return self.refused is None and self.connected == self.legs and self.loss < MAX_LOSS


def compare(results: list[Result]) -> str | None:
    """Legs per core, voipcore over aiortc, each at its highest passing load."""
    best: dict[str, Result] = {}
    for result in results:
        if result.passes and (result.system not in best or result.legs > best[result.system].legs):
            best[result.system] = result
    ours, theirs = best.get(VOIPCORE), best.get(AIORTC)
    if ours is None or theirs is None:
        return None
    return (
        f"legs per core, {VOIPCORE} / {AIORTC}: "
        f"{ours.legs_per_core / theirs.legs_per_core:.1f}x "
        f"({ours.legs_per_core:.0f} at {ours.legs} legs / "
        f"{theirs.legs_per_core:.0f} at {theirs.legs} legs)"
    )


HEADER_ROW = (
    f"{'system':<9} {'mode':<5} {'codec':<5} {'legs':>5} {'calls':>5} {'conn':>5} "
    f"{'conn s':>6} {'loss %':>7} {'cpu %':>6} {'cpu/leg %':>9} {'legs/core':>9} "
    f"{'calls/core':>10} {'clients %':>9} {'stalls':>6}"
)


def row(result: Result) -> str:
    head = (
        f"{result.system:<9} {result.mode:<5} {result.codec:<5} {result.legs:>5} {result.calls:>5}"
    )
    if result.refused is not None:
        return f"{head} not supported: {result.refused}"
    calls_per_core = result.calls / result.cpu if result.cpu > 0 else float("nan")
    stalls = "-" if result.stalls is None else str(result.stalls)
    return (
        f"{head} {result.connected:>5} {result.connect_s:>6.1f} {100 * result.loss:>7.3f} "
        f"{100 * result.cpu:>6.1f} {100 * result.cpu_per_leg:>9.3f} "
        f"{result.legs_per_core:>9.0f} {calls_per_core:>10.0f} {100 * result.client_cpu:>9.1f} "
        f"{stalls:>6} {'pass' if result.passes else 'FAIL'}"
    )


# -- client processes ------------------------------------------------------------


def _client(conn: Connection, calls: int, mode: str, codec: str) -> None:
    try:
        uvloop.run(_client_main(conn, calls, mode, codec))
    finally:
        conn.close()


async def _client_main(conn: Connection, calls: int, mode: str, codec: str) -> None:
    """Play ``calls`` calls: describe the legs, connect them, send, report the counts."""
    loop = asyncio.get_running_loop()
    identity = DtlsIdentity()
    pt, samples = int(CODECS[codec]["pt"]), SAMPLES[codec]
    payloads = tone_payloads(codec)
    phone_payloads = tone_payloads("PCMA")
    pairs: list[tuple[BrowserLeg, ClientLeg]] = []
    for _ in range(calls):
        a = BrowserLeg(identity, pt, payloads, samples)
        b: ClientLeg = (
            BrowserLeg(identity, pt, payloads, samples)
            if mode == "relay"
            else PhoneLeg(int(PHONE_CODEC["pt"]), phone_payloads, 160)
        )
        pairs.append((a, b))
    legs = [leg for pair in pairs for leg in pair]
    for leg in legs:
        loop.add_reader(leg.sock.fileno(), leg.readable)
    try:
        conn.send([[_describe(leg, identity) for leg in pair] for pair in pairs])
        answers = await asyncio.to_thread(conn.recv)
        if answers is None:
            return
        started = time.monotonic()
        for pair, replies in zip(pairs, answers, strict=True):
            for leg, reply in zip(pair, replies, strict=True):
                remote = (reply["local"]["host"], int(reply["local"]["port"]))
                if isinstance(leg, BrowserLeg):
                    leg.start(remote, reply["webrtc"]["ufrag"], reply["webrtc"]["pwd"])
                elif isinstance(leg, PhoneLeg):
                    leg.start(remote)
        browsers = [leg for leg in legs if isinstance(leg, BrowserLeg)]
        deadline = started + CONNECT_TIMEOUT
        while time.monotonic() < deadline and not all(
            leg.connected or leg.failed for leg in browsers
        ):
            await asyncio.sleep(0.2)
            for leg in browsers:
                leg.retransmit()
        failures = [leg.failed for leg in browsers if leg.failed]
        conn.send(
            (
                sum(leg.connected for leg in browsers),
                time.monotonic() - started,
                failures[:3],
            )
        )
        go = await asyncio.to_thread(conn.recv)
        if go is None:
            return
        start_at, warmup, seconds = go
        cpu, opened = await _send(legs, start_at, warmup, seconds)
        await asyncio.sleep(DRAIN)
        window = [
            (leg.sent - sent, leg.received - received)
            for leg, (sent, received) in zip(legs, opened, strict=True)
        ]
        counts = [(*window[2 * i], *window[2 * i + 1]) for i in range(len(pairs))]
        conn.send((counts, cpu))
    finally:
        for leg in legs:
            loop.remove_reader(leg.sock.fileno())
            leg.close()


def _describe(leg: ClientLeg, identity: DtlsIdentity) -> dict[str, Any]:
    host, port = leg.address
    if isinstance(leg, BrowserLeg):
        return {
            "host": host,
            "port": port,
            "ufrag": leg.ufrag,
            "pwd": leg.pwd,
            "fingerprint": identity.fingerprint,
        }
    return {"host": host, "port": port}


async def _send(
    legs: list[ClientLeg], start_at: float, warmup: float, seconds: float
) -> tuple[float, list[tuple[int, int]]]:
    """50 packets/s per leg in :data:`SLOTS` groups per 20 ms, from wall-clock ``start_at``.

    Returns this process's CPU (cores) over the ``seconds`` after ``warmup``, and each
    leg's (sent, received) counters when that window opened: loss is counted after
    warm-up, when every peer's media path has started.
    """
    loop = asyncio.get_running_loop()
    first = loop.time() + max(0.0, start_at - time.time())
    measure_from, end = first + warmup, first + warmup + seconds
    per_slot = -(-len(legs) // SLOTS)
    since: tuple[float, float] | None = None
    opened = [(0, 0)] * len(legs)
    tick = 0
    await asyncio.sleep(max(0.0, first - loop.time()))
    while (now := loop.time()) < end:
        if since is None and now >= measure_from:
            since = (time.monotonic(), time.process_time())
            opened = [(leg.sent, leg.received) for leg in legs]
        slot = tick % SLOTS
        for leg in legs[slot * per_slot : (slot + 1) * per_slot]:
            leg.send_frame()
        tick += 1
        await asyncio.sleep(max(0.0, first + tick * 0.02 / SLOTS - loop.time()))
    if since is None:
        return 0.0, opened
    return (time.process_time() - since[1]) / (time.monotonic() - since[0]), opened


class Clients:
    """Client processes; the calls are split between them in contiguous shares."""

    def __init__(self, count: int, calls: int, mode: str, codec: str) -> None:
        context = multiprocessing.get_context("spawn")
        count = max(1, min(count, calls))
        self.shares = [calls // count + (i < calls % count) for i in range(count)]
        self.pipes: list[Connection] = []
        self.processes: list[multiprocessing.process.BaseProcess] = []
        for share in self.shares:
            ours, theirs = context.Pipe()
            process = context.Process(
                target=_client, args=(theirs, share, mode, codec), daemon=True
            )
            process.start()
            theirs.close()
            self.pipes.append(ours)
            self.processes.append(process)

    async def gather(self) -> list[Any]:
        """One message from every process, in order."""
        return list(await asyncio.gather(*(asyncio.to_thread(p.recv) for p in self.pipes)))

    def send(self, messages: list[Any]) -> None:
        for pipe, message in zip(self.pipes, messages, strict=True):
            pipe.send(message)

    def close(self) -> None:
        for pipe in self.pipes:
            with contextlib.suppress(OSError):
                pipe.send(None)
            pipe.close()
        for process in self.processes:
            process.join(timeout=5)
            if process.is_alive():
                process.terminate()
                process.join()


# -- the system under test ---------------------------------------------------------


class System:
    """The engine worker or the aiortc bridge in its own process, on a Unix control socket."""

    def __init__(self, system: str, cpu: int | None) -> None:
        self.directory = tempfile.mkdtemp(prefix="webrtc-load-")
        address = f"unix:{os.path.join(self.directory, 'control.sock')}"
        if system == VOIPCORE:
            command = ["-m", "media.worker", "--control", address, "--log-level", "WARNING"]
            command += ["--ports", str(RTP_PORTS[0]), str(RTP_PORTS[1])]
        else:
            command = ["-m", "benchmarks.aiortc_bridge", "--control", address]
        self.process = subprocess.Popen([sys.executable, *command], stdout=subprocess.PIPE)
        assert self.process.stdout is not None
        line = self.process.stdout.readline().decode().split()
        if line[:1] != ["ready"]:
            self.process.kill()
            raise RuntimeError(f"{system} did not start")
        self.address = ControlAddress.parse(line[1])
        self.pid = self.process.pid
        if cpu is not None:
            pin_process(self.pid, {cpu})
        self.control: ControlClient | UdpControlClient | None = None

    async def connect(self) -> ControlClient | UdpControlClient:
        self.control = await connect(self.address)
        return self.control

    async def stop(self) -> None:
        if self.control is not None:
            await self.control.close()
        self.process.terminate()
        self.process.wait()


def _leg_args(call_id: str, leg: str, description: dict[str, Any], codec: str) -> dict[str, Any]:
    """The control request for one leg, from its client's description."""
    if "ufrag" not in description:
        return {
            "call_id": call_id,
            "leg": leg,
            "codecs": [PHONE_CODEC],
            "remote": {"host": description["host"], "port": description["port"]},
        }
    return {
        "call_id": call_id,
        "leg": leg,
        "codecs": [CODECS[codec]],
        "webrtc": {
            "ufrag": description["ufrag"],
            "pwd": description["pwd"],
            "fingerprints": [["sha-256", description["fingerprint"]]],
        },
    }


async def run_level(
    system: str,
    legs: int,
    mode: str,
    codec: str,
    seconds: float,
    warmup: float,
    clients: int,
    cpu: int | None,
) -> Result:
    calls = calls_for(mode, legs)
    result = Result(system, mode, codec, browser_legs(mode, calls), calls)
    sut = System(system, cpu)
    players = Clients(clients, calls, mode, codec)
    try:
        control = await sut.connect()
        descriptions = await players.gather()
        answers: list[list[list[dict[str, Any]]]] = []
        index = 0
        for share in descriptions:
            replies = []
            for pair in share:
                call_id = f"webrtc-{index}"
                index += 1
                pair_replies = []
                for leg, command, description in zip("ab", ("offer", "answer"), pair, strict=True):
                    args = _leg_args(call_id, leg, description, codec)
                    if system == AIORTC:
                        args["remote"] = {"host": description["host"], "port": description["port"]}
                    try:
                        pair_replies.append(await control.request(command, args))
                    except ControlError as exc:
                        result.refused = str(exc)
                        return result
                replies.append(pair_replies)
            answers.append(replies)
        players.send(answers)
        connected = await players.gather()
        result.connected = sum(c[0] for c in connected)
        result.connect_s = max(c[1] for c in connected)
        for _, _, failures in connected:
            for failure in failures:
                print(f"  {system}: a leg failed: {failure}", file=sys.stderr)
        start_at = time.time() + 0.5
        players.send([(start_at, warmup, seconds)] * len(players.pipes))
        measured = asyncio.ensure_future(_measure(sut, control, start_at + warmup, seconds))
        reports = await players.gather()
        result.cpu, result.stalls = await measured
        if system == AIORTC:
            result.stalls = None
        result.loss = loss([c for counts, _ in reports for c in counts])
        result.client_cpu = sum(c for _, c in reports)
        return result
    finally:
        players.close()
        await sut.stop()


async def _measure(
    sut: System, control: ControlClient | UdpControlClient, at: float, seconds: float
) -> tuple[float, int]:
    """The system's CPU (cores) over ``seconds`` from wall-clock ``at``, and its tick stalls."""
    await asyncio.sleep(max(0.0, at - time.time()))
    stalls = int((await control.request("stats", {})).get("tick_overruns", 0))
    since = time.monotonic(), cpu_seconds(sut.pid)
    await asyncio.sleep(seconds)
    cpu = (cpu_seconds(sut.pid) - since[1]) / (time.monotonic() - since[0])
    stalls = int((await control.request("stats", {})).get("tick_overruns", 0)) - stalls
    return cpu, stalls


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.webrtc_load",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--legs", type=int, nargs="+", default=[50, 100, 200], help="browser legs per level"
    )
    parser.add_argument("--mode", choices=("relay", "phone"), default="relay")
    parser.add_argument("--codec", choices=tuple(CODECS), default="pcmu")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds per level")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--clients", type=int, default=4, help="client processes")
    parser.add_argument(
        "--baseline-legs",
        type=int,
        nargs="*",
        default=[10, 20],
        help="aiortc levels (relay mode; none: no baseline)",
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help="the system under test alone on the last CPU, clients on the others",
    )
    args = parser.parse_args(argv)
    if min(args.legs + args.baseline_legs, default=1) < 1:
        parser.error("legs must be positive")
    if args.seconds <= 0 or args.warmup < 0 or args.clients < 1:
        parser.error("--seconds must be positive, --warmup not negative, --clients at least 1")
    return args


async def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    cpu: int | None = None
    if args.pin:
        try:
            cpu = reserve_cpu()
        except RuntimeError as exc:
            sys.exit(str(exc))
    placement = (
        f"pinned: system under test alone on CPU {cpu}, clients on "
        f"{sorted(os.sched_getaffinity(0))}"
        if cpu is not None
        else "not pinned"
    )
    load = os.getloadavg()[0]
    print(
        f"webrtc_load mode={args.mode} codec={args.codec} seconds={args.seconds} "
        f"warmup={args.warmup} clients={args.clients} cpus={os.cpu_count()} {placement} "
        f"load={load:.2f}",
        flush=True,
    )
    baseline = args.baseline_legs if args.mode == "relay" else []
    if args.mode != "relay" and args.baseline_legs:
        print("aiortc baseline runs in relay mode only: skipped")
    print(HEADER_ROW, flush=True)
    results = []
    plan = [(VOIPCORE, n) for n in args.legs] + [(AIORTC, n) for n in baseline]
    for system, legs in plan:
        result = await run_level(
            system, legs, args.mode, args.codec, args.seconds, args.warmup, args.clients, cpu
        )
        print(row(result), flush=True)
        results.append(result)
    line = compare(results)
    if line:
        print(line)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    uvloop.run(main())
