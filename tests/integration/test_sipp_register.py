"""SIPp, an independent SIP implementation, registers with digest auth (RFC 3261 §10, §22).

SIPp 3.6.1 answers only the first ``WWW-Authenticate`` it receives, and only
with MD5, so it needs ``[sip] digest_algorithms`` to put MD5 first, as the
default config does: ``test_sipp_registers_with_the_default_config`` guards that.
The other tests use ``sipp_server``, the ``server`` fixture with 20 more users,
so that 20 registrations over per-call sockets stay within ``max_contacts``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.harness import DEFAULT_USERS, ServerProcess
from tests.harness import TestUser as Account  # as: pytest would try to collect Test*
from tests.sipp import (
    SippResult,
    run_sipp,
    scenario,
    sipp_available,
    transport_mode,
    write_users_csv,
)

if TYPE_CHECKING:
    from tests.integration.conftest import StartServer

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not sipp_available(), reason="sipp is not installed"),
]

DOMAIN = "test.local"
USERS = [Account(f"user{i:02d}", f"secret-{i:02d}") for i in range(20)]


@pytest.fixture
def sipp_server(start_server: StartServer) -> ServerProcess:
    """A running voipcore with alice, bob and user00..user19, challenging MD5 first."""
    return start_server(
        users=DEFAULT_USERS + USERS,
        extra_sip='digest_algorithms = ["MD5", "SHA-256"]',
        sip_trace=True,
    )


def sipp(
    server: ServerProcess,
    tmp_path: Path,
    name: str,
    users: list[tuple[str, str]],
    *,
    transport: str = "udp",
    calls: int | None = None,
    expires: int = 3600,
) -> SippResult:
    """Run scenario ``name`` once per user (or ``calls`` times) against ``server``."""
    mode = transport_mode(transport)
    workdir = tmp_path / f"sipp-{name.removesuffix('.xml')}-{mode}"
    return run_sipp(
        scenario(name),
        server.host,
        server.tcp_port if mode.startswith("t") else server.udp_port,
        workdir=workdir,
        transport=mode,
        rate=100,
        calls=calls if calls is not None else len(users),
        users_csv=write_users_csv(workdir / "users.csv", users),
        keys={"domain": DOMAIN, "expires": str(expires)},
        auth_uri=DOMAIN,
        timeout=8,
    )


def credentials(users: list[Account]) -> list[tuple[str, str]]:
    return [(u.username, u.password) for u in users]


@pytest.mark.parametrize("transport", ["u1", "un", "t1", "tn"])
def test_sipp_registers_20_users_with_digest(
    sipp_server: ServerProcess, tmp_path: Path, transport: str
) -> None:
    result = sipp(
        sipp_server, tmp_path, "register_auth.xml", credentials(USERS), transport=transport
    )

    assert result.ok, result.describe()
    assert result.successful == 20
    assert sipp_server.alive()


def test_sipp_with_wrong_password_gets_403_for_every_registration(
    sipp_server: ServerProcess, tmp_path: Path
) -> None:
    result = sipp(
        sipp_server, tmp_path, "register_auth.xml", [("alice", "not-the-secret")], calls=3
    )

    assert result.returncode == 1
    assert (result.successful, result.failed) == (0, 3)
    assert result.unexpected_codes == {403: 3}, result.describe()


def test_sipp_with_too_short_expires_gets_423(sipp_server: ServerProcess, tmp_path: Path) -> None:
    result = sipp(sipp_server, tmp_path, "register_auth.xml", credentials(USERS[:2]), expires=30)

    assert result.failed == 2
    assert result.unexpected_codes == {423: 2}, result.describe()
    assert "Min-Expires: 60" in result.error_log()


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_sipp_registers_then_unregisters_every_binding(
    sipp_server: ServerProcess, tmp_path: Path, transport: str
) -> None:
    users = credentials(USERS)
    registered = sipp(sipp_server, tmp_path, "register_auth.xml", users, transport=transport)
    assert registered.ok, registered.describe()

    # unregister.xml fails a call whose 200 still lists a Contact.
    removed = sipp(sipp_server, tmp_path, "unregister.xml", users, transport=transport)

    assert removed.ok, removed.describe()
    assert removed.successful == 20


def test_sipp_registers_with_the_default_config(server: ServerProcess, tmp_path: Path) -> None:
    result = sipp(server, tmp_path, "register_auth.xml", credentials(DEFAULT_USERS), calls=20)

    assert result.ok, result.describe()
    assert result.successful == 20
