"""Concurrent calls one media worker carries (issue 3), against a naive asyncio relay.

    python -m benchmarks.media_load --mode relay [--calls 200,400,800] [--duration 10]
    python -m benchmarks.media_load --mode audio [--calls 50,100,200,300]

Each call is two G.711 streams of 50 packets/s (100 packets/s in per call),
sent from this process over loopback to one engine worker process.  relay:
the relay fast path, passing when loss < 0.1 % and p99 added latency < 2 ms;
the same load through ``benchmarks.naive_relay`` (stdlib asyncio, per-packet
forwarding) is the baseline.  audio: every call is recorded, which puts it
through the audio path (jitter buffer, PLC, mixing, recorder, encoding);
passing when >= 99.9 % of the frames the engine sent arrive (counted by RTP
sequence number) and its 20 ms tick, a frame per leg each, never overruns.
Worker CPU is read from /proc while packets are sent; ``calls/core`` projects
it to one fully busy core, the robust figure while the load generator shares
the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

import numpy as np
import uvloop

from media.workers import WorkerPool
from tests.harness import cpu_seconds

HEADER = struct.Struct("!BBHII")
MARK = struct.Struct("!IBq")
TIMESPEC = struct.Struct("@qq")
#: Linux's SO_TIMESTAMPNS (also the SCM type of its ancillary data); Python does not export it.
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
PAYLOAD = 160
WARMUP = 1.0


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
    overruns: int = 0

    @property
    def loss(self) -> float:
        return 1 - self.received / self.sent if self.sent else 1.0

    @property
    def calls_per_core(self) -> float:
        """Calls one core would carry at this CPU cost per call."""
        return 100 * self.calls / self.cpu if self.cpu > 0 else float("nan")


class Generator:
    """Two sockets playing every call's A and B side."""

    def __init__(self, targets: list[tuple[tuple[str, int], tuple[str, int]]]) -> None:
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

    async def run(self, duration: float, *, marked: bool, pids: list[int]) -> tuple[int, float]:
        """Send for ``duration`` s after warm-up.

        Returns the packets sent while measuring and the CPU ``pids`` used while
        packets were sent (:func:`cpu_share`), warm-up included.
        """
        loop = asyncio.get_running_loop()
        self.marked = marked
        since = cpu_snapshot(pids)
        for sock in self.sides:
            loop.add_reader(sock.fileno(), self._readable, sock)
        seq = 0
        ssrcs = [os.getpid() * 4096 + i for i in range(2 * len(self.targets))]
        slots = 20
        per_slot = -(-len(self.targets) // slots)
        start = loop.time()
        sent = 0
        tick = 0
        filler = bytes(PAYLOAD - MARK.size)
        try:
            while True:
                elapsed = loop.time() - start
                if elapsed >= WARMUP + duration:
                    break
                if elapsed >= WARMUP and not self.measuring:
                    self.measuring = True
                    self.measure_from_ns = time.time_ns()
                slot = tick % slots
                frame = tick // slots
                chunk = self.targets[slot * per_slot : (slot + 1) * per_slot]
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
                await asyncio.sleep(max(0.0, start + tick * 0.02 / slots - loop.time()))
            self.measuring = False
            cpu = cpu_share(pids, since)
            await asyncio.sleep(0.3)  # let the last packets arrive
        finally:
            for sock in self.sides:
                loop.remove_reader(sock.fileno())
        return sent, cpu

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


def percentile_ms(values: list[int], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) / 1e6 if values else float("nan")


async def engine_level(calls: int, duration: float, mode: str, workers: int) -> Result:
    pool = WorkerPool(workers, rtp_ports=(20000, 30000), host="127.0.0.1")
    await pool.start()
    record_dir = tempfile.mkdtemp(prefix="voipcore-bench-")
    generator = Generator([])
    try:
        side_a, side_b = generator.addresses()
        pcmu = [{"pt": 0, "name": "PCMU", "rate": 8000}]
        for index in range(calls):
            call_id = f"bench-{index}"
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
            generator.targets.append(
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
        ticks_before = await _worker_totals(pool)
        sent, cpu = await generator.run(duration, marked=mode == "relay", pids=pool.pids)
        ticks_after = await _worker_totals(pool)
        overruns = ticks_after[1] - ticks_before[1]
        received = generator.received
        if mode == "audio":
            # One frame per leg per tick, whatever it receives; ticks it could not
            # run show as overruns.
            sent = generator.frames_sent()
        return Result(
            "voipcore" + (f" x{workers}" if workers > 1 else ""),
            calls,
            sent,
            received,
            percentile_ms(generator.latencies, 50),
            percentile_ms(generator.latencies, 99),
            100 * cpu,
            overruns,
        )
    finally:
        generator.close()
        await pool.stop()


async def _worker_totals(pool: WorkerPool) -> tuple[int, int]:
    replies = (await pool.request("stats", {}))["workers"]
    return sum(r["ticks"] for r in replies), sum(r["tick_overruns"] for r in replies)


async def naive_level(calls: int, duration: float) -> Result:
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
    generator = Generator(
        [(("127.0.0.1", base + 4 * i), ("127.0.0.1", base + 4 * i + 2)) for i in range(calls)]
    )
    try:
        sent, cpu = await generator.run(duration, marked=True, pids=[proc.pid])
        return Result(
            "naive asyncio",
            calls,
            sent,
            generator.received,
            percentile_ms(generator.latencies, 50),
            percentile_ms(generator.latencies, 99),
            100 * cpu,
        )
    finally:
        generator.close()
        proc.terminate()
        proc.wait()


def passes(result: Result, mode: str) -> bool:
    if mode == "relay":
        return result.loss < 0.001 and result.p99_ms < 2.0
    return result.loss < 0.001 and result.overruns == 0


def row(result: Result, mode: str) -> str:
    ok = "pass" if passes(result, mode) else "FAIL"
    return (
        f"{result.system:<14} {result.calls:>6} {100 * result.loss:>8.3f} "
        f"{result.p50_ms:>8.3f} {result.p99_ms:>8.3f} {result.cpu:>6.1f} "
        f"{result.calls_per_core:>10.0f} {result.overruns:>9} {ok}"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--mode", choices=("relay", "audio"), default="relay")
    parser.add_argument("--calls", default=None, help="comma-separated load levels")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--no-baseline", action="store_true")
    args = parser.parse_args()
    default = "100,200,400,600,800,1000" if args.mode == "relay" else "50,100,200,300,400"
    levels = [int(c) for c in (args.calls or default).split(",")]
    print(
        f"media_load mode={args.mode} duration={args.duration}s workers={args.workers} "
        f"cpus={os.cpu_count()} (load generator shares the machine)"
    )
    print(
        f"{'system':<14} {'calls':>6} {'loss %':>8} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'cpu %':>6} {'calls/core':>10} {'overruns':>9}"
    )
    best: dict[str, int] = {}
    for calls in levels:
        results = [await engine_level(calls, args.duration, args.mode, args.workers)]
        if args.mode == "relay" and not args.no_baseline:
            results.append(await naive_level(calls, args.duration))
        for result in results:
            print(row(result, args.mode), flush=True)
            if passes(result, args.mode):
                best[result.system] = max(best.get(result.system, 0), calls)
    print("highest passing load:", ", ".join(f"{k}: {v} calls" for k, v in best.items()))
    ours = next((v for k, v in best.items() if k.startswith("voipcore")), 0)
    if "naive asyncio" in best and best["naive asyncio"]:
        print(f"ratio voipcore / naive asyncio relay: {ours / best['naive asyncio']:.2f}")


if __name__ == "__main__":
    uvloop.run(main())
