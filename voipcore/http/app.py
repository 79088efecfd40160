"""``[http] listen`` and ``tls_listen``: the web dialer, the REST API
(:mod:`voipcore.http.rest`), Prometheus ``/metrics`` and ``/healthz`` (aiohttp).

Metrics are read live from the server at scrape time (a custom collector), so
nothing is counted twice and the hot paths keep their plain integer counters.
The app sees the server only through :class:`ServerView`, and its users only
through :class:`~voipcore.http.auth.Accounts`.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from voipcore.http.api import ACCOUNTS, Api, session_user
from voipcore.http.auth import Accounts

#: The web dialer's files: ``/`` is its ``index.html``, the rest is under ``/static/``.
STATIC_DIR = Path(__file__).parent / "static"
#: The page runs its own scripts and talks to this server only (WebSocket included).
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; connect-src 'self' wss: ws:; "
    "media-src 'self' blob:; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'"
)
#: Largest request body: a CSV import of tens of thousands of people (aiohttp's default is 1 MiB).
MAX_REQUEST = 32 * 1024 * 1024
#: On every response: the page policy (CSP Level 3), no MIME sniffing, no Referer leaks.
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class ServerView(Protocol):
    """What HTTP reads from a running server, and all it may."""

    def sip_counters(self) -> Mapping[str, int]:
        """SIP message totals, by the names in :data:`_SIP_COUNTERS`."""
        ...

    def sip_requests_by_method(self) -> Mapping[str, int]:
        """SIP requests received, by method."""
        ...

    def registrations(self) -> int:
        """Registered contacts."""
        ...

    def transactions(self) -> int:
        """Live SIP transactions."""
        ...

    def calls_in_progress(self) -> int:
        """Calls not yet ended."""
        ...

    def origination_refused(self) -> int:
        """INVITEs claiming to come from the trunk that did not."""
        ...

    def trunk_health(self) -> dict[str, tuple[bool, float | None]] | None:
        """Per trunk edge: answered its last OPTIONS ping, round-trip seconds; None: no trunk."""
        ...

    async def media_stats(self) -> list[dict[str, Any]]:
        """One stats dict per media engine (the in-process one, or each worker)."""
        ...


_SIP_COUNTERS = {
    "received": "SIP messages received",
    "sent": "SIP messages sent",
    "parse_errors": "SIP messages that did not parse",
    "bad_requests_answered": "Unparsable requests answered with an error response",
    "dropped": "Unparsable messages dropped (no reply possible)",
    "transaction_timeouts": "Transactions ended by timer B, F or H",
    "transport_failures": "Sends the transport could not make",
}
_MEDIA_GAUGES = {
    "calls": "Calls the media engine carries",
    "streams": "RTP streams (call legs)",
    "audio_streams": "Streams on the audio path (transcoding, recording, prompts, conferences)",
    "ports_free": "RTP port pairs still free",
}
_MEDIA_COUNTERS = {
    "packets_in": "RTP packets received on live streams",
    "packets_out": "RTP packets sent on live streams",
    "tick_overruns": "20 ms audio ticks that ran late",
}


class ServerCollector:
    """Prometheus collector over one running server."""

    def __init__(self, server: ServerView) -> None:
        self.server = server
        #: Media engine statistics, refreshed by the handler before each scrape.
        self.media: list[dict[str, Any]] = []

    def collect(self) -> Iterator[Metric]:
        server = self.server
        counters = server.sip_counters()
        for name, help_text in _SIP_COUNTERS.items():
            yield CounterMetricFamily(f"voipcore_sip_{name}", help_text, counters[name])
        by_method = CounterMetricFamily(
            "voipcore_sip_requests", "SIP requests received, by method", labels=["method"]
        )
        for method, count in sorted(server.sip_requests_by_method().items()):
            by_method.add_metric([method], count)
        yield by_method
        yield GaugeMetricFamily(
            "voipcore_registrations", "Registered contacts", server.registrations()
        )
        yield GaugeMetricFamily(
            "voipcore_sip_transactions", "Live SIP transactions", server.transactions()
        )
        yield GaugeMetricFamily("voipcore_calls", "Calls in progress", server.calls_in_progress())
        yield CounterMetricFamily(
            "voipcore_trunk_origination_refused",
            "INVITEs claiming to come from the trunk that did not (403)",
            server.origination_refused(),
        )
        health = server.trunk_health()
        if health is not None:
            up = GaugeMetricFamily(
                "voipcore_trunk_edge_up", "Edge answered its last OPTIONS ping", labels=["edge"]
            )
            rtt = GaugeMetricFamily(
                "voipcore_trunk_edge_rtt_seconds", "OPTIONS round-trip time", labels=["edge"]
            )
            for edge, (alive, seconds) in sorted(health.items()):
                up.add_metric([edge], 1.0 if alive else 0.0)
                if seconds is not None:
                    rtt.add_metric([edge], seconds)
            yield up
            yield rtt
        for key, help_text in _MEDIA_GAUGES.items():
            yield GaugeMetricFamily(f"voipcore_media_{key}", help_text, self._media_total(key))
        for key, help_text in _MEDIA_COUNTERS.items():
            yield CounterMetricFamily(f"voipcore_media_{key}", help_text, self._media_total(key))

    def _media_total(self, key: str) -> float:
        return float(sum(stats.get(key, 0) for stats in self.media))


def make_app(
    server: ServerView,
    accounts: Accounts,
    *,
    api: Api | None = None,
    routes: Iterable[web.AbstractRouteDef] = (),
    static: Path = STATIC_DIR,
) -> web.Application:
    """The aiohttp application: ``api``'s operations (:mod:`voipcore.http.rest`) and
    ``routes`` as they are (the dialer's WebSocket)."""
    registry = CollectorRegistry(auto_describe=True)
    collector = ServerCollector(server)
    registry.register(collector)

    async def metrics(_: web.Request) -> web.Response:
        collector.media = await server.media_stats()
        return web.Response(
            body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def healthz(_: web.Request) -> web.Response:
        media = await server.media_stats()
        return web.json_response(
            {
                "status": "ok",
                "registrations": server.registrations(),
                "media_workers": len(media),
            }
        )

    async def index(_: web.Request) -> web.FileResponse:
        return web.FileResponse(static / "index.html")

    app = web.Application(client_max_size=MAX_REQUEST)
    app[ACCOUNTS] = accounts
    app.on_response_prepare.append(_security_headers)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    if api is not None:
        app.router.add_routes(api.routes())
    app.router.add_get("/", index)
    app.router.add_static("/static", static)
    app.router.add_routes(routes)
    return app


def signed_in_user(request: web.Request) -> str | None:
    """The username of the request's session cookie, None if not signed in."""
    user = session_user(request, time.time())
    return None if user is None else user.username


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(SECURITY_HEADERS)
    if request.path.endswith(".js") and isinstance(response, web.FileResponse):
        # RFC 9239 §6: text/javascript (Python 3.11 guesses application/javascript).
        response.content_type = "text/javascript"


async def start_http(app: web.Application) -> web.AppRunner:
    """A runner for ``app``, ready for :func:`listen`."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    return runner


async def listen(
    runner: web.AppRunner, host: str, port: int, ssl_context: ssl.SSLContext | None = None
) -> int:
    """Serve ``runner``'s app on ``host:port`` too (HTTPS with ``ssl_context``; port 0
    picks one); returns the bound port."""
    before = len(runner.addresses)
    await web.TCPSite(runner, host, port, ssl_context=ssl_context).start()
    return int(runner.addresses[before][1])
