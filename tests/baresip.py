"""baresip (Debian's 1.0) as a real softphone in tests, driven over its ``ctrl_tcp`` interface.

Each :class:`Baresip` runs ``baresip -f DIR`` headless with its own config directory: SIP over
UDP on 127.0.0.1 (port from the kernel), G.711 only, a WAV file of a sine as the microphone
(``aufile``) and every call's decoded audio dumped to ``DIR/dump-*-dec.wav`` (``sndfile``).
Commands and events are JSON in netstrings on a loopback TCP socket (``ctrl_tcp``); the account
is added with ``uanew`` once that socket is connected, so no ``REGISTER_OK`` can be missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import socket
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from media.tones import RATE, sine

BINARY = "baresip"
MODULES = "/usr/lib/baresip/modules"
_READY = b"baresip is ready."
_CTRL_FAILED = b"ctrl_tcp: failed to listen"


class BaresipError(RuntimeError):
    """baresip did not start, refused a command, or an awaited event never came."""


@dataclass(frozen=True)
class BaresipEvent:
    """One ``{"event": true, ...}`` message of ``ctrl_tcp``."""

    type: str
    """``REGISTER_OK``, ``CALL_INCOMING``, ``CALL_ESTABLISHED``, ``CALL_CLOSED``, ..."""
    param: str
    """The event's detail: a close reason (``480 Temporarily Unavailable``), ``offer``..."""
    call_id: str | None
    """The SIP Call-ID of the call the event is about, if any."""


def _free_tcp_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def write_tone(path: Path, freq: float, seconds: float = 30.0) -> None:
    """A mono 16-bit 8 kHz WAV file of a sine at ``freq`` Hz (what ``aufile`` accepts)."""
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(RATE)
        wav.writeframes(sine(freq, seconds, 0.4).astype("<i2").tobytes())


@dataclass
class Baresip:
    """A registered baresip user agent; use as ``async with Baresip(...) as phone``.

    ``tone_hz`` is what it says into every call. Incoming calls wait for :meth:`command`
    ``accept`` (answer mode ``manual``).
    """

    workdir: Path
    user: str
    password: str
    domain: str
    proxy_port: int
    tone_hz: float
    audio_codecs: tuple[str, ...] = ()
    """The only codecs the account offers and accepts, by baresip's name (``pcmu``,
    ``pcma``), in order of preference; all that its modules have when empty."""
    events: list[BaresipEvent] = field(default_factory=list)
    _proc: asyncio.subprocess.Process | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _writer: asyncio.StreamWriter | None = None
    _responses: dict[str, asyncio.Future[str]] = field(default_factory=dict)
    _cursor: int = 0
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    _tokens: itertools.count[int] = field(default_factory=itertools.count)

    @property
    def log_path(self) -> Path:
        """baresip's own output, SIP trace included."""
        return self.workdir / "baresip.log"

    @property
    def aor(self) -> str:
        return f"sip:{self.user}@{self.domain}"

    async def __aenter__(self) -> Baresip:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self, timeout: float = 10.0, attempts: int = 3) -> None:
        """Start baresip and register the account; a taken control port means a new one."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        write_tone(self.workdir / "tone.wav", self.tone_hz)
        for _ in range(attempts):
            ctrl_port = _free_tcp_port()
            self._write_config(ctrl_port)
            if await self._spawn(timeout):
                break
            await self._kill()
        else:
            raise BaresipError(f"no free control port in {attempts} tries:\n{self.log_text()}")
        reader, self._writer = await asyncio.open_connection("127.0.0.1", ctrl_port)
        self._tasks.append(asyncio.create_task(self._read_messages(reader)))
        account = (
            f'<{self.aor}>;auth_pass={self.password};outbound="sip:127.0.0.1:{self.proxy_port}"'
            ";regint=60;answermode=manual"
        )
        if self.audio_codecs:
            # An account parameter, not a config key: baresip 1.0 offers only these in its
            # SDP and answers an offer with none of them 488 (RFC 3264 §6).
            account += f";audio_codecs={','.join(self.audio_codecs)}"
        await self.command("uanew", account)
        registered = await self.wait_event("REGISTER_OK", "REGISTER_FAIL", timeout=timeout)
        if registered.type != "REGISTER_OK":
            raise BaresipError(f"{self.aor} did not register: {registered.param}")

    def _write_config(self, ctrl_port: int) -> None:
        # net_interface pins the address put in Contact and SDP to loopback.
        (self.workdir / "config").write_text(
            f"""poll_method epoll
