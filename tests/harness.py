"""Run a real voipcore server process on loopback for tests and benchmarks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeVar

_LISTEN = re.compile(r"sip listening on (udp|tcp):([\d.:\[\]a-f]+):(\d+)")
_HTTP = re.compile(r"(https?) listening on [\d.:\[\]a-f]+:(\d+)")
_TRACEBACK = "Traceback (most recent call last)"

T = TypeVar("T")

POLL_INTERVAL = 0.02
"""How often :func:`wait_for` and :func:`wait_for_async` look at their condition."""


def _fail_after(deadline: float, message: str | Callable[[], str], timeout: float) -> None:
    """Raise ``AssertionError`` with ``message`` once the monotonic ``deadline`` has passed."""
    if time.monotonic() >= deadline:
        text = message if isinstance(message, str) else message()
        raise AssertionError(f"{text} (waited {timeout:g} s)")


def wait_for(
    condition: Callable[[], T | None], message: str | Callable[[], str], timeout: float = 15.0
) -> T:
    """Poll ``condition`` until it returns something truthy and return that (a ``T | None``
    condition gives a ``T``); fail with ``message`` (a callable is asked only then, so it
    can show the state) after ``timeout`` seconds.  The deadline is generous on purpose: it
    only bounds a test that fails anyway, so a loaded machine turns no slow pass into a
    failure."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        _fail_after(deadline, message, timeout)
        time.sleep(POLL_INTERVAL)
    return value


async def wait_for_async(
    condition: Callable[[], T | None], message: str | Callable[[], str], timeout: float = 15.0
) -> T:
    """:func:`wait_for` for coroutines: the event loop runs between polls."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        _fail_after(deadline, message, timeout)
        await asyncio.sleep(POLL_INTERVAL)
    return value


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, all threads, from ``/proc/PID/stat`` (proc(5))."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pin_process(pid: int, cpus: set[int]) -> None:
    """Bind every thread of ``pid`` to ``cpus``; threads it starts later inherit it."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(int(tid), cpus)


def reserve_cpu() -> int:
    """Keep the last CPU for the system under test: this process, and the processes it
    starts from now on (load generators), move to the others.  Returns the reserved CPU.

    Raises ``RuntimeError`` with fewer than two CPUs.
    """
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        raise RuntimeError("pinning needs at least 2 CPUs")
    os.sched_setaffinity(0, set(cpus[:-1]))
    return cpus[-1]


def free_udp_port() -> int:
    """A UDP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def metric(text: str, name: str) -> float:
    """The value of the sample ``name`` in a Prometheus exposition."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


class ServerFailed(AssertionError):
    """The server under a test logged a traceback or exited non-zero from a clean stop."""


def tracebacks(log: str) -> list[str]:
    """Each Python traceback in ``log`` with the line before it (the logged message that
    carried it) through its exception line, the first unindented line after the frames."""
    lines = log.splitlines()
    found = []
    for start, line in enumerate(lines):
        if _TRACEBACK in line:
            end = next(
                (i for i in range(start + 1, len(lines)) if not lines[i][:1].isspace()),
                len(lines) - 1,
            )
            found.append("\n".join(lines[max(0, start - 1) : end + 1]))
    return found


def logged_tracebacks(records: Iterable[logging.LogRecord]) -> list[str]:
    """Each of ``records`` that carries a traceback, formatted with it (the in-process
    counterpart of :func:`tracebacks`)."""
    formatter = logging.Formatter("%(levelname)s %(name)s %(message)s")
    return [formatter.format(record) for record in records if record.exc_info]


def check_server_log(
    log_path: Path,
    code: int | None,
    *,
    clean: bool,
    stopped: Literal["already", "exited", "hung"] = "exited",
    allow_tracebacks: bool = False,
) -> None:
    """Raise :class:`ServerFailed` when the server that wrote ``log_path`` logged a
    traceback (unless ``allow_tracebacks``), or, on a ``clean`` stop (SIGTERM), had died
    ``already``, ``hung`` past the deadline, or exited with a code other than 0.  The
    message quotes the first tracebacks and names the log."""
    problems = []
    if clean and stopped == "hung":
        problems.append("was still running 10 s after SIGTERM (killed)")
    elif clean and stopped == "already":
        problems.append(f"had already exited with code {code} when the test stopped it")
    elif clean and code != 0:
        problems.append(f"exited with code {code} after SIGTERM")
    found = [] if allow_tracebacks else tracebacks(log_path.read_text(errors="replace"))
    if found:
        problems.append(
            f"logged {len(found)} traceback(s) (a test that provokes them on purpose sets "
            "expect_tracebacks):\n" + "\n---\n".join(found[:3])
        )
    if problems:
        raise ServerFailed(f"server (log {log_path}) " + "; ".join(problems))


@dataclass
class TestUser:
    """An account written into the server's config."""

    __test__ = False  # not a test class, whatever pytest thinks of the name

    username: str
    password: str
    extension: str | None = None
    caller_id: str | None = None
    role: str | None = None


DEFAULT_USERS = [
    TestUser("alice", "alice-secret", "201"),
    TestUser("bob", "bob-secret", "202"),
]


