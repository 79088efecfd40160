"""Run SIPp as a subprocess and read back what it counted.

Used by the integration tests and by the benchmarks::

    from tests.sipp import run_sipp, scenario, write_users_csv

    csv = write_users_csv(tmp_path / "users.csv", [("alice", "alice-secret")])
    result = run_sipp(scenario("register_auth.xml"), "127.0.0.1", port,
                      workdir=tmp_path / "sipp", users_csv=csv, calls=20, rate=50,
                      keys={"domain": "test.local", "expires": "3600"},
                      auth_uri="test.local")
    assert result.ok, result.describe()

SIPp runs in the foreground (no ``-bg``) with ``-nostdin``, stops after ``calls``
calls (``-m``) or at ``timeout`` (``-timeout``), and writes its statistics CSV
(``-trace_stat``), unexpected messages (``-trace_err``) and the status codes of
unexpected responses (``-trace_error_codes``) into ``workdir``.  SIPp exits 0
when every call succeeded and 1 when some failed; other codes mean it could not
run (bad scenario, fatal error) and are reported with its last output.
"""

from __future__ import annotations

import csv
import shutil
import socket
import subprocess
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tests.harness import wait_for

#: SIPp transport modes: UDP/TCP over one socket (u1/t1) or one socket per call (un/tn).
Transport = Literal["u1", "un", "t1", "tn"]

#: Where the scenarios live.
SCENARIO_DIR = Path(__file__).resolve().parent / "integration" / "sipp"
#: Raw G.711 files that scenarios play (``tests/fixtures/audio/make_audio.py``).
AUDIO_DIR = Path(__file__).resolve().parent / "fixtures" / "audio"

_TRANSPORTS: dict[str, Transport] = {"udp": "u1", "tcp": "t1"}

#: The file in SIPp's working directory that scenarios report events to.
EVENTS = "events.log"


class SippError(RuntimeError):
    """SIPp could not run the scenario at all (exit code other than 0 or 1)."""


def scenario(name: str) -> Path:
    """The path of a scenario shipped in ``tests/integration/sipp``."""
    path = SCENARIO_DIR / name
    if not path.is_file():
        raise FileNotFoundError(path)
    return path


def transport_mode(name: str) -> Transport:
    """``"udp"``/``"tcp"`` (one socket) or a SIPp mode (``u1``, ``un``, ``t1``, ``tn``)."""
    if name in ("u1", "un", "t1", "tn"):
        return name  # type: ignore[return-value]
    try:
        return _TRANSPORTS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown SIPp transport {name!r}") from None


def sipp_available() -> bool:
    """Whether a ``sipp`` binary is on PATH."""
    return shutil.which("sipp") is not None


def write_users_csv(
    path: Path, users: Iterable[tuple[str, str]], order: str = "SEQUENTIAL"
) -> Path:
    """Write a SIPp injection file: ``[field0]`` username, ``[field1]`` password."""
    lines = [order] + [f"{username};{password}" for username, password in users]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass(frozen=True, slots=True)
