"""REGISTER with digest auth under load: the registration rate of RFC 7501 §3.4.2.

Run from the repository root::

    python -m benchmarks.register_load [--duration 30] [--users 1000] [--transport udp]
    python -m benchmarks.register_load --quick          # smoke test: 5 s probes, coarse search
    python -m benchmarks.register_load --rate 2000 --repeat 3   # CPU per REGISTER, no search

For each event loop (uvloop, then the stdlib asyncio loop as the baseline) a
fresh server is started with ``--users`` accounts (user0000, user0001, ...) and
SIPp runs ``tests/integration/sipp/register_auth.xml`` at increasing rates: the
rate doubles until a probe fails, then the interval is bisected (testing to
failure, RFC 7502's procedure).  One SIPp "call" is one authenticated
registration (REGISTER, 401, REGISTER with credentials, 200).

RFC 7501 §3.4.2 defines the registration rate as the most registrations per
second that complete in the test duration with none failing: every attempt
offered succeeds, its 200 within the Establishment Threshold Time (§3.3),
past which the attempt counts as failed (§3.1.8).  A probe therefore passes
only when, from SIPp's trace of every registration's response time:

- the attempts were offered at the probe's rate for its whole duration (all
  ``rate x duration`` of them, first to last at >= 99 % of the rate): a server
  that queues makes SIPp hold back new attempts at its limit of calls in
  progress, so the rate was not sustained;
- every one succeeded, and
- none took longer than ``--threshold`` (default 500 ms, T1: a UDP client
  retransmits after T1, RFC 3261 §17.1.1.2, so a later answer already adds load;
  RFC 7501 leaves the threshold to the test and suggests Timer B or F for calls).

Server CPU is read from ``/proc/PID/stat`` (all threads) over the
probe.  SIPp and the server share this machine's cores, so the figures are a
lower bound of what the server alone could do; CPU time per registration is
the machine-independent figure.

The servers offer the ``--algorithms`` digest challenges (default: MD5 alone,
the server's default; SIPp 3.6.1 answers only an MD5 challenge offered first,
so ``MD5,SHA-256`` measures a 401 carrying both).  Each
server logs its garbage collections through ``benchmarks/gc_hook``: full
collections stop the event loop, and their pauses are reported per probe.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.harness import ServerProcess, cpu_seconds, pin_process, reserve_cpu
from tests.harness import TestUser as Account
from tests.sipp import (
    SippError,
    SippResult,
    run_sipp,
    scenario,
    transport_mode,
    write_users_csv,
)

DOMAIN = "bench.local"
#: The goal of issue 2: authenticated REGISTERs per second on one core.
TARGET_RATE = 5000
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
GC_HOOK_DIR = Path(__file__).resolve().parent / "gc_hook"


#: RFC 7501's Establishment Threshold Time (§3.3) by default: T1 (RFC 3261 §17.1.1.1).
THRESHOLD = 0.5
#: Offered rate, first to last attempt, below which the probe's rate was not sustained.
OFFERED_SHARE = 0.99


@dataclass(frozen=True, slots=True)
class Attempts:
    """Every registration SIPp completed in a probe, from its response-time trace."""

    offered: float
    """Attempts per second from the first to the last attempt (SIPp's offered load)."""
    slowest: float
    """The longest establishment time, REGISTER to 200 (``rtd`` 1 of the scenario), s."""
    count: int
    """Registrations in the trace."""

    @classmethod
    def from_trace(cls, rows: Sequence[tuple[float, float]]) -> Attempts:
        """From ``(completed, took)`` pairs in seconds: each attempt began at the difference."""
        starts = sorted(done - took for done, took in rows)
        span = starts[-1] - starts[0] if starts else 0.0
        offered = (len(starts) - 1) / span if span > 0 else float("inf")
        return cls(offered, max((took for _, took in rows), default=0.0), len(rows))

    def sustained(self, rate: int, calls: int, threshold: float) -> bool:
        """RFC 7501 §3.4.2: ``calls`` attempts offered at ``rate``, all within ``threshold``."""
        return (
            self.count == calls
            and self.offered >= OFFERED_SHARE * rate
            and self.slowest <= threshold
        )


def read_rtt_trace(workdir: Path) -> list[tuple[float, float]]:
    """``(completed, took)`` in seconds from SIPp's ``-trace_rtt`` file(s) in ``workdir``.

    Lines are ``date_ms;response_time_ms;rtd_no`` after a header line, the date
    counted from SIPp's start.
    """
    rows = []
    for path in workdir.glob("*_rtt.csv"):
        for line in path.read_text(errors="replace").splitlines()[1:]:
            fields = line.split(";")
            if len(fields) >= 2 and fields[1].strip():
                rows.append((float(fields[0]) / 1000, float(fields[1]) / 1000))
    return rows


@dataclass(frozen=True, slots=True)
class Probe:
    """One SIPp run at a fixed rate against a running server."""

    rate: int
    """Offered registrations per second."""
    result: SippResult | None
    """What SIPp counted; None if it could not run."""
    attempts: Attempts
    """Offered rate and slowest registration, from SIPp's trace."""
    passed: bool
    """RFC 7501 §3.4.2: every attempt offered at the rate succeeded within the threshold."""
    wall: float
    """Seconds the probe took."""
    server_cpu: float
    """Server CPU seconds (user + system, all threads) during the probe."""
    sipp_cpu: float
    """SIPp CPU seconds during the probe."""
    gc_full: list[float]
    """Milliseconds of each generation-2 garbage collection during the probe."""
    gc_total: float
    """Milliseconds in the probe's logged collections (full ones, and any over 5 ms)."""

    @property
    def server_cpu_percent(self) -> float:
        return 100.0 * self.server_cpu / self.wall if self.wall > 0 else 0.0

    @property
    def sipp_cpu_percent(self) -> float:
        return 100.0 * self.sipp_cpu / self.wall if self.wall > 0 else 0.0

    @property
    def cpu_per_registration(self) -> float:
        """Server CPU seconds per successful registration (two transactions)."""
        done = self.result.successful if self.result else 0
        return self.server_cpu / done if done else float("nan")

    def summary(self) -> str:
        r = self.result
        if r is None:
            return f"{self.rate:>6}/s  SIPp could not run"
        latency = f"{1000 * r.response_time:.1f} ms" if r.response_time is not None else "-"
        verdict = "pass" if self.passed else "FAIL"
        a = self.attempts
        return (
            f"{self.rate:>6}/s  {verdict}  {r.successful}/{r.created} ok, {r.failed} failed, "
            f"offered {a.offered:.0f}/s, slowest {1000 * a.slowest:.0f} ms, "
            f"{r.elapsed:.1f} s, latency {latency}, {r.retransmissions} retrans, "
            f"server CPU {self.server_cpu_percent:.0f}% "
            f"({1e6 * self.cpu_per_registration:.0f} us/REGISTER), "
            f"SIPp CPU {self.sipp_cpu_percent:.0f}%, GC {self.gc_summary()}"
        )

    def gc_summary(self) -> str:
        full = self.gc_full
        worst = f", longest {max(full):.0f} ms" if full else ""
        return f"{self.gc_total:.0f} ms ({len(full)} full{worst})"


@dataclass(frozen=True, slots=True)
class Search:
    """The rate search for one event loop."""

    event_loop: str
    probes: list[Probe]

    @property
    def best(self) -> Probe | None:
        """The passing probe at the highest rate."""
        passed = [p for p in self.probes if p.passed]
        return max(passed, key=lambda p: p.rate) if passed else None


@contextlib.contextmanager
def _gc_logged(path: Path) -> Iterator[None]:
    """Servers started in this block log their collections to ``path`` (gc_hook)."""
    saved = {k: os.environ.get(k) for k in ("PYTHONPATH", "VOIPCORE_BENCH_GC_LOG")}
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(GC_HOOK_DIR)] + ([saved["PYTHONPATH"]] if saved["PYTHONPATH"] else [])
    )
    os.environ["VOIPCORE_BENCH_GC_LOG"] = str(path)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _read_gc_log(path: Path, pid: int) -> tuple[list[float], float]:
    """Full collections and the time of all logged collections of ``pid``, in ms.

    Lines are ``pid generation milliseconds collected``, written by the hook in
    ``benchmarks/gc_hook/sitecustomize.py``.
    """
    if not path.exists():
        return [], 0.0
    rows = [line.split() for line in path.read_text(errors="replace").splitlines()]
    mine = [r[1:] for r in rows if len(r) == 4 and r[0] == str(pid)]
    return [float(r[1]) for r in mine if r[0] == "2"], sum(float(r[1]) for r in mine)