@dataclass
class ServerProcess:
    """``voipcore serve`` in a subprocess with ports chosen by the kernel.

    The store lives in ``workdir`` so :meth:`restart` keeps registrations.  :meth:`stop`
    fails the test (:class:`ServerFailed`) if the server, or a media worker it started
    (their stderr is its log), logged a traceback, or exited non-zero from SIGTERM.
    """

    workdir: Path
    domain: str = "test.local"
    users: list[TestUser] = field(default_factory=lambda: list(DEFAULT_USERS))
    extra_sip: str = ""
    extra_config: str = ""
    sip_trace: bool = False
    event_loop: str = "uvloop"
    host: str = "127.0.0.1"
    ports: dict[str, int] = field(default_factory=dict)
    expect_tracebacks: bool = False
    "Set by a test that makes the server log tracebacks on purpose: :meth:`stop` allows them."
    https: bool = False
    "Also serve HTTPS (``[http] tls_listen``, self-signed in ``workdir``): :attr:`https_port`."
    _proc: subprocess.Popen[bytes] | None = None

    @property
    def config_path(self) -> Path:
        return self.workdir / "voipcore.toml"

    @property
    def log_path(self) -> Path:
        return self.workdir / "server.log"

    @property
    def udp_port(self) -> int:
        return self.ports["udp"]

    @property
    def tcp_port(self) -> int:
        return self.ports["tcp"]

    @property
    def http_port(self) -> int:
        return self.ports["http"]

    @property
    def https_port(self) -> int:
        return self.ports["https"]

    def write_config(self) -> None:
        users = "".join(
            f'[[users]]\nusername = "{u.username}"\npassword = "{u.password}"\n'
            + (f'extension = "{u.extension}"\n' if u.extension else "")
            + (f'caller_id = "{u.caller_id}"\n' if u.caller_id else "")
            + (f'role = "{u.role}"\n' if u.role else "")
            for u in self.users
        )
        udp, tcp = self.ports.get("udp", 0), self.ports.get("tcp", 0)
        # Media on loopback with the phones: the default, a wildcard, would advertise
        # this machine's default-route address.
        extra, loopback = self.extra_config, '[media]\nhost = "127.0.0.1"'
        media = tomllib.loads(extra).get("media")
        if media is None:
            extra = f"{extra}\n{loopback}\n"
        elif "host" not in media:
            extra = re.sub(r"^\[media\]$", loopback, extra, count=1, flags=re.M)
        self.config_path.write_text(
            f"""[sip]
listen = ["udp:{self.host}:{udp}", "tcp:{self.host}:{tcp}"]
domain = "{self.domain}"
{self.extra_sip}
[http]
listen = "127.0.0.1:0"
{'tls_listen = "127.0.0.1:0"' if self.https else ""}
[store]
url = "sqlite:///{self.workdir / "voipcore.db"}"
{extra}
{users}"""
        )

    def start(self, timeout: float = 15.0) -> ServerProcess:
        """Start the server and wait until every listener has logged its port."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.write_config()
        args = [sys.executable, "-m", "voipcore.cli", "serve", "--config", str(self.config_path)]
        args += ["--event-loop", self.event_loop]
        if self.sip_trace:
            args.append("--sip-trace")
        log = self.log_path.open("ab")
        self._proc = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"}
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log_text()
            found = {m[0]: int(m[2]) for m in _LISTEN.findall(text)}
            found |= {m[0]: int(m[1]) for m in _HTTP.findall(text)}
            if {"udp", "tcp", "http"} | ({"https"} if self.https else set()) <= found.keys():
                self.ports = found
                return self
            if self._proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log_text()}")
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"server did not start:\n{self.log_text()}")

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        """Stop the process and return its code.  SIGTERM is a clean shutdown, which must
        end within 10 s with code 0; another signal (SIGKILL) is a crash the test asked
        for.  Either way :class:`ServerFailed` is raised if the log holds a traceback,
        unless :attr:`expect_tracebacks`."""
        if self._proc is None:
            return None
        stopped: Literal["already", "exited", "hung"] = "already"
        if self._proc.poll() is None:
            self._proc.send_signal(sig)
            stopped = "exited"
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
                stopped = "hung"
        code = self._proc.returncode
        self._proc = None
        # The log restarts so port lines of the next run are the only ones found.
        log = self.log_path.rename(self.workdir / f"server-{time.time_ns()}.log")
        check_server_log(
            log,
            code,
            clean=sig == signal.SIGTERM,
            stopped=stopped,
            allow_tracebacks=self.expect_tracebacks,
        )
        return code

    def restart(self, sig: int = signal.SIGTERM) -> ServerProcess:
        """Stop and start again on the same ports and store."""
        self.stop(sig)
        return self.start()

    def metrics(self) -> str:
        """The server's Prometheus exposition (``/metrics``)."""
        url = f"http://127.0.0.1:{self.http_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text: str = response.read().decode()
        return text

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int:
        """The server's process id (for CPU accounting and profilers)."""
        if self._proc is None:
            raise RuntimeError("server is not running")
        return self._proc.pid
