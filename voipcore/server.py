"""Wiring: config → store, registrar, SIP service and transports on one event loop."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import gc
import ipaddress
import logging
import os
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any, TypeVar

from aiohttp import web

from media.engine import MediaEngine
from media.workers import WorkerPool
from voipcore.calls.browser import Pages
from voipcore.calls.manager import CallManager, CallSettings
from voipcore.calls.recording import Recordings, RecordingSettings, store_index
from voipcore.calls.routing import Router
from voipcore.calls.signalling import LoopRuntime
from voipcore.config import Config, parse_host_port
from voipcore.dialer.numbers import CountryPolicy
from voipcore.dialer.people import PeopleBook
from voipcore.http.app import listen, make_app, signed_in_user, start_http
from voipcore.http.auth import Accounts, ApiTokens, Sessions, Throttle
from voipcore.http.dialer import dialer_route
from voipcore.http.rest import Backend, build_api, person_link
from voipcore.http.rest_passthrough import passthrough_backend
from voipcore.http.rest_recordings import RecordingsBackend
from voipcore.http.tls import https_context
from voipcore.logs import TRACE_LOGGER
from voipcore.registrar import Registrar
from voipcore.service import Outgoing, SipService, StoreBindings
from voipcore.sip.digest import DigestAuthenticator
from voipcore.sip.transaction import Address, reopen_address
from voipcore.store import User
from voipcore.store.calls import AsyncCallLog, CallLog
from voipcore.store.recordings import RecordingStore
from voipcore.store.users import Store
from voipcore.store.writer import BatchWriter
from voipcore.transport import TransportSet
from voipcore.transport.tcp import TcpTransport
from voipcore.transport.udp import UdpTransport
from voipcore.trunks.twilio import TwilioTrunk

log = logging.getLogger(__name__)
T = TypeVar("T")
trace = logging.getLogger(TRACE_LOGGER)

#: Seconds the call log's group commit waits for company (see :class:`AsyncCallLog`).
CALL_LOG_WINDOW = 0.02
#: How often users edited by the CLI (another SQLite connection) are picked up.
USER_REFRESH_SECONDS = 2.0
#: How often recordings past their retention period are deleted.
RECORDING_SWEEP_SECONDS = 3600.0


class ListenError(Exception):
    """A configured address cannot be listened on (in use, not local, not permitted)."""

    def __init__(self, key: str, address: str, error: OSError) -> None:
        # The errno's own words: asyncio rewords some errors around the address.
        reason = os.strerror(error.errno) if error.errno else str(error)
        super().__init__(f"{key}: cannot listen on {address}: {reason}")


class Server:
    """A running voipcore signalling process."""

    #: The loop :meth:`start` ran on; kept because ``asyncio.get_running_loop()``
    #: costs a ``getpid()`` system call, per datagram on this path.
    _loop: asyncio.AbstractEventLoop

    def __init__(self, config: Config, store: Store) -> None:
        self.config = config
        self.store = store
        self.writer = BatchWriter(store)
        self.transports = TransportSet()
        self._users: dict[str, User] = {}
        self._users_version = -1
        authenticator = DigestAuthenticator(
            config.sip.domain,
            store.secret("digest-nonce"),
            nonce_ttl=config.sip.nonce_ttl,
            algorithms=config.sip.digest_algorithms,
        )
        registrar = Registrar(
            config.sip.domain,
            authenticator,
            lambda name: self._users.get(name),
            min_expires=config.sip.min_expires,
            max_expires=config.sip.max_expires,
            default_expires=config.sip.default_expires,
            max_contacts=config.sip.max_contacts,
        )
        self.service = SipService(registrar)
        self.media: MediaEngine | WorkerPool | None = None
        self._http: web.AppRunner | None = None
        self.call_log: AsyncCallLog | None = None
        self.calls: CallManager | None = None
        self.recording_store = RecordingStore(store.engine)
        self.recordings: Recordings | None = None
        #: Signed-in dialer pages, rung like phones.
        self.pages = Pages()
        self._runtime: LoopRuntime | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._pump_scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Load state, bind every listener and start serving."""
        loop = self._loop = asyncio.get_running_loop()
        self.service.wall_offset = time.time() - loop.time()
        self._users = self._load_users() or {}
        bindings = self.store.load_bindings(time.time())
        self.service.registrar.load(bindings)
        log.info("loaded %d users and %d registrations", len(self._users), len(bindings))
        sip = self.config.sip
        dscp = self.config.qos.sip_dscp
        for spec in sip.listen:
            transport: UdpTransport | TcpTransport
            try:
                if spec.transport == "udp":
                    transport = await UdpTransport.start(spec, self._received, dscp)
                else:
                    transport = await TcpTransport.start(
                        spec, self._received, dscp, sip.tcp_idle_timeout
                    )
            except OSError as exc:
                raise ListenError("sip.listen", str(spec), exc) from exc
            self.transports.add(transport)
            log.info("sip listening on %s", transport.bound, extra={"listen": str(transport.bound)})
        self.media = await self._start_media()
        # Nothing waits on a call-log write, so batches may gather for 20 ms: at hundreds
        # of calls per second one commit carries dozens of rows instead of one or two.
        self.call_log = AsyncCallLog(
            CallLog(self.store.engine),
            executor=self.writer.executor,
            window=CALL_LOG_WINDOW,
        )
        # Calls a crash left in progress end now, as far as the log can tell.
        close = functools.partial(self.call_log.log.close_unfinished, time.time(), "server_restart")
        unfinished = await self._on_store_thread(close)
        if unfinished:
            log.warning("%d calls were in progress when the server last stopped", unfinished)
        trunk = TwilioTrunk(self.config.trunks.twilio) if self.config.trunks.twilio else None
        router = Router(
            self.service.registrar,
            lambda: self._users,
            ring_groups=self.config.ring_groups,
            has_trunk=trunk is not None,
            default_region=self.config.dialing.default_region,
            policy=CountryPolicy(
                self.config.dialing.countries, allow_premium=self.config.dialing.allow_premium
            ),
            browsers=self.pages.online,
        )
        self._runtime = LoopRuntime(
            loop, wall_offset=lambda: self.service.wall_offset, flush=self._pump
        )
        self.calls = CallManager(
            self.service,
            self.media,
            router,
            self._runtime,
            via=self._via,
            contact=self._contact,
            record=self.call_log.submit,
            trunk=trunk,
            settings=CallSettings(
                ring_timeout=sip.ring_timeout,
                max_calls_per_user=sip.max_calls_per_user,
                session_expires=sip.session_expires,
                min_se=sip.min_se,
                session_timers=sip.session_timers,
                browser_codecs=self.config.media.browser_codecs,
                passthrough_timeout=sip.passthrough_timeout,
            ),
            pages=self.pages,
        )
        self.service.calls = self.calls
        self.recordings = self._start_recordings(self.calls, self.call_log)
        if trunk is not None and trunk.config.ping_interval > 0:
            self._spawn(self.calls.dialler.ping_edges())
        await self._start_http()
        self._spawn(self._refresh_users_forever())
        self._spawn(self._sweep_recordings_forever())
        self._rearm()
        # What is alive now (modules, config, loaded bindings) lives as long as the
        # process: keep the cyclic collector from walking it on every full collection.
        gc.freeze()

    async def _start_http(self) -> None:
        """The web dialer and /metrics on ``[http] listen``, and ``tls_listen`` if set."""
        http = self.config.http
        now = time.time()
        accounts = Accounts(
            lambda name: self._users.get(name),
            Sessions(self.store.engine, http.session_hours * 3600, now),
            Throttle(),
            ApiTokens(self.store.engine),
        )
        ice_servers = [server.model_dump(exclude_none=True) for server in http.ice_servers]

        def hello(username: str) -> dict[str, object]:
            user = self._users.get(username)
            profile = {
                "username": username,
                "display_name": user.display_name if user else None,
                "extension": user.extension if user else None,
            }
            return {
                "user": profile,
                "ice_servers": ice_servers,
                "recording": self.config.recording.policy,
            }

        assert self.calls is not None and self.call_log is not None
        assert self.recordings is not None
        region = self.config.dialing.default_region
        run = self._on_store_thread
        passthrough = passthrough_backend(self.store.engine, self.calls, run)
        backend = Backend(
            accounts=accounts,
            run=run,
            people=PeopleBook(self.store.engine, region),
            call_log=self.call_log,
            calls=lambda: self.calls,
            users=lambda: self._users,
            ice_servers=ice_servers,
            region=region,
            passthrough=passthrough,
            recordings=RecordingsBackend(self.recordings, self.recording_store),
        )
        dialer = dialer_route(
            self.calls,
            signed_in_user,
            hello,
            region=region,
            link=person_link(backend),
            passthrough=passthrough.calls,
            recordings=self.recordings,
        )
        app = make_app(self, accounts, api=build_api(backend), routes=[dialer])
        self._http = await start_http(app)
        listeners: list[tuple[str, str, str, ssl.SSLContext | None]] = [
            ("http", "http.listen", http.listen, None)
        ]
        if http.tls_listen is not None:
            host = parse_host_port(http.tls_listen)[0]
            names = [socket.gethostname(), self.config.media.advertised]
            if not ipaddress.ip_address(host).is_unspecified:
                names.insert(0, host)
            context, _ = https_context(
                http.tls_cert, http.tls_key, self.config.store.data_dir, names
            )
            listeners.append(("https", "http.tls_listen", http.tls_listen, context))
        for scheme, key, address, ssl_context in listeners:
            host, port = parse_host_port(address)
            try:
                bound = await listen(self._http, host, port, ssl_context)
            except OSError as exc:
                raise ListenError(key, address, exc) from exc
            extra = {scheme: f"{host}:{bound}"}
            log.info("%s listening on %s:%d", scheme, host, bound, extra=extra)

    def _local(self, transport: str) -> tuple[str, int]:
        """Our address on ``transport`` as phones should reach it (for Via and Contact)."""
        spec = self.transports.bound(transport)
        host = spec.host
        if ipaddress.ip_address(host).is_unspecified:
            host = self.config.media.advertised
        return (f"[{host}]" if ":" in host else host), spec.port

    def _via(self, transport: str) -> str:
        host, port = self._local(transport)
        return f"SIP/2.0/{transport} {host}:{port}"

    def _contact(self, transport: str) -> str:
        host, port = self._local(transport)
        suffix = "" if transport == "UDP" else f";transport={transport.lower()}"
        return f"sip:voipcore@{host}:{port}{suffix}"

    async def _start_media(self) -> MediaEngine | WorkerPool:
        """In-process engine by default; ``media.workers = N`` starts N processes."""
        media = self.config.media
        advertised = media.advertisement
        factory: Callable[..., MediaEngine | WorkerPool] = (
            functools.partial(WorkerPool, media.workers, control=media.control)
            if media.workers
            else MediaEngine
        )
        engine = factory(
            rtp_ports=media.rtp_ports,
            host=media.host,
            advertise=advertised.address,
            dscp=self.config.qos.media_dscp,
            media_timeout=media.media_timeout,
        )
        await engine.start()
        log.info(
            "media %s on %s ports %d-%d, advertised as %s: %s",
            f"{media.workers} worker processes" if media.workers else "engine in-process",
            media.host,
            *media.rtp_ports,
            advertised.address,
            advertised.reason,
        )
        if advertised.loopback_only:
            log.warning(
                "media listens on %s but is advertised as %s: phones on other machines will "
                "hear nothing; set [media] advertise to the address they reach this server at",
                media.host,
                advertised.address,
            )
        return engine

    async def stop(self) -> None:
        """End the calls, stop listening, finish pending store writes, close the store."""
        if self.calls is not None and self._runtime is not None:
            self.calls.shutdown()
            await self._runtime.drained(timeout=5.0)
        self.transports.close()
        if self._timer is not None:
            self._timer.cancel()
        for task in list(self._tasks):
            task.cancel()
        if self._http is not None:
            await self._http.cleanup()
        if self.media is not None:
            await self.media.stop()
        if self.call_log is not None:
            await self.call_log.close()
        await self.writer.close()
        self.store.close()
        log.info("stopped", extra=dataclasses.asdict(self.service.counters))

    # -- what HTTP reads (voipcore.http.app.ServerView) ---------------------------

    def sip_counters(self) -> dict[str, int]:
        counters = self.service.counters
        return {
            f.name: getattr(counters, f.name)
            for f in dataclasses.fields(counters)
            if f.name != "by_method"
        }

    def sip_requests_by_method(self) -> dict[str, int]:
        return dict(self.service.counters.by_method)

    def registrations(self) -> int:
        return len(self.service.registrar)

    def transactions(self) -> int:
        return len(self.service.layer)

    def calls_in_progress(self) -> int:
        return 0 if self.calls is None else len(self.calls.calls)

    def origination_refused(self) -> int:
        return 0 if self.calls is None else self.calls.origination_refused

    def trunk_health(self) -> dict[str, tuple[bool, float | None]] | None:
        if self.calls is None or self.calls.trunk is None:
            return None
        return dict(self.calls.trunk.health)

    async def media_stats(self) -> list[dict[str, Any]]:
        if self.media is None:
            return []
        reply = await self.media.request("stats", {})
        workers = reply.get("workers")
        return list(workers) if isinstance(workers, list) else [reply]

    # -- event plumbing --------------------------------------------------------

    def _received(self, data: bytes, addr: Address) -> None:
        if trace.isEnabledFor(logging.DEBUG):
            trace.debug("recv %s %s:%s\n%s", *addr, data.decode("utf-8", "replace"))
        self.service.receive(data, addr, self._loop.time())
        self._pump_soon()

    def _pump_soon(self) -> None:
        """Send what is queued once this loop iteration's callbacks are done.

        The loop hands over a burst of datagrams one callback each; their
        answers then leave back to back, so the peer is woken once for the
        burst rather than per datagram, and the timer is re-armed once.
        """
        if not self._pump_scheduled:
            self._pump_scheduled = True
            self._loop.call_soon(self._pump)

    def _pump(self) -> None:
        self._pump_scheduled = False
        service = self.service
        for outgoing in service.datagrams_to_send():
            data, addr = outgoing.data, outgoing.addr
            if trace.isEnabledFor(logging.DEBUG):
                trace.debug("send %s %s:%s\n%s", *addr, data.decode("utf-8", "replace"))
            if not self.transports.send(data, addr):
                target = reopen_address(outgoing.message, addr)
                self.transports.dial(data, target, functools.partial(self._send_failed, outgoing))
        while (event := service.next_event()) is not None:
            if isinstance(event, StoreBindings):
                self.writer.submit(event.changes, functools.partial(self._persisted, event))
        self._rearm()

    def _send_failed(self, outgoing: Outgoing) -> None:
        """No connection could be opened for ``outgoing``: its transaction's error (§17.1.4)."""
        log.info("cannot send to %s:%s:%s", *outgoing.addr)
        self.service.send_failed(outgoing, self._loop.time())
        self._pump_soon()

    def _persisted(self, event: StoreBindings, error: BaseException | None) -> None:
        """The store has the changes (or failed): now the REGISTER gets its reply."""
        now = self._loop.time()
        if error is not None:
            self.service.store_failed(event, now)
        elif event.response is not None:
            self.service.respond(event.response, now)
        self._pump_soon()

    def _rearm(self) -> None:
        deadline = self.service.get_timer()
        if deadline is None or (self._timer_at is not None and self._timer_at <= deadline):
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = self._timer_at = None
        self.service.handle_timer(self._loop.time())
        self._pump()

    def _spawn(self, coro: object) -> None:
        assert asyncio.iscoroutine(coro)
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed", exc_info=task.exception())

    # -- users -------------------------------------------------------------------

    def _load_users(self) -> dict[str, User] | None:
        """Users from the store, or None if nothing changed since the last load."""
        version = self.store.data_version()
        if version == self._users_version:
            return None
        self._users_version = version
        return {u.username: u for u in self.store.list_users()}

    def _start_recordings(self, calls: CallManager, call_log: AsyncCallLog) -> Recordings:
        """Call recording per ``[recording]``."""
        config = self.config.recording
        directory = config.path(self.config.store).resolve()
        settings = RecordingSettings(directory, config.policy, config.announce)
        return Recordings(calls, settings, store_index(self.recording_store, call_log))

    async def _sweep_recordings_forever(self) -> None:
        """Delete recordings past ``[recording] retention_days``, at start and hourly."""
        days = self.config.recording.retention_days
        while True:
            await self._on_store_thread(
                functools.partial(self.recording_store.sweep, time.time(), days)
            )
            await asyncio.sleep(RECORDING_SWEEP_SECONDS)

    async def _on_store_thread(self, job: Callable[[], T]) -> T:
        """Run a store job on the store's one thread (the BatchWriter's), off the loop."""
        return await self._loop.run_in_executor(self.writer.executor, job)

    async def _refresh_users_forever(self) -> None:
        while True:
            await asyncio.sleep(USER_REFRESH_SECONDS)
            users = await self._on_store_thread(self._load_users)
            if users is not None:
                self._users = users
