"""Config loading: the embedded default is valid, and every error names its key."""

from __future__ import annotations

import ipaddress
import socket
from decimal import Decimal
from pathlib import Path

import pytest

from voipcore import config as config_module
from voipcore.config import (
    Advertised,
    ConfigError,
    ListenSpec,
    Route,
    RouteLookup,
    advertise_address,
    default_route,
    load_config,
)

ROOT = Path(__file__).resolve().parents[2]
#: Any existing file will do where the config checks only that a file is there.
PEM = ROOT / "pyproject.toml"
MINIMAL = """
[sip]
listen = ["udp:127.0.0.1:0"]
domain = "example.com"
[http]
listen = "127.0.0.1:8080"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "voipcore.toml"
    path.write_text(text)
    return path


def test_embedded_default_config_is_valid() -> None:
    config = load_config(ROOT / "config" / "voipcore.toml")
    assert config.sip.listen == [
        ListenSpec("udp", "0.0.0.0", 5060),
        ListenSpec("tcp", "0.0.0.0", 5060),
    ]
    assert config.qos.media_dscp == 46 and config.qos.sip_dscp == 24
    assert config.store.sqlite_path == "voipcore.db"
    assert [u.username for u in config.users] == ["1000"]


def test_minimal_config_gets_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL))
    assert config.media.rtp_ports == (20000, 30000)
    assert config.sip.min_expires == 60


@pytest.mark.parametrize(
    ("replace", "by", "key", "problem"),
    [
        ('"udp:127.0.0.1:0"', '"sctp:127.0.0.1:0"', "sip.listen", "expected one of udp, tcp"),
        ('"udp:127.0.0.1:0"', '"udp:127.0.0.1:70000"', "sip.listen", "port must be 0-65535"),
        ('"udp:127.0.0.1:0"', '"udp:my host:5060"', "sip.listen", "host must be an IP"),
        ('domain = "example.com"', 'domain = ""', "sip.domain", "at least 1 character"),
        ('domain = "example.com"', 'domian = "x"', "sip.domian", "unknown key"),
        ('listen = "127.0.0.1:8080"', 'listen = "8080"', "http.listen", "expected HOST:PORT"),
    ],
)
def test_bad_value_names_the_key(
    tmp_path: Path, replace: str, by: str, key: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, MINIMAL.replace(replace, by, 1)))
    assert f"{key}: " in str(info.value)
    assert problem in str(info.value)


@pytest.mark.parametrize(
    ("extra", "key", "problem"),
    [
        ("[qos]\nsip_dscp = 64\n", "qos.sip_dscp", "less than or equal to 63"),
        ("[media]\nrtp_ports = [30000, 20000]\n", "media.rtp_ports", "LOW < HIGH"),
        ("[media]\nworkers = -1\n", "media.workers", "greater than or equal to 0"),
        ('[media]\nbrowser_codecs = ["G729"]\n', "media.browser_codecs", "PCMU, PCMA, opus"),
        ('[store]\nurl = "postgres://x"\n', "store.url", "only sqlite"),
        ('[[users]]\nusername = "a b"\n', "users[0].username", "should match pattern"),
        ('[[users]]\nusername = "a"\npassword = "x"\n', "users[0].password", "at least 4"),
        (
            '[[users]]\nusername = "a"\ncaller_id = "4045550100"\n',
            "users[0].caller_id",
            "is not an E.164 number: needs a country code",
        ),
        ('[[ring_groups]]\nname = "sales"\nmembers = []\n', "ring_groups[0].members", "at least 1"),
        # MINIMAL ends in [http]: these keys are in it.
        ('tls_listen = "8443"\n', "http.tls_listen", "expected HOST:PORT"),
        (f'tls_cert = "{PEM}"\n', "http", "tls_key is missing"),
        (f'tls_key = "{PEM}"\n', "http", "tls_cert is missing"),
        (f'tls_cert = "none.crt"\ntls_key = "{PEM}"\n', "http.tls_cert", "no such file"),
        ("session_hours = 0\n", "http.session_hours", "greater than 0"),
        ('[[http.ice_servers]]\nurls = ["http://x"]\n', "http.ice_servers[0].urls", "stun:"),
        ("[[http.ice_servers]]\nurls = []\n", "http.ice_servers[0].urls", "at least 1"),
        (
            '[[http.ice_servers]]\nurls = ["turn:t.example:3478"]\nusername = "u"\n',
            "http.ice_servers[0]",
            "needs username and credential",
        ),
    ],
)
def test_bad_section_value_names_the_key(
    tmp_path: Path, extra: str, key: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, MINIMAL + extra))
    assert f"{key}: " in str(info.value)
    assert problem in str(info.value)


def test_expires_bounds_must_be_ordered(tmp_path: Path) -> None:
    text = MINIMAL.replace('domain = "example.com"', 'domain = "e.com"\nmin_expires = 7200')
    with pytest.raises(ConfigError, match="sip: .*min_expires <= default_expires"):
        load_config(write(tmp_path, text))


def test_missing_section_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="http: Field required"):
        load_config(write(tmp_path, MINIMAL.split("[http]")[0]))


def test_duplicate_users_are_refused(tmp_path: Path) -> None:
    users = '[[users]]\nusername = "a"\n[[users]]\nusername = "a"\n'
    with pytest.raises(ConfigError, match="duplicate username 'a'"):
        load_config(write(tmp_path, MINIMAL + users))


def test_toml_syntax_error_says_where(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"not valid TOML: .*line 2"):
        load_config(write(tmp_path, "[sip]\nlisten = = 3\n"))


def test_unreadable_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")


def test_digest_algorithms_default_to_md5_and_are_checked(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, MINIMAL)).sip.digest_algorithms == ["MD5"]
    bad = MINIMAL.replace('domain = "example.com"', 'domain = "e"\ndigest_algorithms = ["SHA-1"]')
    with pytest.raises(ConfigError, match='sip.digest_algorithms: must list "MD5"'):
        load_config(write(tmp_path, bad))


@pytest.mark.parametrize(
    ("groups", "problem"),
    [
        ('name = "a"\nmembers = ["a"]', "ring group name 'a' is already a user or group"),
        ('name = "g"\nextension = "201"\nmembers = ["a"]', "extension 201 is taken"),
    ],
)
def test_ring_groups_do_not_shadow_users(tmp_path: Path, groups: str, problem: str) -> None:
    users = '[[users]]\nusername = "a"\nextension = "201"\n'
    with pytest.raises(ConfigError, match=problem):
        load_config(write(tmp_path, MINIMAL + users + "[[ring_groups]]\n" + groups + "\n"))


def test_session_timer_bounds(tmp_path: Path) -> None:
    sip = 'domain = "e.com"\nsession_expires = 120\nmin_se = 300'
    with pytest.raises(ConfigError, match="sip: .*min_se <= session_expires"):
        load_config(write(tmp_path, MINIMAL.replace('domain = "example.com"', sip)))
    with pytest.raises(ConfigError, match="sip.min_se: .*greater than or equal to 90"):
        load_config(
            write(tmp_path, MINIMAL.replace('domain = "example.com"', 'domain = "e"\nmin_se = 30'))
        )


# -- [media] advertise: the address phones are told (no test looks at this host's routes) --


def routes(table: dict[socket.AddressFamily, Route | None]) -> RouteLookup:
    return lambda family: table[family]


ETH0 = routes(
    {socket.AF_INET: Route("192.168.1.20", "eth0"), socket.AF_INET6: Route("2001:db8::20", "eth0")}
)
NO_ROUTE = routes({socket.AF_INET: None, socket.AF_INET6: None})


@pytest.mark.parametrize(
    ("host", "advertise", "route", "expected"),
    [
        (
            "0.0.0.0",
            "203.0.113.5",
            ETH0,
            Advertised("203.0.113.5", "from [media] advertise", False),
        ),
        ("10.0.0.5", None, ETH0, Advertised("10.0.0.5", "the host [media] listens on", False)),
        (
            "0.0.0.0",
            None,
            ETH0,
            Advertised("192.168.1.20", "the address of the default-route interface eth0", False),
        ),
        (
            "::",
            None,
            ETH0,
            Advertised("2001:db8::20", "the address of the default-route interface eth0", False),
        ),
        (
            "0.0.0.0",
            None,
            routes({socket.AF_INET: Route("192.168.1.20", None)}),
            Advertised("192.168.1.20", "the address of the default-route interface", False),
        ),
        ("0.0.0.0", None, NO_ROUTE, Advertised("127.0.0.1", "no default route: loopback", True)),
        ("::", None, NO_ROUTE, Advertised("::1", "no default route: loopback", True)),
        ("127.0.0.1", None, ETH0, Advertised("127.0.0.1", "the host [media] listens on", False)),
        ("10.0.0.5", "127.0.0.1", ETH0, Advertised("127.0.0.1", "from [media] advertise", True)),
    ],
)
def test_advertised_address(
    host: str, advertise: str | None, route: RouteLookup, expected: Advertised
) -> None:
    assert advertise_address(host, advertise, route) == expected


def test_advertised_address_is_looked_up_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[socket.AddressFamily] = []

    def lookup(family: socket.AddressFamily) -> Route | None:
        asked.append(family)
        return Route("192.168.1.20", "eth0")

    monkeypatch.setattr(config_module, "default_route", lookup)
    media = load_config(write(tmp_path, MINIMAL)).media
    assert media.host == "0.0.0.0"
    assert [media.advertised, media.advertised] == ["192.168.1.20", "192.168.1.20"]
    assert asked == [socket.AF_INET]


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6])
def test_default_route_is_none_or_an_address_of_its_family(family: socket.AddressFamily) -> None:
    found = default_route(family)
    if found is not None:
        address = ipaddress.ip_address(found.address)
        assert address.version == (6 if family == socket.AF_INET6 else 4)
        assert not address.is_unspecified


def test_http_defaults_have_no_https_and_twelve_hour_sessions(tmp_path: Path) -> None:
    http = load_config(write(tmp_path, MINIMAL)).http
    assert (http.tls_listen, http.tls_cert, http.tls_key) == (None, None, None)
    assert http.session_hours == 12 and http.ice_servers == []
    assert load_config(ROOT / "config" / "voipcore.toml").http.tls_listen == "0.0.0.0:8443"


def test_data_dir_is_the_store_directory(tmp_path: Path) -> None:
    store = f'[store]\nurl = "sqlite:///{tmp_path}/state/voipcore.db"\n'
    assert load_config(write(tmp_path, MINIMAL + store)).store.data_dir == tmp_path / "state"
    assert load_config(write(tmp_path, MINIMAL)).store.data_dir == Path()


def test_ice_servers_are_read(tmp_path: Path) -> None:
    text = MINIMAL + (
        '[[http.ice_servers]]\nurls = ["stun:s.example:3478"]\n'
        '[[http.ice_servers]]\nurls = ["turns:t.example"]\nusername = "u"\ncredential = "c"\n'
    )
    servers = load_config(write(tmp_path, text)).http.ice_servers
    assert [s.model_dump(exclude_none=True) for s in servers] == [
        {"urls": ["stun:s.example:3478"]},
        {"urls": ["turns:t.example"], "username": "u", "credential": "c"},
    ]


def test_recording_defaults_let_the_rep_decide_with_a_beep_for_90_days(tmp_path: Path) -> None:
    store = f'[store]\nurl = "sqlite:///{tmp_path}/state/voipcore.db"\n'
    config = load_config(write(tmp_path, MINIMAL + store))
    recording = config.recording
    assert (recording.policy, recording.announce, recording.retention_days) == ("rep", "beep", 90)
    assert recording.path(config.store) == tmp_path / "state" / "recordings"
    text = MINIMAL + f'[recording]\npolicy = "always"\ndirectory = "{tmp_path}/rec"\n'
    config = load_config(write(tmp_path, text))
    assert config.recording.policy == "always"
    assert config.recording.path(config.store) == tmp_path / "rec"
    assert load_config(ROOT / "config" / "voipcore.toml").recording == recording


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ('policy = "sometimes"', "recording.policy"),
        ('announce = "voice"', "recording.announce"),
        ("retention_days = 0", "recording.retention_days"),
        ('retention = "90"', "recording.retention"),
    ],
)
def test_bad_recording_settings_name_the_key(tmp_path: Path, line: str, key: str) -> None:
    with pytest.raises(ConfigError, match=rf"{key}: "):
        load_config(write(tmp_path, MINIMAL + f"[recording]\n{line}\n"))


TRUNK = """
[trunks.twilio]
domain = "acme.pstn.twilio.com"
username = "voipcore"
password = "Sup3rSecretPassw0rd"
"""


def test_pass_through_timeout_and_trunk_rate_are_read_and_checked(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL + TRUNK + "rate_per_minute = 0.013\n"))
    assert config.sip.passthrough_timeout == 15.0
    assert config.trunks.twilio is not None
    assert config.trunks.twilio.rate_per_minute == Decimal("0.013")
    unpriced = load_config(write(tmp_path, MINIMAL + TRUNK)).trunks.twilio
    assert unpriced is not None and unpriced.rate_per_minute is None
    with pytest.raises(ConfigError, match=r"trunks\.twilio\.rate_per_minute: .*greater than 0"):
        load_config(write(tmp_path, MINIMAL + TRUNK + "rate_per_minute = -0.01\n"))
    shorter = MINIMAL.replace("[http]", "passthrough_timeout = 0\n[http]")
    with pytest.raises(ConfigError, match=r"sip\.passthrough_timeout: .*greater than 0"):
        load_config(write(tmp_path, shorter))
