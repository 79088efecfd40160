"""``[http] listen``: Prometheus ``/metrics`` and ``/healthz`` (aiohttp).

Metrics are read live from the SIP service and the media engine at scrape
time (a custom collector), so nothing is counted twice and the hot paths
keep their plain integer counters.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

if TYPE_CHECKING:
    from voipcore.server import Server

log = logging.getLogger(__name__)

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
    """Prometheus collector over one running :class:`~voipcore.server.Server`."""

    def __init__(self, server: Server) -> None:
        self.server = server
        #: Media engine statistics, refreshed by the handler before each scrape.
        self.media: list[dict[str, Any]] = []

    def collect(self) -> Iterator[Metric]:
        counters = self.server.service.counters
        for name, help_text in _SIP_COUNTERS.items():
            yield CounterMetricFamily(f"voipcore_sip_{name}", help_text, getattr(counters, name))
        by_method = CounterMetricFamily(
            "voipcore_sip_requests", "SIP requests received, by method", labels=["method"]
        )
        for method, count in sorted(counters.by_method.items()):
            by_method.add_metric([method], count)
        yield by_method
        yield GaugeMetricFamily(
            "voipcore_registrations", "Registered contacts", len(self.server.service.registrar)
        )
        yield GaugeMetricFamily(
            "voipcore_sip_transactions", "Live SIP transactions", len(self.server.service.layer)
        )
        b2bua = self.server.b2bua
        if b2bua is not None:
            yield GaugeMetricFamily("voipcore_calls", "Calls in progress", len(b2bua.calls))
            yield CounterMetricFamily(
                "voipcore_trunk_origination_refused",
                "INVITEs claiming to come from the trunk that did not (403)",
                b2bua.origination_refused,
            )
            if b2bua.trunk is not None:
                up = GaugeMetricFamily(
                    "voipcore_trunk_edge_up", "Edge answered its last OPTIONS ping", labels=["edge"]
                )
                rtt = GaugeMetricFamily(
                    "voipcore_trunk_edge_rtt_seconds", "OPTIONS round-trip time", labels=["edge"]
                )
                for edge, (alive, seconds) in sorted(b2bua.trunk.health.items()):
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


def make_app(server: Server) -> web.Application:
    """The aiohttp application."""
    registry = CollectorRegistry(auto_describe=True)
    collector = ServerCollector(server)
    registry.register(collector)

    async def metrics(_: web.Request) -> web.Response:
        collector.media = await _media_stats(server)
        return web.Response(
            body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def healthz(_: web.Request) -> web.Response:
        media = await _media_stats(server)
        return web.json_response(
            {
                "status": "ok",
                "registrations": len(server.service.registrar),
                "media_workers": len(media),
            }
        )

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    return app


async def _media_stats(server: Server) -> list[dict[str, Any]]:
    """One stats dict per engine (the in-process one, or each worker)."""
    if server.media is None:
        return []
    reply = await server.media.request("stats", {})
    workers = reply.get("workers")
    return list(workers) if isinstance(workers, list) else [reply]


async def start_http(server: Server, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Serve on ``host:port`` (0 picks a port); returns the runner and the bound port."""
    runner = web.AppRunner(make_app(server), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner, int(runner.addresses[0][1])
