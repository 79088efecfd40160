"""Concurrent calls one media worker carries (issue 3), against a naive relay and rtpengine.

    python -m benchmarks.media_load --mode relay [--calls 200,400,800] [--duration 10]
    python -m benchmarks.media_load --mode audio [--calls 50,100,200,300] [--outage 100]
    python -m benchmarks.media_load --mode relay --scaling 1,2,4,8 [--generators G]

Each call is two G.711 streams of 50 packets/s (100 packets/s in per call),
sent over loopback to engine worker processes by ``--generators`` load
generator processes (default 1), call i from generator i mod G.  relay:
the relay fast path, passing when loss < 0.1 % and p99 added latency < 2 ms;
the same load goes through two baselines: ``benchmarks.naive_relay``
(per-packet forwarding on uvloop, the engine's own loop) and, when the
``rtpengine`` binary is installed, a userspace rtpengine started by this
script (:mod:`benchmarks.rtpengine`).  audio: every call is recorded, which
puts it through the audio path (jitter buffer, PLC, mixing, recorder,
encoding), whose 20 ms tick sends a frame per leg; frames are counted at the
receiver against the wall clock (:func:`stream_figures`): each stream owes a
frame per 20 ms of the measured window, one arriving in fewer slots has lost
the rest, and a stall of N tick periods shows as N missed ticks.  It passes
when >= 99.9 % of the owed frames arrive, no tick is missed and the engine
never reports falling behind (``stalls``); ``--outage`` stops the generators
for a while halfway through, so every stream starts concealing loss on the
same tick and the tick must still hold.  CPU of the system under test is read
from /proc while packets are sent; ``calls/core`` projects it to one fully
busy core, the robust figure while the load generators share the machine;
``gen %`` is the busiest generator's CPU.

``--scaling`` finds, for each worker count W, the highest passing load with W
workers and W generators (or ``--generators``): calls per worker double from
``--start`` until a load fails (or ``--max`` per worker is reached), then are
bisected to within 1/8 of the failing load.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import multiprocessing
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import NamedTuple

import numpy as np
import uvloop

from benchmarks import rtpengine
from media.workers import WorkerPool, split_ports
from tests.harness import cpu_seconds, pin_process, reserve_cpu

HEADER = struct.Struct("!BBHII")
MARK = struct.Struct("!IBq")
TIMESPEC = struct.Struct("@qq")
#: Linux's SO_TIMESTAMPNS (also the SCM type of its ancillary data); Python does not export it.
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
PAYLOAD = 160
WARMUP = 1.0
#: The audio path's tick, one frame per stream each (RFC 3551 §4.5.14: 20 ms of PCMU).
TICK_NS = 20_000_000
#: Frames whose median fixes a stream's phase at either end of the window.
ANCHOR = 10
#: Send groups per 20 ms frame: at 1,000 calls, 25 packets every 0.25 ms.
SLOTS = 80
#: Wide enough for 4 ports per call (RTP and RTCP per leg), split between the workers.
RTP_PORTS = (10000, 65000)
#: rtpengine's relay ports: 4 per call as well, below the kernel's ephemeral range.
RTPENGINE_PORTS = (20000, 29999)
NAIVE = "naive uvloop"
RTPENGINE = "rtpengine"
Address = tuple[str, int]
Target = tuple[Address, Address]


@dataclass
class Result:
    """One load level."""

    system: str
    calls: int
    sent: int
    received: int
    p50_ms: float
    p99_ms: float
    cpu: float
    generator_cpu: float
    missed: int | None = None
    """Audio path: ticks the engine skipped, from the receiver's timing."""
    stalls: int | None = None
    """Engine only: times it reported falling a tick or more behind."""

    @property
    def loss(self) -> float:
        return 1 - self.received / self.sent if self.sent else 1.0

    @property
    def calls_per_core(self) -> float:
        """Calls one core would carry at this CPU cost per call."""
        return 100 * self.calls / self.cpu if self.cpu > 0 else float("nan")