class SippResult:
    """What one SIPp run counted, from its final statistics line and exit code."""

    returncode: int
    """0: every call succeeded; 1: at least one failed."""
    created: int
    """Calls started (``TotalCallCreated``)."""
    successful: int
    """Calls that reached the end of the scenario (``SuccessfulCall(C)``)."""
    failed: int
    """Calls that failed for any reason (``FailedCall(C)``)."""
    elapsed: float
    """Seconds from SIPp's start to its last statistics line."""
    retransmissions: int
    """UDP retransmissions SIPp sent (``Retransmissions(C)``)."""
    response_time: float | None
    """Mean of response time 1 (``start_rtd``/``rtd`` in the scenario) in seconds."""
    failure_causes: dict[str, int]
    """Non-zero ``Failed*(C)`` counters by cause, e.g. ``{"UnexpectedMessage": 3}``."""
    unexpected_codes: Counter[int]
    """Status codes of unexpected responses (``-trace_error_codes``)."""
    workdir: Path
    """Where SIPp's logs were written."""
    output: str = field(repr=False)
    """SIPp's stdout and stderr."""

    @property
    def ok(self) -> bool:
        """Every call started succeeded and SIPp reported no failure."""
        return self.returncode == 0 and self.failed == 0 and self.successful == self.created

    @property
    def rate(self) -> float:
        """Successful calls per second over the whole run."""
        return self.successful / self.elapsed if self.elapsed > 0 else 0.0

    def error_log(self) -> str:
        """The unexpected messages SIPp logged (``-trace_err``), if any."""
        path = self.workdir / "errors.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def describe(self) -> str:
        """A few lines for an assertion message."""
        causes = ", ".join(f"{k}={v}" for k, v in self.failure_causes.items()) or "none"
        codes = ", ".join(f"{k}x{v}" for k, v in sorted(self.unexpected_codes.items())) or "none"
        return (
            f"sipp exit {self.returncode}: {self.successful}/{self.created} calls ok, "
            f"{self.failed} failed (causes: {causes}; unexpected codes: {codes}); "
            f"logs in {self.workdir}\n{self.error_log()[-2000:]}"
        )


