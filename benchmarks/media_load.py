"""Concurrent calls one media worker carries (issue 3), against a naive asyncio relay.

    python -m benchmarks.media_load --mode relay [--calls 200,400,800] [--duration 10]
    python -m benchmarks.media_load --mode audio [--calls 50,100,200,300] [--outage 100]
    python -m benchmarks.media_load --mode relay --scaling 1,2,4,8 [--generators G]

Each call is two G.711 streams of 50 packets/s (100 packets/s in per call),
sent over loopback to engine worker processes by ``--generators`` load
generator processes (default 1), call i from generator i mod G.  relay:
the relay fast path, passing when loss < 0.1 % and p99 added latency < 2 ms;
the same load through ``benchmarks.naive_relay`` (stdlib asyncio, per-packet
forwarding) is the baseline.  audio: every call is recorded, which puts it
through the audio path (jitter buffer, PLC, mixing, recorder, encoding);
passing when >= 99.9 % of the frames the engine sent arrive (counted by RTP
sequence number) and its 20 ms tick, a frame per leg each, never overruns;
``--outage`` stops the generators for a while halfway through, so every
stream starts concealing loss on the same tick and the tick must still hold.
Worker CPU is read from /proc while packets are sent; ``calls/core`` projects
it to one fully busy core, the robust figure while the load generators share
the machine; ``gen %`` is the busiest generator's CPU.

``--scaling`` finds, for each worker count W, the highest passing load with W
workers and W generators (or ``--generators``): calls per worker double from
``--start`` until a load fails (or ``--max`` per worker is reached), then are
bisected to within 1/8 of the failing load.
"""

from __future__ import annotations

import argparse
import asyncio
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

import numpy as np
import uvloop

from media.workers import WorkerPool, split_ports
from tests.harness import cpu_seconds, pin_process, reserve_cpu

HEADER = struct.Struct("!BBHII")
MARK = struct.Struct("!IBq")
TIMESPEC = struct.Struct("@qq")
#: Linux's SO_TIMESTAMPNS (also the SCM type of its ancillary data); Python does not export it.
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
PAYLOAD = 160
WARMUP = 1.0
#: Send groups per 20 ms frame: at 1,000 calls, 25 packets every 0.25 ms.
SLOTS = 80
#: Wide enough for 4 ports per call (RTP and RTCP per leg), split between the workers.
RTP_PORTS = (10000, 65000)
Target = tuple[tuple[str, int], tuple[str, int]]


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
    overruns: int = 0

    @property
    def loss(self) -> float:
        return 1 - self.received / self.sent if self.sent else 1.0

    @property
    def calls_per_core(self) -> float:
        """Calls one core would carry at this CPU cost per call."""
        return 100 * self.calls / self.cpu if self.cpu > 0 else float("nan")