class Frames(NamedTuple):
    """One audio-path output stream over the measured window, on the receiver's clock."""

    slots: int
    """20 ms slots of the window, each owing a frame."""
    received: int
    """Frames that arrived in the window's slots."""
    missed: int
    """Ticks the engine skipped: how many slots its frames fell behind their sequence numbers."""


def stream_figures(seqs: list[int], arrivals: list[int], start: int, end: int) -> Frames:
    """Frames owed and received in ``[start, end)`` (ns, arrival clock) by one 20 ms stream.

    The stream's phase is the median of its frames' arrival minus 20 ms per
    sequence number (RFC 3550 §5.1, wrap-safe as in A.1) over the :data:`ANCHOR`
    frames before the window, so a frame may arrive up to 10 ms early or late
    and still count in its slot at either end of the window.  A tick the engine
    skips uses no sequence number (the next frame comes one slot later): the
    window receives one frame fewer, and every later frame sits one slot further
    behind its sequence number.  Missed ticks are that lag over the last frames
    of the window.
    """
    arrival = np.asarray(arrivals, np.int64)
    if not arrival.size:
        return Frames(round((end - start) / TICK_NS), 0, 0)
    steps = np.mod(np.diff(np.asarray(seqs, np.int64)) + 32768, 65536) - 32768
    index = np.concatenate(([0], np.cumsum(steps)))
    before = np.flatnonzero(arrival < start)
    anchor = before[-ANCHOR:] if before.size else np.arange(min(ANCHOR, arrival.size))
    phase = int(np.median(arrival[anchor] - index[anchor] * TICK_NS))
    slot = np.rint((arrival - phase) / TICK_NS).astype(np.int64)
    first, last = -((phase - start) // TICK_NS), -((phase - end) // TICK_NS)
    inside = np.flatnonzero((slot >= first) & (slot < last))
    lag = slot[inside] - index[inside]
    missed = max(0, int(np.median(lag[-ANCHOR:]))) if inside.size else 0
    slots = int(last - first)
    return Frames(slots, min(slots, inside.size), missed)


@dataclass
class Counts:
    """What generators measured over one load level."""

    sent: int
    received: int
    #: Added latency of each relayed packet received while measuring, in ns.
    latencies: np.ndarray
    #: Audio path: each engine output stream's frames, by the engine address it comes from.
    streams: dict[Address, Frames]
    #: CPU of the pids the generators were given, and of the busiest generator, in cores.
    cpu: float
    generator_cpu: float

    @classmethod
    def merge(cls, parts: list[Counts]) -> Counts:
        return cls(
            sum(p.sent for p in parts),
            sum(p.received for p in parts),
            np.concatenate([p.latencies for p in parts]),
            {k: v for p in parts for k, v in p.streams.items()},
            sum(p.cpu for p in parts),
            max(p.generator_cpu for p in parts),
        )


class Generator:
    """Two sockets playing the A and B side of each of ``targets``' calls."""

    def __init__(self, targets: list[Target]) -> None:
        self.targets = targets
        self.sides = [self._socket(), self._socket()]
        self.latencies: list[int] = []
        self.received = 0
        #: Audio path: sequence numbers and arrival times (ns) of each output stream's
        #: frames, warm-up included, by the engine address they come from.
        self.frames: dict[Address, tuple[list[int], list[int]]] = {}
        self.measuring = False
        self.measure_from_ns = 1 << 62
        self.marked = True
        """Whether packets carry their send time (relay) or not (audio path)."""

    @staticmethod
    def _socket() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
        # Kernel receive timestamps: the generator's own scheduling delay is not
        # charged to the system under test.
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        return sock

    def addresses(self) -> list[Address]:
        return [sock.getsockname()[:2] for sock in self.sides]

    def _readable(self, sock: socket.socket) -> None:
        buf = bytearray(2048)
        space = socket.CMSG_SPACE(TIMESPEC.size)
        while True:
            try:
                size, ancillary, _, source = sock.recvmsg_into([buf], space)
            except BlockingIOError:
                return
            if size < 12 + MARK.size:
                continue
            arrival = next(
                (
                    seconds * 1_000_000_000 + nanos
                    for level, kind, data in ancillary
                    if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS
                    for seconds, nanos in [TIMESPEC.unpack(data[: TIMESPEC.size])]
                ),
                None,
            )
            if not self.marked:
                # Audio-path output: the engine's own frames, kept with their arrival
                # times for :func:`stream_figures`.  (Their payload is audio:
                # concealment makes any bytes of it, so it cannot say whether a
                # packet is marked.)
                frames = self.frames.get(source)
                if frames is not None and arrival is not None:
                    frames[0].append(HEADER.unpack_from(buf)[2])
                    frames[1].append(arrival)
                continue
            # Relayed packets carry their send time and count when sent while measuring.
            _, _, sent_ns = MARK.unpack_from(buf, 12)
            if sent_ns < self.measure_from_ns:
                continue
            self.received += 1
            if arrival is not None:
                self.latencies.append(arrival - sent_ns)

    def run(self, duration: float, *, marked: bool, pids: list[int], outage: float = 0.0) -> Counts:
        """Send for ``duration`` s after warm-up.

        Each call's packets leave at its own phase of the 20 ms frame, in
        :data:`SLOTS` groups per frame, as phones with independent clocks would
        send them; a plain loop with ``time.sleep`` paces them (the event loop's
        timers have a resolution of 1 ms) and reads what came back after each
        group: latency is measured on kernel receive timestamps, so reading late
        does not add to it.  CPU (``pids``' and this process's) is measured while
        packets are sent (:func:`cpu_share`), warm-up included.  For ``outage``
        seconds halfway through, nothing is sent: every stream loses its packets
        at once.
        """
        self.marked = marked
        if not marked:
            self.frames = {source: ([], []) for target in self.targets for source in target}
        since = cpu_snapshot(pids)
        own_since = cpu_snapshot([os.getpid()])
        seq = 0
        ssrcs = [(os.getpid() * 4096 + i) & 0xFFFFFFFF for i in range(2 * len(self.targets))]
        per_slot = -(-len(self.targets) // SLOTS)
        start = time.monotonic()
        sent = 0
        tick = 0
        filler = bytes(PAYLOAD - MARK.size)
        silent_from = WARMUP + duration / 2
        while True:
            elapsed = time.monotonic() - start
            if elapsed >= WARMUP + duration:
                break
            if elapsed >= WARMUP and not self.measuring:
                self.measuring = True
                self.measure_from_ns = time.time_ns()
            slot = tick % SLOTS
            frame = tick // SLOTS
            silent = silent_from <= elapsed < silent_from + outage
            chunk = [] if silent else self.targets[slot * per_slot : (slot + 1) * per_slot]
            for offset, (to_a, to_b) in enumerate(chunk):
                call = slot * per_slot + offset
                for side, dest in enumerate((to_a, to_b)):
                    header = HEADER.pack(
                        0x80,
                        0,
                        (frame + seq) & 0xFFFF,
                        (frame * PAYLOAD) & 0xFFFFFFFF,
                        ssrcs[2 * call + side],
                    )
                    mark = MARK.pack(call, side, time.time_ns() if marked else 0)
                    self.sides[side].sendto(header + mark + filler, dest)
                    if self.measuring:
                        sent += 1
            tick += 1
            self._drain()
            time.sleep(max(0.0, start + tick * 0.02 / SLOTS - time.monotonic()))
        self.measuring = False
        cpu = cpu_share(pids, since)
        own_cpu = cpu_share([os.getpid()], own_since)
        time.sleep(0.3)  # let the last packets arrive
        self._drain()
        latencies = np.asarray(self.latencies, dtype=np.int64)
        end = self.measure_from_ns + round(duration * 1e9)
        streams = {
            source: stream_figures(seqs, arrivals, self.measure_from_ns, end)
            for source, (seqs, arrivals) in self.frames.items()
        }
        return Counts(sent, self.received, latencies, streams, cpu, own_cpu)

    def _drain(self) -> None:
        for sock in self.sides:
            self._readable(sock)

    def close(self) -> None:
        for sock in self.sides:
            sock.close()


def cpu_snapshot(pids: list[int]) -> tuple[float, float]:
    """Wall-clock time and the CPU seconds ``pids`` have used, now."""
    return time.monotonic(), sum(cpu_seconds(pid) for pid in pids)


def cpu_share(pids: list[int], since: tuple[float, float]) -> float:
    """CPU ``pids`` used since the snapshot ``since``, in cores (1.0 = one core busy)."""
    wall, cpu = cpu_snapshot(pids)
    return (cpu - since[1]) / (wall - since[0])


def percentile_ms(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q)) / 1e6 if values.size else float("nan")


def _generate(conn: Connection) -> None:
    """One generator process: sends its addresses, gets its calls, sends back its counts."""
    generator = Generator([])
    try:
        conn.send(generator.addresses())
        generator.targets, duration, marked, pids, start_at, outage = conn.recv()
        time.sleep(max(0.0, start_at - time.time()))
        conn.send(generator.run(duration, marked=marked, pids=pids, outage=outage))
    finally:
        generator.close()
        conn.close()


class Generators:
    """``count`` generator processes; call i is played by process i mod ``count``."""

    def __init__(self, count: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.pipes: list[Connection] = []
        self.processes: list[multiprocessing.process.BaseProcess] = []
        for _ in range(count):
            ours, theirs = context.Pipe()
            process = context.Process(target=_generate, args=(theirs,), daemon=True)
            process.start()
            theirs.close()
            self.pipes.append(ours)
            self.processes.append(process)
        self.addresses: list[list[Address]] = []

    async def start(self) -> None:
        """Wait for every process's A and B side addresses."""
        self.addresses = [await asyncio.to_thread(pipe.recv) for pipe in self.pipes]

    def sides(self, call: int) -> list[Address]:
        """The A and B side addresses playing call number ``call``."""
        return self.addresses[call % len(self.addresses)]

    async def run(
        self,
        targets: list[Target],
        duration: float,
        *,
        marked: bool,
        pids: list[int],
        start_at: float | None = None,
        outage: float = 0.0,
    ) -> Counts:
        """Play every call's ``targets`` (in call order), all processes at once.

        Sending starts at ``start_at`` (wall clock; default in 0.5 s), measuring
        ``WARMUP`` seconds later.  The first process also reads ``pids``' CPU.
        ``outage``: see :meth:`Generator.run`.
        """
        start_at = time.time() + 0.5 if start_at is None else start_at
        count = len(self.pipes)
        for index, pipe in enumerate(self.pipes):
            mine = targets[index::count]
            pipe.send((mine, duration, marked, pids if index == 0 else [], start_at, outage))
        parts = await asyncio.gather(*(asyncio.to_thread(pipe.recv) for pipe in self.pipes))
        return Counts.merge(list(parts))

    def close(self) -> None:
        for pipe in self.pipes:
            pipe.close()
        for process in self.processes:
            process.join(timeout=5)
            if process.is_alive():
                process.terminate()
                process.join()


def level_result(system: str, calls: int, counts: Counts) -> Result:
    """Relayed packets: how many of those sent while measuring came back, and how late."""
    return Result(
        system,
        calls,
        counts.sent,
        counts.received,
        percentile_ms(counts.latencies, 50),
        percentile_ms(counts.latencies, 99),
        100 * counts.cpu,
        100 * counts.generator_cpu,
    )


def missed_ticks(streams: dict[Address, Frames], workers: int) -> int:
    """Ticks skipped by all workers: per worker, the median over the streams it sends from.

    Every stream of a worker shares its tick, so the median ignores a stream whose
    frames happen to arrive near half a tick off their phase.
    """
    lows = [low for low, _ in split_ports(*RTP_PORTS, workers)]
    by_worker: dict[int, list[int]] = {}
    for (_, port), frames in streams.items():
        worker = max(i for i, low in enumerate(lows) if port >= low)
        by_worker.setdefault(worker, []).append(frames.missed)
    return sum(math.ceil(np.median(missed)) for missed in by_worker.values())


async def engine_level(
    calls: int,
    duration: float,
    mode: str,
    workers: int,
    generators: int,
    system_cpu: int | None = None,
    outage: float = 0.0,
) -> Result:
    pool = WorkerPool(workers, rtp_ports=RTP_PORTS, host="127.0.0.1")
    await pool.start()
    if system_cpu is not None:
        for pid in pool.pids:
            pin_process(pid, {system_cpu})
    record_dir = tempfile.mkdtemp(prefix="voipcore-bench-")
    players = Generators(generators)
    try:
        await players.start()
        targets: list[Target] = []
        pcmu = [{"pt": 0, "name": "PCMU", "rate": 8000}]
        for index in range(calls):
            call_id = f"bench-{index}"
            side_a, side_b = players.sides(index)
            a = await pool.request(
                "offer",
                {
                    "call_id": call_id,
                    "leg": "a",
                    "codecs": pcmu,
                    "remote": {"host": side_a[0], "port": side_a[1]},
                },
            )
            b = await pool.request(
                "answer",
                {
                    "call_id": call_id,
                    "leg": "b",
                    "codecs": pcmu,
                    "remote": {"host": side_b[0], "port": side_b[1]},
                },
            )
            targets.append(
                ((a["local"]["host"], a["local"]["port"]), (b["local"]["host"], b["local"]["port"]))
            )
            if mode == "audio":
                await pool.request(
                    "record",
                    {
                        "call_id": call_id,
                        "action": "start",
                        "file": os.path.join(record_dir, f"{index}.wav"),
                    },
                )
        # Stalls are counted over the measured window, like the frames: once the
        # generators stop, every stream conceals at once, which is not the load's
        # doing (``--outage`` puts such a moment inside the window on purpose).
        start_at = time.time() + 0.5
        measured = start_at + WARMUP
        stalls_before, stalls_after, counts = await asyncio.gather(
            _worker_stalls_at(pool, measured),
            _worker_stalls_at(pool, measured + duration),
            players.run(
                targets,
                duration,
                marked=mode == "relay",
                pids=pool.pids,
                start_at=start_at,
                outage=outage,
            ),
        )
        result = level_result("voipcore" + (f" x{workers}" if workers > 1 else ""), calls, counts)
        result.stalls = stalls_after - stalls_before
        if mode == "audio":
            # Frames owed by the wall clock, whatever the engine received or skipped.
            result.sent = sum(f.slots for f in counts.streams.values())
            result.received = sum(f.received for f in counts.streams.values())
            result.missed = missed_ticks(counts.streams, workers)
        return result
    finally:
        players.close()
        await pool.stop()


async def _worker_stalls_at(pool: WorkerPool, when: float) -> int:
    """Times all workers fell a tick or more behind so far, read at wall-clock ``when``."""
    await asyncio.sleep(max(0.0, when - time.time()))
    replies = (await pool.request("stats", {}))["workers"]
    return sum(int(r["tick_overruns"]) for r in replies)


class NaiveRelay:
    """``benchmarks.naive_relay`` in its own process, relaying on ports from 40000."""

    BASE = 40000

    def __init__(self, calls: int) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.naive_relay", "--calls", str(calls)]
            + ["--base", str(self.BASE)],
            stdout=subprocess.PIPE,
        )
        assert self.process.stdout is not None
        self.process.stdout.readline()  # "ready"
        self.pid = self.process.pid

    def relay(self, call: int, sides: list[Address]) -> Target:
        port = self.BASE + 4 * call
        return ("127.0.0.1", port), ("127.0.0.1", port + 2)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait()


class RtpEngineRelay:
    """A userspace rtpengine of this run's own, one call anchored per offer and answer."""

    def __init__(self) -> None:
        self.engine = rtpengine.RtpEngine(*RTPENGINE_PORTS)
        self.engine.wait_ready()
        self.pid = self.engine.pid

    def relay(self, call: int, sides: list[Address]) -> Target:
        return self.engine.relay(f"bench-{call}", sides[0], sides[1])

    def stop(self) -> None:
        self.engine.stop()


async def baseline_level(
    system: str, calls: int, duration: float, generators: int, system_cpu: int | None = None
) -> Result:
    """The relay load through ``system`` (:data:`NAIVE` or :data:`RTPENGINE`)."""
    relay = NaiveRelay(calls) if system == NAIVE else RtpEngineRelay()
    players = Generators(generators)
    try:
        if system_cpu is not None:
            pin_process(relay.pid, {system_cpu})
        await players.start()
        targets = [relay.relay(call, players.sides(call)) for call in range(calls)]
        counts = await players.run(targets, duration, marked=True, pids=[relay.pid])
        return level_result(system, calls, counts)
    finally:
        players.close()
        relay.stop()


def passes(result: Result, mode: str) -> bool:
    if mode == "relay":
        return result.loss < 0.001 and result.p99_ms < 2.0
    return result.loss < 0.001 and not result.missed and not result.stalls


HEADER_ROW = (
    f"{'system':<14} {'calls':>6} {'loss %':>8} {'p50 ms':>8} {'p99 ms':>8} "
    f"{'cpu %':>6} {'calls/core':>10} {'missed':>6} {'stalls':>6} {'gen %':>6}"
)


def row(result: Result, mode: str) -> str:
    ok = "pass" if passes(result, mode) else "FAIL"
    return (
        f"{result.system:<14} {result.calls:>6} {100 * result.loss:>8.3f} "
        f"{result.p50_ms:>8.3f} {result.p99_ms:>8.3f} {result.cpu:>6.1f} "
        f"{result.calls_per_core:>10.0f} {_count(result.missed):>6} {_count(result.stalls):>6} "
        f"{result.generator_cpu:>6.1f} {ok}"
    )


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)