def start_sipp(
    scenario_file: Path,
    host: str,
    port: int,
    *,
    workdir: Path,
    transport: Transport | str = "u1",
    rate: float = 10.0,
    calls: int = 1,
    users_csv: Path | None = None,
    keys: Mapping[str, str] | None = None,
    auth_uri: str | None = None,
    timeout: float = 30.0,
    limit: int | None = None,
    max_socket: int = 1024,
    local_ip: str | None = None,
    local_port: int | None = None,
    ooc_scenario: Path | None = None,
    media_port: int | None = None,
    rtp_echo: bool = False,
    audio: Sequence[str] = (),
    trace_msg: bool = False,
    extra_args: Sequence[str] = (),
) -> SippRun:
    """Start ``scenario_file`` against ``host:port`` in the background.

    ``rate`` is calls per second (``-r``), ``calls`` the number of calls after
    which SIPp stops (``-m``), ``limit`` the most calls in progress at once
    (``-l``; SIPp's default is 3 x rate), ``timeout`` SIPp's global timeout in
    seconds, after which unfinished calls are not counted as successful.
    ``keys`` set ``[keyword]`` values (``-key``).  ``max_socket`` bounds the
    sockets of the per-call transports; ``local_ip`` sets ``-i`` (SIPp's own
    address, needed for IPv6), ``local_port`` sets ``-p`` (where it listens, and on
    TCP also the port its connection leaves from).  ``ooc_scenario`` takes the
    calls that arrive with a Call-ID of their own (``-oocsf``), such as the calls
    to a phone that ``scenario_file`` registered.  ``media_port`` is SIPp's RTP
    port on ``local_ip`` or 127.0.0.1 (``[media_port]``, also where ``rtp_stream`` plays from);
    ``rtp_echo`` sends every packet arriving there back to its source.
    ``audio`` names files of ``tests/fixtures/audio`` to link into ``workdir``,
    where the scenarios' ``rtp_stream`` finds them.  ``trace_msg`` logs every
    message to ``messages.log``.  ``workdir`` is SIPp's working directory; statistics and
    error-code files of an earlier run there are removed first.  SIPp's default
    behaviours are kept except sending BYE for aborted calls, which a registrar
    has no use for.  :meth:`SippRun.wait` returns what SIPp counted.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    stat_file = workdir / "stats.csv"
    for old in [stat_file, *workdir.glob("*_error_codes.csv")]:
        old.unlink(missing_ok=True)
    mode = transport_mode(transport)
    args = [
        "sipp",
        f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
        "-sf",
        str(scenario_file),
        "-t",
        mode,
        "-r",
        _number(rate),
        "-m",
        str(calls),
        "-timeout",
        f"{_number(timeout)}s",
        "-nostdin",
        "-max_socket",
        str(max_socket),
        "-default_behaviors",
        "all,-bye",
        "-trace_stat",
        "-stf",
        str(stat_file),
        "-fd",
        "1",
        "-trace_err",
        "-error_file",
        str(workdir / "errors.log"),
        "-trace_error_codes",
    ]
    if local_ip is not None:
        args += ["-i", local_ip]
    if local_port is not None:
        args += ["-p", str(local_port)]
    if ooc_scenario is not None:
        args += ["-oocsf", str(ooc_scenario)]
    if media_port is not None:
        args += ["-mi", local_ip or "127.0.0.1", "-mp", str(media_port)]
    if rtp_echo:
        args.append("-rtp_echo")
    for name in audio:
        (workdir / name).unlink(missing_ok=True)
        (workdir / name).symlink_to(AUDIO_DIR / name)
    if users_csv is not None:
        args += ["-inf", str(users_csv)]
    for key, value in (keys or {}).items():
        args += ["-key", key, value]
    if auth_uri is not None:
        args += ["-auth_uri", auth_uri]
    if limit is not None:
        args += ["-l", str(limit)]
    if trace_msg:
        args += ["-trace_msg", "-message_file", str(workdir / "messages.log")]
    args += list(extra_args)
    with (workdir / "output.txt").open("w") as output:
        proc = subprocess.Popen(
            args, cwd=workdir, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT
        )
    return SippRun(proc, args, workdir, timeout + 30.0)


def run_sipp(
    scenario_file: Path,
    host: str,
    port: int,
    **options: Any,
) -> SippResult:
    """Run ``scenario_file`` against ``host:port`` in the foreground and parse the result
    (:func:`start_sipp`'s options)."""
    return start_sipp(scenario_file, host, port, **options).wait()


@dataclass
class SippRun:
    """A SIPp started by :func:`start_sipp`."""

    proc: subprocess.Popen[bytes]
    args: list[str]
    workdir: Path
    deadline: float
    """Seconds to wait for SIPp to stop: its own ``-timeout`` and a margin."""

    def wait(self) -> SippResult:
        """Wait until SIPp stops and parse what it counted (:class:`SippError` if it could
        not run, or did not stop within :attr:`deadline`)."""
        try:
            returncode = self.proc.wait(self.deadline)
        except subprocess.TimeoutExpired as exc:
            self.stop()
            raise SippError(f"sipp did not stop within {self.deadline:.0f} s: {self.args}") from exc
        output = (self.workdir / "output.txt").read_text(errors="replace")
        stat_file = self.workdir / "stats.csv"
        if returncode not in (0, 1) or not stat_file.exists():
            raise SippError(f"sipp exited {returncode}: {' '.join(self.args)}\n{output[-3000:]}")
        stats = _last_stats(stat_file)
        return SippResult(
            returncode=returncode,
            created=int(stats["TotalCallCreated"]),
            successful=int(stats["SuccessfulCall(C)"]),
            failed=int(stats["FailedCall(C)"]),
            elapsed=_epoch(stats["CurrentTime"]) - _epoch(stats["StartTime"]),
            retransmissions=int(stats.get("Retransmissions(C)", "0") or 0),
            response_time=_duration(stats["ResponseTime1(C)"])
            if "ResponseTime1(C)" in stats
            else None,
            failure_causes={
                name[len("Failed") : -len("(C)")]: int(value)
                for name, value in stats.items()
                if name.startswith("Failed")
                and name.endswith("(C)")
                and name != "FailedCall(C)"
                and value.isdigit()
                and int(value)
            },
            unexpected_codes=_error_codes(self.workdir),
            workdir=self.workdir,
            output=output,
        )

    def stop(self) -> None:
        """Kill SIPp if it still runs (a failed test's cleanup)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _last_stats(path: Path) -> dict[str, str]:
    """The header and last row of SIPp's ``;``-separated statistics file."""
    with path.open(newline="", errors="replace") as f:
        rows = [row for row in csv.reader(f, delimiter=";") if row]
    if len(rows) < 2:
        raise SippError(f"no statistics in {path}")
    return dict(zip(rows[0], rows[-1], strict=False))


def _epoch(stamp: str) -> float:
    """SIPp's ``date<TAB>time<TAB>epoch`` timestamp as seconds since the epoch."""
    return float(stamp.split("\t")[-1])


def _duration(text: str) -> float:
    """SIPp's ``HH:MM:SS:micro`` duration in seconds."""
    hours, minutes, seconds, micros = (int(part) for part in text.split(":"))
    return hours * 3600 + minutes * 60 + seconds + micros / 1e6


def _error_codes(workdir: Path) -> Counter[int]:
    """Count the status codes SIPp logged in ``*_error_codes.csv`` (``-trace_error_codes``)."""
    codes: Counter[int] = Counter()
    for path in workdir.glob("*_error_codes.csv"):
        for line in path.read_text(errors="replace").splitlines():
            fields = line.split(";")
            if len(fields) >= 3:
                codes.update(int(c) for c in fields[2].split(",") if c.strip().isdigit())
    return codes


def start_uas(
    scenario_file: Path, *, port: int, media_port: int, workdir: Path, calls: int, timeout: float
) -> subprocess.Popen[bytes]:
    """Start SIPp as a callee in the background on 127.0.0.1:``port``.

    It exits 0 once ``calls`` calls went through the scenario; the caller
    registers a contact pointing at ``port`` and waits for (or kills) it.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [
            "sipp",
            "-sf",
            str(scenario_file),
            "-i",
            "127.0.0.1",
            "-p",
            str(port),
            "-mp",
            str(media_port),
            "-m",
            str(calls),
            "-nostdin",
            "-timeout",
            f"{timeout:.0f}s",
            "-trace_err",
            "-error_file",
            str(workdir / "uas-errors.log"),
        ],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def events(workdir: Path, name: str) -> list[list[str]]:
    """The words after ``name`` on each line of ``workdir/events.log`` that starts with it,
    so far.

    Scenarios report what the test needs to know (the media address in an answer, the
    Call-ID of an incoming call) with ``<exec command="echo NAME [$var] >> events.log"/>``;
    SIPp runs the command in its working directory without waiting for it, each in a
    shell of its own, so lines written moments apart may land in either order.
    """
    path = workdir / EVENTS
    text = path.read_text() if path.exists() else ""
    return [words[1:] for words in map(str.split, text.splitlines()) if words[:1] == [name]]


def wait_event(workdir: Path, name: str, timeout: float = 15.0) -> list[str]:
    """The words after ``name`` on the first line of ``workdir/events.log`` that starts
    with it (:func:`events`), once there is one."""

    def find() -> list[str] | None:
        found = events(workdir, name)
        return found[0] if found else None

    return wait_for(find, f"SIPp in {workdir} never reported {name!r}", timeout)


def send_cue(
    address: tuple[str, int],
    call_id: str,
    step: int,
    transport: Transport | str = "u1",
    headers: Sequence[str] = (),
) -> None:
    """Tell the SIPp call ``call_id`` listening on ``address`` to go on.

    A scenario waits for the test with ``<recv request="CUE"/>``: SIPp files the
    request under its Call-ID like any other; ``step`` numbers the CSeq, as SIPp
    takes a repeated identical request for a retransmission.  Not SIP traffic of
    the call, so no response is expected.  ``headers`` (``"X-Name: value"`` lines) carry
    what the test knows only now, for the scenario to read with ``<ereg>``.
    """
    host, port = address
    cue = (
        f"CUE sip:sipp@{host}:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKcue{step}\r\n"
        "From: <sip:test@127.0.0.1>;tag=cue\r\n"
        f"To: <sip:sipp@{host}:{port}>\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: {step} CUE\r\n"
        + "".join(f"{line}\r\n" for line in headers)
        + "Content-Length: 0\r\n\r\n"
    ).encode()
    if transport_mode(transport).startswith("u"):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(cue, address)
    else:
        with socket.create_connection(address, timeout=5) as sock:
            sock.sendall(cue)