def children_cpu_seconds() -> float:
    """CPU time of waited-for children: SIPp runs are waited for, the server is not."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class Bench:
    """Runs probes against one server."""

    def __init__(
        self,
        server: ServerProcess,
        users_csv: Path,
        workdir: Path,
        transport: str,
        duration: float,
        threshold: float = THRESHOLD,
        server_cpu: int | None = None,
    ) -> None:
        self.server = server
        self.users_csv = users_csv
        self.workdir = workdir
        self.mode = transport_mode(transport)
        self.duration = duration
        self.threshold = threshold
        self.server_cpu = server_cpu

    def probe(
        self, rate: int, *, label: str = "", attach: Callable[[int], object] | None = None
    ) -> Probe:
        """Restart the server, then offer ``rate`` registrations/s for ``duration`` seconds.

        A fresh process per probe: UDP server transactions live 32 s after their
        response (Timer J, RFC 3261 §17.2.2), so an earlier probe's would still
        weigh on this one.  Registrations persist across the restart.  ``attach``
        gets the new server's pid before the load starts (for a profiler).
        """
        workdir = self.workdir / f"probe-{rate}{label}"
        workdir.mkdir(parents=True, exist_ok=True)
        for old in workdir.glob("*_rtt.csv"):
            old.unlink()
        gc_log = workdir / "gc.log"
        with _gc_logged(gc_log):
            self.server.restart()
        gc_log.write_text("")  # start-up collections are not the probe's
        if self.server_cpu is not None:
            pin_process(self.server.pid, {self.server_cpu})
        if attach is not None:
            attach(self.server.pid)
        calls = max(1, round(rate * self.duration))
        port = self.server.tcp_port if self.mode.startswith("t") else self.server.udp_port
        cpu0, sipp0, t0 = (
            cpu_seconds(self.server.pid),
            children_cpu_seconds(),
            time.monotonic(),
        )
        result: SippResult | None
        try:
            result = run_sipp(
                scenario("register_auth.xml"),
                self.server.host,
                port,
                workdir=workdir,
                transport=self.mode,
                rate=rate,
                calls=calls,
                users_csv=self.users_csv,
                keys={"domain": DOMAIN, "expires": "3600"},
                auth_uri=DOMAIN,
                timeout=2 * self.duration + 30,
                # Every response time, written as it comes: SIPp drops what a
                # larger -rtt_freq still buffers when it exits.
                extra_args=["-trace_rtt", "-rtt_freq", "1"],
            )
        except SippError as exc:
            print(f"  sipp failed at {rate}/s: {exc}", file=sys.stderr)
            result = None
        wall = time.monotonic() - t0
        cpu = cpu_seconds(self.server.pid) - cpu0
        sipp_cpu = children_cpu_seconds() - sipp0
        attempts = Attempts.from_trace(read_rtt_trace(workdir))
        passed = (
            result is not None
            and result.ok
            and result.successful == calls
            and attempts.sustained(rate, calls, self.threshold)
        )
        gc_full, gc_total = _read_gc_log(gc_log, self.server.pid)
        return Probe(rate, result, attempts, passed, wall, cpu, sipp_cpu, gc_full, gc_total)

    def search(self, start: int, max_rate: int, precision: float) -> list[Probe]:
        """Double from ``start`` until a probe fails, then bisect to ``precision`` (relative)."""
        probes: list[Probe] = []

        def run(rate: int) -> bool:
            probe = self.probe(rate)
            probes.append(probe)
            print("  " + probe.summary(), flush=True)
            if not self.server.alive():
                raise RuntimeError(f"server died at {rate}/s:\n{self.server.log_text()[-3000:]}")
            return probe.passed

        low, high = 0, None
        rate = start
        while rate <= max_rate:
            if not run(rate):
                high = rate
                break
            low = rate
            rate *= 2
        if high is None:
            return probes
        while high - low > max(1, precision * max(low, start // 2)):
            middle = (low + high) // 2 if low else high // 2
            if run(middle):
                low = middle
            else:
                high = middle
        return probes


@contextlib.contextmanager
def running_server(
    workdir: Path, users: list[Account], event_loop: str, algorithms: Sequence[str]
) -> Iterator[ServerProcess]:
    offered = ", ".join(f'"{name}"' for name in algorithms)
    server = ServerProcess(
        workdir,
        domain=DOMAIN,
        users=users,
        extra_sip=f"digest_algorithms = [{offered}]",
        event_loop=event_loop,
    )
    with _gc_logged(workdir / "gc-startup.log"):
        server.start(timeout=300)
    try:
        yield server
    finally:
        server.stop()


def profile(bench: Bench, rate: int, seconds: float, out: Path, top: int = 10) -> list[str]:
    """Sample the server with py-spy during a probe at ``rate``; the top functions by self time."""
    if shutil.which("py-spy") is None:
        return ["py-spy is not installed (pip install py-spy)"]
    raw = out.with_suffix(".txt")
    spies: list[subprocess.Popen[bytes]] = []

    def attach(pid: int) -> None:
        # Blocking sampling: slower, but --nonblocking misattributes frames.
        command = ["py-spy", "record", "--pid", str(pid), "--format", "raw", "--rate", "100"]
        command += ["--duration", str(int(seconds)), "--output", str(raw)]
        spies.append(
            subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        )

    probe = bench.probe(rate, label="-profiled", attach=attach)
    for spy in spies:
        spy.wait()
    if not raw.exists():
        return ["py-spy recorded nothing (ptrace not permitted?)"]
    self_time: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        leaf = stack.split(";")[-1]
        # "function (path/file.py:123)" -> "function (file.py)": lines of one function merge.
        name, _, where = leaf.partition(" (")
        where = where.rstrip(")").rsplit(":", 1)[0]
        self_time[f"{name} ({Path(where).name})"] += int(count)
        total += int(count)
    lines = [
        f"profile at {rate}/s: {probe.summary().strip()}",
        f"raw stacks: {raw}; self time, all threads (GC pauses count against the allocating line)",
    ]
    for function, samples in self_time.most_common(top):
        lines.append(f"  {100 * samples / total:5.1f}%  {function}")
    return lines


def table(
    searches: Sequence[Search], duration: float, transport: str, server_cpu: int | None = None
) -> str:
    rows = [
        (
            "event loop",
            "max REGISTER/s",
            "server CPU",
            "CPU/REGISTER",
            "1-core projection",
            "SIPp CPU",
            "latency",
            "GC (full collections)",
        ),
    ]
    for s in searches:
        best = s.best
        if best is None or best.result is None:
            rows.append((s.event_loop, "none passed", "-", "-", "-", "-", "-", "-"))
            continue
        per = best.cpu_per_registration
        latency = best.result.response_time
        rows.append(
            (
                s.event_loop,
                f"{best.rate}",
                f"{best.server_cpu_percent:.0f}%",
                f"{1e6 * per:.0f} us",
                f"{1 / per:.0f}/s",
                f"{best.sipp_cpu_percent:.0f}%",
                f"{1000 * latency:.1f} ms" if latency is not None else "-",
                f"{best.gc_total / (10 * best.wall):.0f}% of wall ({len(best.gc_full)}, "
                f"longest {max(best.gc_full, default=0):.0f} ms)",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    by_loop = {s.event_loop: s.best for s in searches}
    fast, base = by_loop.get("uvloop"), by_loop.get("asyncio")
    if fast and base:
        lines.append(
            f"uvloop / asyncio: {fast.rate / base.rate:.2f}x max rate, "
            f"{base.cpu_per_registration / fast.cpu_per_registration:.2f}x less CPU per REGISTER"
        )
    lines.append(
        f"target: {TARGET_RATE} authenticated REGISTER/s on one core; "
        f"{transport.upper()}, {duration:g} s probes; 1-core projection = 1 / CPU per REGISTER"
    )
    placement = (
        f"the server alone on CPU {server_cpu}, SIPp on the others"
        if server_cpu is not None
        else "shared by SIPp and the server"
    )
    lines.append(
        f"machine: {os.cpu_count()} cores, {placement} "
        f"({platform.processor() or platform.machine()}, Python {platform.python_version()})"
    )
    return "\n".join(lines)


def spread(searches: Sequence[Search], rate: int) -> str:
    """CPU per REGISTER over the repeated probes of each loop: how noisy the figure is."""
    lines = []
    for s in searches:
        per = sorted(1e6 * p.cpu_per_registration for p in s.probes if p.passed)
        if per:
            lines.append(
                f"{s.event_loop}: {len(per)} passing probes at {rate}/s, CPU/REGISTER "
                f"{sum(per) / len(per):.0f} us (min {per[0]:.0f}, max {per[-1]:.0f})"
            )
    return "\n".join(lines)


def _load_average() -> str:
    """Other work on the machine skews the figures: the load average shows it."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.register_load", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per probe (30)")
    parser.add_argument(
        "--users", type=int, default=1000, help="accounts registered in turn (1000)"
    )
    parser.add_argument("--transport", choices=("udp", "tcp"), default="udp")
    parser.add_argument(
        "--algorithms", default="MD5", help="digest challenges offered, in order (MD5)"
    )
    parser.add_argument(
        "--loops", default="uvloop,asyncio", help="event loops, first is measured first"
    )
    parser.add_argument("--start-rate", type=int, default=500, help="first probe's rate (500/s)")
    parser.add_argument("--max-rate", type=int, default=64000)
    parser.add_argument(
        "--precision", type=float, default=0.05, help="bisect until within this fraction"
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=THRESHOLD,
        help="Establishment Threshold Time, s (RFC 7501 §3.3): a slower registration fails",
    )
    parser.add_argument(
        "--quick", action="store_true", help="5 s probes, 25 %% precision: a smoke test"
    )
    parser.add_argument(
        "--rate",
        type=int,
        help="no search: probe this rate --repeat times (CPU per REGISTER and its spread)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="probes per loop with --rate (3)")
    parser.add_argument(
        "--profile", action="store_true", help="py-spy the uvloop server at its best rate"
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help="server (all threads) on the last CPU alone, SIPp and this script on the others",
    )
    parser.add_argument("--workdir", type=Path, help="keep servers' and SIPp's files here")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.precision = 5.0, 0.25
    if shutil.which("sipp") is None:
        parser.error("sipp is not installed (Debian: apt-get install sip-tester)")
    server_cpu: int | None = None
    if args.pin:
        try:
            server_cpu = reserve_cpu()  # SIPp, started by this process, stays off it
        except RuntimeError as exc:
            parser.error(str(exc))

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="register-load-"))
    users = [Account(f"user{i:04d}", f"pw-{i:04d}-secret") for i in range(args.users)]
    users_csv = write_users_csv(workdir / "users.csv", [(u.username, u.password) for u in users])
    started = datetime.datetime.now(datetime.UTC)
    print(
        f"register_load: {args.users} users, {args.transport}, {args.duration:g} s probes, "
        f"files in {workdir}",
        flush=True,
    )

    load_before = _load_average()
    searches: list[Search] = []
    profile_lines: list[str] = []
    for loop in args.loops.split(","):
        print(f"{loop}:", flush=True)
        with running_server(
            workdir / f"server-{loop}", users, loop, args.algorithms.split(",")
        ) as server:
            bench = Bench(
                server,
                users_csv,
                workdir / f"sipp-{loop}",
                args.transport,
                args.duration,
                args.threshold,
                server_cpu,
            )
            if args.rate:
                probes = [bench.probe(args.rate) for _ in range(args.repeat)]
                for probe in probes:
                    print("  " + probe.summary(), flush=True)
            else:
                probes = bench.search(args.start_rate, args.max_rate, args.precision)
            search = Search(loop, probes)
            searches.append(search)
            if args.profile and loop == "uvloop" and search.best is not None:
                profile_lines = profile(bench, search.best.rate, args.duration, workdir / "profile")

    print()
    print(f"REGISTER with digest auth, {started:%Y-%m-%d %H:%M} UTC")
    print(f"load average (1/5/15 min) before: {load_before}, after: {_load_average()}")
    print(table(searches, args.duration, args.transport, server_cpu))
    if args.rate:
        print(spread(searches, args.rate))
    for line in profile_lines:
        print(line)
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