sip_listen 127.0.0.1:0
net_interface 127.0.0.1
audio_source aufile,{self.workdir / "tone.wav"}
audio_player aubridge,player
audio_alert aubridge,alert
snd_path {self.workdir}
ctrl_tcp_listen 127.0.0.1:{ctrl_port}
module_path {MODULES}
module g711.so
module aufile.so
module aubridge.so
module sndfile.so
module ctrl_tcp.so
module_app menu.so
"""
        )

    async def _spawn(self, timeout: float) -> bool:
        """Run baresip until it is ready: False if its control port was taken."""
        self._proc = await asyncio.create_subprocess_exec(
            BINARY,
            "-f",
            str(self.workdir),
            "-s",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        ready: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        assert self._proc.stdout is not None
        self._tasks.append(asyncio.create_task(self._read_log(self._proc.stdout, ready)))
        try:
            return await asyncio.wait_for(ready, timeout)
        except TimeoutError:
            raise BaresipError(f"baresip did not start:\n{self.log_text()}") from None

    async def _read_log(self, stdout: asyncio.StreamReader, ready: asyncio.Future[bool]) -> None:
        """Copy baresip's output to :attr:`log_path`; settle ``ready`` at start-up's end."""
        ctrl_failed = False
        with self.log_path.open("ab") as log:
            async for line in stdout:
                log.write(line)
                log.flush()
                ctrl_failed |= _CTRL_FAILED in line
                if _READY in line and not ready.done():
                    ready.set_result(not ctrl_failed)
        if not ready.done():
            ready.set_exception(BaresipError(f"baresip exited:\n{self.log_text()}"))

    async def _read_messages(self, reader: asyncio.StreamReader) -> None:
        """File each netstring from ``ctrl_tcp``: responses by token, events in order."""
        while True:
            try:
                size = int((await reader.readuntil(b":"))[:-1])
                message: dict[str, Any] = json.loads((await reader.readexactly(size + 1))[:-1])
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            if message.get("response"):
                future = self._responses.pop(str(message.get("token")), None)
                if future is not None and not future.done():
                    if message.get("ok"):
                        future.set_result(str(message.get("data", "")))
                    else:
                        future.set_exception(BaresipError(str(message.get("data"))))
            elif message.get("event"):
                event = BaresipEvent(
                    str(message.get("type")), str(message.get("param", "")), message.get("id")
                )
                async with self._changed:
                    self.events.append(event)
                    self._changed.notify_all()

    async def command(self, name: str, params: str = "", timeout: float = 5.0) -> str:
        """Run a menu command (``dial``, ``accept``, ``hangup``, ``hold``...) and return
        its text output."""
        if self._writer is None:
            raise BaresipError("baresip is not running")
        token = str(next(self._tokens))
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._responses[token] = future
        self._send(name, params, token)
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise BaresipError(f"no answer to {name!r}:\n{self.log_text()}") from None

    def _send(self, name: str, params: str, token: str) -> None:
        assert self._writer is not None
        body = json.dumps({"command": name, "params": params, "token": token}).encode()
        self._writer.write(b"%d:%s," % (len(body), body))

    async def wait_event(self, *types: str, timeout: float = 5.0) -> BaresipEvent:
        """The next event of one of ``types`` after the last one returned (others skipped)."""

        def found() -> bool:
            while self._cursor < len(self.events):
                if self.events[self._cursor].type in types:
                    return True
                self._cursor += 1
            return False

        try:
            async with self._changed:
                await asyncio.wait_for(self._changed.wait_for(found), timeout)
        except TimeoutError:
            seen = [e.type for e in self.events]
            raise BaresipError(f"{self.user}: no {types} within {timeout} s; saw {seen}") from None
        self._cursor += 1
        return self.events[self._cursor - 1]

    async def received_audio(self) -> npt.NDArray[np.int16]:
        """Decoded audio of the phone's one call; wait for its ``CALL_CLOSED`` first.

        baresip 1.0 drops ``sndfile`` from the receive pipeline at a re-INVITE (hold), so
        the dump then ends there.
        """
        # sndfile completes the WAV as the call ends, right after the CALL_CLOSED event:
        # a command's round trip through baresip's main loop comes after both.
        await self.command("listcalls")
        dumps = sorted(self.workdir.glob("dump-*-dec.wav"))
        if len(dumps) != 1:
            raise BaresipError(f"expected one received-audio dump, found {dumps}")
        with wave.open(str(dumps[0]), "rb") as wav:
            if (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) != (1, 2, RATE):
                raise BaresipError(f"{dumps[0]} is not mono 16-bit {RATE} Hz")
            return np.frombuffer(wav.readframes(wav.getnframes()), "<i2").astype(np.int16)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    async def stop(self, timeout: float = 3.0) -> None:
        """``quit`` (baresip unregisters first), killed if it takes longer than ``timeout``."""
        if self._writer is not None and self._proc is not None and self._proc.returncode is None:
            self._send("quit", "", "quit")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._proc.wait(), timeout)
        await self._kill()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def _kill(self) -> None:
        if self._proc is not None:
            if self._proc.returncode is None:
                self._proc.kill()
            await self._proc.wait()
            self._proc = None