@dataclass
class Counts:
    """What generators measured over one load level."""

    sent: int
    received: int
    #: Added latency of each relayed packet received while measuring, in ns.
    latencies: np.ndarray
    #: Audio-path frames the engine sent while measuring (:meth:`Generator.frames_sent`).
    frames: int
    #: CPU of the pids the generators were given, and of the busiest generator, in cores.
    cpu: float
    generator_cpu: float

    @classmethod
    def merge(cls, parts: list[Counts]) -> Counts:
        return cls(
            sum(p.sent for p in parts),
            sum(p.received for p in parts),
            np.concatenate([p.latencies for p in parts]),
            sum(p.frames for p in parts),
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
        #: Per SSRC of the audio path's output: first sequence number received while
        #: measuring, and how far past it the last one was.
        self.spans: dict[int, list[int]] = {}
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

    def frames_sent(self) -> int:
        """Audio-path frames sent while measuring, from their sequence numbers (RFC 3550 A.3).

        Counting by sequence number, not by time, keeps a tick at either end of the
        window from counting as lost.
        """
        return sum(last + 1 for _, last in self.spans.values())

    def addresses(self) -> list[tuple[str, int]]:
        return [sock.getsockname()[:2] for sock in self.sides]

    def _readable(self, sock: socket.socket) -> None:
        buf = bytearray(2048)
        space = socket.CMSG_SPACE(TIMESPEC.size)
        while True:
            try:
                size, ancillary, _, _ = sock.recvmsg_into([buf], space)
            except BlockingIOError:
                return
            if size < 12 + MARK.size:
                continue
            if not self.marked:
                # Audio-path output: the engine's own frames, counted when received
                # while measuring.  (Their payload is audio: concealment makes any
                # bytes of it, so it cannot say whether a packet is marked.)
                if self.measuring:
                    self.received += 1
                    _, _, seq, _, ssrc = HEADER.unpack_from(buf)
                    span = self.spans.setdefault(ssrc, [seq, 0])
                    span[1] = max(span[1], (seq - span[0]) & 0xFFFF)
                continue
            # Relayed packets carry their send time and count when sent while measuring.
            _, _, sent_ns = MARK.unpack_from(buf, 12)
            if sent_ns < self.measure_from_ns:
                continue
            self.received += 1
            for level, kind, data in ancillary:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    seconds, nanos = TIMESPEC.unpack(data[: TIMESPEC.size])
                    self.latencies.append(seconds * 1_000_000_000 + nanos - sent_ns)

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
        return Counts(sent, self.received, latencies, self.frames_sent(), cpu, own_cpu)

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
        self.addresses: list[list[tuple[str, int]]] = []

    async def start(self) -> None:
        """Wait for every process's A and B side addresses."""
        self.addresses = [await asyncio.to_thread(pipe.recv) for pipe in self.pipes]

    def sides(self, call: int) -> list[tuple[str, int]]:
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


def level_result(system: str, calls: int, counts: Counts, sent: int, overruns: int = 0) -> Result:
    return Result(
        system,
        calls,
        sent,
        counts.received,
        percentile_ms(counts.latencies, 50),
        percentile_ms(counts.latencies, 99),
        100 * counts.cpu,
        100 * counts.generator_cpu,
        overruns,
    )


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
        # Overruns are counted over the measured window, like the frames: once the
        # generators stop, every stream conceals at once, which is not the load's
        # doing (``--outage`` puts such a moment inside the window on purpose).
        start_at = time.time() + 0.5
        measured = start_at + WARMUP
        ticks_before, ticks_after, counts = await asyncio.gather(
            _worker_totals_at(pool, measured),
            _worker_totals_at(pool, measured + duration),
            players.run(
                targets,
                duration,
                marked=mode == "relay",
                pids=pool.pids,
                start_at=start_at,
                outage=outage,
            ),
        )
        return level_result(
            "voipcore" + (f" x{workers}" if workers > 1 else ""),
            calls,
            counts,
            # One frame per leg per tick, whatever it receives; ticks it could not
            # run show as overruns.
            counts.frames if mode == "audio" else counts.sent,
            ticks_after[1] - ticks_before[1],
        )
    finally:
        players.close()
        await pool.stop()


async def _worker_totals_at(pool: WorkerPool, when: float) -> tuple[int, int]:
    """Ticks and tick overruns of all workers so far, read at wall-clock ``when``."""
    await asyncio.sleep(max(0.0, when - time.time()))
    replies = (await pool.request("stats", {}))["workers"]
    return sum(r["ticks"] for r in replies), sum(r["tick_overruns"] for r in replies)


async def naive_level(
    calls: int, duration: float, generators: int, system_cpu: int | None = None
) -> Result:
    base = 40000
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "benchmarks.naive_relay",
            "--calls",
            str(calls),
            "--base",
            str(base),
        ],
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    proc.stdout.readline()
    if system_cpu is not None:
        pin_process(proc.pid, {system_cpu})
    players = Generators(generators)
    try:
        await players.start()
        targets = [
            (("127.0.0.1", base + 4 * i), ("127.0.0.1", base + 4 * i + 2)) for i in range(calls)
        ]
        counts = await players.run(targets, duration, marked=True, pids=[proc.pid])
        return level_result("naive asyncio", calls, counts, counts.sent)
    finally:
        players.close()
        proc.terminate()
        proc.wait()


def passes(result: Result, mode: str) -> bool:
    if mode == "relay":
        return result.loss < 0.001 and result.p99_ms < 2.0
    return result.loss < 0.001 and result.overruns == 0


HEADER_ROW = (
    f"{'system':<14} {'calls':>6} {'loss %':>8} {'p50 ms':>8} {'p99 ms':>8} "
    f"{'cpu %':>6} {'calls/core':>10} {'overruns':>9} {'gen %':>6}"
)


def row(result: Result, mode: str) -> str:
    ok = "pass" if passes(result, mode) else "FAIL"
    return (
        f"{result.system:<14} {result.calls:>6} {100 * result.loss:>8.3f} "
        f"{result.p50_ms:>8.3f} {result.p99_ms:>8.3f} {result.cpu:>6.1f} "
        f"{result.calls_per_core:>10.0f} {result.overruns:>9} {result.generator_cpu:>6.1f} {ok}"
    )


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
        help="the worker(s) and the naive relay alone on the last CPU, generators on the others",
    )
    args = parser.parse_args()
    system_cpu: int | None = None
    if args.pin:
        if args.scaling:
            parser.error("--pin measures one core; --scaling spreads workers over the machine")
        try:
            # Generators and workers start off the reserved CPU; workers and the
            # naive relay are then moved onto it.
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
    print(HEADER_ROW)
    best: dict[str, int] = {}
    efficiency: list[str] = []
    for calls in levels:
        results = [
            await engine_level(
                calls,
                args.duration,
                args.mode,
                args.workers,
                generators,
                system_cpu,
                args.outage / 1000,
            )
        ]
        if args.mode == "relay" and not args.no_baseline:
            results.append(await naive_level(calls, args.duration, generators, system_cpu))
        for result in results:
            print(row(result, args.mode), flush=True)
            if passes(result, args.mode):
                best[result.system] = max(best.get(result.system, 0), calls)
        if len(results) == 2:
            ratio = results[0].calls_per_core / results[1].calls_per_core
            efficiency.append(f"{ratio:.2f}x at {calls} calls")
    print("highest passing load:", ", ".join(f"{k}: {v} calls" for k, v in best.items()))
    ours = next((v for k, v in best.items() if k.startswith("voipcore")), 0)
    if "naive asyncio" in best and best["naive asyncio"]:
        print(f"ratio voipcore / naive asyncio relay: {ours / best['naive asyncio']:.2f}")
    if efficiency:
        # The naive relay saturates early; CPU per call compares the two at every load.
        print("calls per core, voipcore / naive asyncio relay:", ", ".join(efficiency))


if __name__ == "__main__":
    uvloop.run(main())
