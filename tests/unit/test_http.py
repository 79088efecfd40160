"""/metrics over a stub :class:`ServerView`: the app needs nothing else from the server;
the dialer's files and an added route over in-process accounts."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry, generate_latest

from tests.unit.test_http_auth import ALICE
from voipcore.dialer.people import PeopleBook
from voipcore.http.app import ServerCollector, ServerView, make_app, signed_in_user
from voipcore.http.auth import Accounts, ApiTokens, Sessions, Throttle
from voipcore.http.rest import Backend, build_api
from voipcore.store.calls import AsyncCallLog, CallLog
from voipcore.store.db import open_engine

T = TypeVar("T")


class StubServer:
    def __init__(self, health: dict[str, tuple[bool, float | None]] | None) -> None:
        self.health = health

    def sip_counters(self) -> Mapping[str, int]:
        names = ("received", "sent", "parse_errors", "bad_requests_answered", "dropped")
        return dict.fromkeys(names, 1) | {"transaction_timeouts": 2, "transport_failures": 3}

    def sip_requests_by_method(self) -> Mapping[str, int]:
        return {"REGISTER": 5, "INVITE": 4}

    def registrations(self) -> int:
        return 6

    def transactions(self) -> int:
        return 7

    def calls_in_progress(self) -> int:
        return 8

    def origination_refused(self) -> int:
        return 9

    def trunk_health(self) -> dict[str, tuple[bool, float | None]] | None:
        return self.health

    async def media_stats(self) -> list[dict[str, Any]]:
        return []


def _scrape(server: ServerView, media: list[dict[str, Any]]) -> list[str]:
    registry = CollectorRegistry(auto_describe=True)
    collector = ServerCollector(server)
    collector.media = media
    registry.register(collector)
    text = generate_latest(registry).decode()
    return [line for line in text.splitlines() if not line.startswith("#")]


def test_metrics_read_every_figure_from_the_view() -> None:
    health: dict[str, tuple[bool, float | None]] = {
        "ashburn": (True, 0.02),
        "umatilla": (False, None),
    }
    lines = _scrape(StubServer(health), [{"calls": 2, "packets_in": 10}, {"calls": 1}])
    for expected in (
        "voipcore_sip_received_total 1.0",
        "voipcore_sip_transport_failures_total 3.0",
        'voipcore_sip_requests_total{method="INVITE"} 4.0',
        "voipcore_registrations 6.0",
        "voipcore_sip_transactions 7.0",
        "voipcore_calls 8.0",
        "voipcore_trunk_origination_refused_total 9.0",
        'voipcore_trunk_edge_up{edge="ashburn"} 1.0',
        'voipcore_trunk_edge_up{edge="umatilla"} 0.0',
        'voipcore_trunk_edge_rtt_seconds{edge="ashburn"} 0.02',
        "voipcore_media_calls 3.0",
        "voipcore_media_packets_in_total 10.0",
    ):
        assert expected in lines
    assert not any(
        line.startswith('voipcore_trunk_edge_rtt_seconds{edge="umatilla"') for line in lines
    )


def test_metrics_without_a_trunk_have_no_edge_series() -> None:
    lines = _scrape(StubServer(None), [])
    assert not any(line.startswith("voipcore_trunk_edge") for line in lines)
    assert "voipcore_media_ports_free 0.0" in lines


def test_dialer_files_and_an_added_route_that_knows_who_signed_in(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("<!doctype html><title>dialer</title>")
    (tmp_path / "app.js").write_text("export {};")
    users = {ALICE.username: ALICE}
    engine = open_engine("sqlite:///:memory:")
    accounts = Accounts(users.get, Sessions(engine, 3600, 0), Throttle(), ApiTokens(engine))

    async def whoami(request: web.Request) -> web.Response:
        return web.json_response(signed_in_user(request))

    ice = [{"urls": ["stun:s.example"]}]

    async def run(job: Callable[[], T]) -> T:
        return job()

    backend = Backend(
        accounts=accounts,
        run=run,
        people=PeopleBook(engine, "US"),
        call_log=AsyncCallLog(CallLog(engine)),
        calls=lambda: None,
        users=lambda: users,
        ice_servers=ice,
    )
    app = make_app(
        StubServer(None),
        accounts,
        api=build_api(backend),
        routes=[web.get("/whoami", whoami)],
        static=tmp_path,
    )

    async def scenario() -> None:
        async with TestClient(TestServer(app)) as client:
            index = await client.get("/")
            assert index.content_type == "text/html" and "dialer" in await index.text()
            script = await client.get("/static/app.js")
            assert script.content_type == "text/javascript"
            assert script.headers["X-Content-Type-Options"] == "nosniff"
            assert "connect-src 'self' wss: ws:" in script.headers["Content-Security-Policy"]
            assert await (await client.get("/whoami")).json() is None
            body = {"username": "alice", "password": "alice-secret"}
            signed_in = await client.post("/api/v1/session", json=body)
            assert (await signed_in.json())["ice_servers"] == ice
            token = signed_in.cookies["voipcore_session"].value
            who = await client.get("/whoami", cookies={"voipcore_session": token})
            assert await who.json() == "alice"
            not_json = await client.post("/api/v1/session", data=b"{")
            assert not_json.status == 400

    asyncio.run(scenario())
