"""Web dialer sign-in over HTTPS on a running server: cookie, session, sign-out, backoff."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.harness import ServerProcess
from voipcore.http.tls import CERT_FILE

pytestmark = pytest.mark.integration

ALICE = {"username": "alice", "password": "alice-secret"}
SESSION = "/api/v1/session"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A running voipcore on HTTPS too, with users alice/alice-secret and bob/bob-secret."""
    proc = ServerProcess(tmp_path, https=True).start()
    yield proc
    proc.stop()


def https(server: ServerProcess) -> tuple[str, aiohttp.ClientSession]:
    """The HTTPS base URL and a client trusting only the server's self-signed certificate."""
    context = ssl.create_default_context(cafile=server.workdir / CERT_FILE)
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=context),
        cookie_jar=aiohttp.CookieJar(unsafe=True),  # cookies from an IP address
    )
    return f"https://127.0.0.1:{server.https_port}", session


async def sign_in(
    client: aiohttp.ClientSession, base: str, body: Any = ALICE
) -> tuple[int, dict[str, Any], aiohttp.ClientResponse]:
    async with client.post(base + SESSION, json=body) as response:
        return response.status, await response.json(), response


def test_sign_in_session_and_sign_out(server: ServerProcess) -> None:
    async def scenario() -> None:
        base, client = https(server)
        async with client:
            status, profile, response = await sign_in(client, base)
            assert status == 200
            assert profile == {
                "username": "alice",
                "display_name": None,
                "extension": "201",
                "role": "rep",
                "ice_servers": [],
            }
            cookie = SimpleCookie(response.headers["Set-Cookie"])["voipcore_session"]
            assert cookie["httponly"] and cookie["secure"]
            assert cookie["samesite"] == "Strict" and cookie["path"] == "/"
            assert int(cookie["max-age"]) == 12 * 3600
            async with client.get(base + SESSION) as response:
                assert response.status == 200 and await response.json() == profile
            async with client.delete(base + SESSION) as response:
                assert response.status == 204
                cleared = SimpleCookie(response.headers["Set-Cookie"])["voipcore_session"]
                assert cleared.value == "" and cleared["max-age"] == "0"
            async with client.get(base + SESSION) as response:
                assert response.status == 200
                assert await response.json() == {"username": None}

    asyncio.run(scenario())


def test_a_session_outlives_a_restart(server: ServerProcess) -> None:
    async def signed_in(token: str | None = None) -> tuple[str, int]:
        base, client = https(server)
        async with client:
            if token is None:
                _, _, response = await sign_in(client, base)
                token = SimpleCookie(response.headers["Set-Cookie"])["voipcore_session"].value
            headers = {"Cookie": f"voipcore_session={token}"}
            async with client.get(base + SESSION, headers=headers) as response:
                return token, response.status

    token, status = asyncio.run(signed_in())
    assert status == 200
    server.restart()
    assert asyncio.run(signed_in(token)) == (token, 200)


def test_wrong_passwords_get_401_then_429_with_retry_after(server: ServerProcess) -> None:
    async def scenario() -> None:
        base, client = https(server)
        async with client:
            wrong = {**ALICE, "password": "guess"}
            for _ in range(3):
                status, body, _ = await sign_in(client, base, wrong)
                assert (status, body) == (401, {"error": "Wrong username or password."})
            status, _, response = await sign_in(client, base, ALICE)
            assert status == 429 and response.headers["Retry-After"] == "1"
            # The address is locked too, whatever the name.
            status, _, _ = await sign_in(client, base, {"username": "bob", "password": "x"})
            assert status == 429
            await asyncio.sleep(1.1)
            status, _, _ = await sign_in(client, base, ALICE)
            assert status == 200

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"username": "alice"}, "password: Field required"),
        ({"username": 7, "password": "x"}, "username: Input should be a valid string"),
        (["alice"], "The body must be a JSON object."),
    ],
)
def test_malformed_sign_in_is_400_naming_the_field(
    server: ServerProcess, body: Any, error: str
) -> None:
    async def scenario() -> tuple[int, dict[str, Any]]:
        base, client = https(server)
        async with client:
            status, answer, _ = await sign_in(client, base, body)
            return status, answer

    status, answer = asyncio.run(scenario())
    assert status == 400 and answer["error"].startswith(error)


def test_dialer_page_is_served_on_both_listeners_with_a_self_only_policy(
    server: ServerProcess,
) -> None:
    async def scenario() -> None:
        base, client = https(server)
        async with client:
            for url in (base, f"http://127.0.0.1:{server.http_port}"):
                async with client.get(url + "/") as response:
                    assert response.status == 200
                    assert response.content_type == "text/html"
                    assert "<html" in (await response.text()).lower()
                    policy = response.headers["Content-Security-Policy"]
                    assert "script-src 'self'" in policy
                    assert response.headers["X-Content-Type-Options"] == "nosniff"
                async with client.get(url + SESSION) as response:
                    assert await response.json() == {"username": None}

    asyncio.run(scenario())
