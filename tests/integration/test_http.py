"""/metrics and /healthz on [http] listen, read from a running server."""

from __future__ import annotations

import json
import urllib.request

import pytest

from tests.harness import ServerProcess, metric
from tests.sipclient import SipClient

pytestmark = pytest.mark.integration


def get(server: ServerProcess, path: str) -> tuple[int, str, str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{server.http_port}{path}", timeout=5) as r:
        return r.status, r.headers.get("Content-Type", ""), r.read().decode()


def test_metrics_follow_sip_traffic_and_registrations(server: ServerProcess) -> None:
    status, content_type, before = get(server, "/metrics")
    assert status == 200 and content_type.startswith("text/plain")
    client = SipClient("127.0.0.1", server.udp_port)
    client.send_raw(client.request("OPTIONS", "alice", "test.local"))
    assert client.recv().status == 200
    assert client.register("alice", "alice-secret", "test.local").status == 200
    client.send_raw(b"garbage\r\n\r\n")
    _, _, after = get(server, "/metrics")
    assert (
        metric(after, "voipcore_sip_received_total")
        >= metric(before, "voipcore_sip_received_total") + 4
    )
    assert metric(after, "voipcore_registrations") == 1
    assert metric(after, "voipcore_sip_dropped_total") == 1
    assert 'voipcore_sip_requests_total{method="REGISTER"} 2.0' in after
    assert metric(after, "voipcore_media_ports_free") == 5000


def test_healthz(server: ServerProcess) -> None:
    status, _, body = get(server, "/healthz")
    assert status == 200
    assert json.loads(body) == {"status": "ok", "registrations": 0, "media_workers": 1}