def sharing(workers: int, generators: int) -> str:
    """A warning when workers and generators are more processes than the machine has cores."""
    cpus = os.cpu_count() or 1
    if workers + generators <= cpus:
        return ""
    return f"  WARNING: {workers} workers + {generators} generators share {cpus} cores"


async def highest_passing(
    mode: str, duration: float, workers: int, generators: int, start: int, most: int
) -> Result | None:
    """The highest passing load with ``workers`` workers, searched in calls per worker."""
    passed, failed = 0, 0
    best: Result | None = None
    per_worker = min(start, most)
    while True:
        result = await engine_level(per_worker * workers, duration, mode, workers, generators)
        print(row(result, mode), flush=True)
        if passes(result, mode):
            passed, best = per_worker, result
        else:
            failed = per_worker
        if not failed:
            if per_worker == most:
                return best
            per_worker = min(2 * per_worker, most)
        elif failed - passed <= max(1, failed // 8):
            return best
        else:
            per_worker = (passed + failed) // 2


async def scaling(args: argparse.Namespace, worker_counts: list[int]) -> None:
    start = args.start or (100 if args.mode == "relay" else 50)
    table = []
    for workers in worker_counts:
        generators = args.generators or workers
        low, high = split_ports(*RTP_PORTS, workers)[0]
        capacity = (high - low) // 4  # ports for this many calls per worker
        most = min(args.max or capacity, capacity)
        print(f"workers={workers} generators={generators}{sharing(workers, generators)}")
        print(HEADER_ROW)
        best = await highest_passing(args.mode, args.duration, workers, generators, start, most)
        table.append((workers, generators, best, most * workers))
    print(f"\nscaling mode={args.mode} duration={args.duration}s cpus={os.cpu_count()}")
    print(
        f"{'workers':>7} {'generators':>10} {'calls':>7} {'calls/worker':>12} "
        f"{'cpu %/100 calls':>15} {'gen %':>6}"
    )
    for workers, generators, best, most_calls in table:
        if best is None:
            print(f"{workers:>7} {generators:>10} {'none':>7}")
            continue
        calls = (">=" if best.calls == most_calls else "") + str(best.calls)
        print(
            f"{workers:>7} {generators:>10} {calls:>7} {best.calls / workers:>12.0f} "
            f"{100 * best.cpu / best.calls:>15.1f} {best.generator_cpu:>6.1f}"
            f"{sharing(workers, generators)}"
        )


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--mode", choices=("relay", "audio"), default="relay")
    parser.add_argument("--calls", default=None, help="comma-separated load levels")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument(
        "--generators", type=int, default=None, help="generator processes (1; --scaling: W)"
    )
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--scaling", default=None, help="comma-separated worker counts")
    parser.add_argument(
        "--start", type=int, default=None, help="--scaling: first calls per worker (100/50)"
    )
    parser.add_argument(
        "--max", type=int, default=None, help="--scaling: most calls per worker (ports)"
    )
    parser.add_argument(
        "--outage",
        type=float,
        default=0.0,
        metavar="MS",
        help="generators send nothing for MS ms halfway through: every stream conceals at once",
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help="the worker(s) and each baseline alone on the last CPU, generators on the others",
    )
    args = parser.parse_args()
    system_cpu: int | None = None
    if args.pin:
        if args.scaling:
            parser.error("--pin measures one core; --scaling spreads workers over the machine")
        try:
            # Generators and workers start off the reserved CPU; workers and the
            # baselines are then moved onto it.
            system_cpu = reserve_cpu()
        except RuntimeError as exc:
            parser.error(str(exc))
    if args.scaling:
        await scaling(args, [int(w) for w in args.scaling.split(",")])
        return
    generators = args.generators or 1
    default = "100,200,400,600,800,1000" if args.mode == "relay" else "50,100,200,300,400"
    levels = [int(c) for c in (args.calls or default).split(",")]
    placement = (
        f" pinned: system under test alone on CPU {system_cpu}, generators on the others"
        if system_cpu is not None
        else sharing(args.workers, generators)
    )
    print(
        f"media_load mode={args.mode} duration={args.duration}s workers={args.workers} "
        f"generators={generators} cpus={os.cpu_count()}{placement}"
    )
    baselines = [] if args.mode == "audio" or args.no_baseline else [NAIVE]
    if baselines and rtpengine.installed():
        baselines.append(RTPENGINE)
    elif baselines:
        print("rtpengine is not installed (Debian: rtpengine-daemon): its reference is skipped")
    print(HEADER_ROW)
    best: dict[str, int] = {}
    efficiency: dict[str, list[str]] = {system: [] for system in baselines}
    for calls in levels:
        ours = await engine_level(
            calls,
            args.duration,
            args.mode,
            args.workers,
            generators,
            system_cpu,
            args.outage / 1000,
        )
        results = [ours]
        for system in baselines:
            results.append(
                await baseline_level(system, calls, args.duration, generators, system_cpu)
            )
            efficiency[system].append(
                f"{ours.calls_per_core / results[-1].calls_per_core:.2f}x at {calls} calls"
            )
        for result in results:
            print(row(result, args.mode), flush=True)
            if passes(result, args.mode):
                best[result.system] = max(best.get(result.system, 0), calls)
    print("highest passing load:", ", ".join(f"{k}: {v} calls" for k, v in best.items()))
    highest = best.get(ours.system, 0)
    for system, ratios in efficiency.items():
        if best.get(system):
            print(f"highest passing load, voipcore / {system}: {highest / best[system]:.2f}")
        # A baseline may fail early; CPU per call compares the systems at every load.
        print(f"calls per core, voipcore / {system}:", ", ".join(ratios))


if __name__ == "__main__":
    uvloop.run(main())
