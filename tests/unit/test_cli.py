"""The voipcore command: check-config, users, calls and people."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from voipcore.cli import main, seed_users
from voipcore.config import load_config
from voipcore.dialer.people import PeopleBook
from voipcore.sip.digest import compute_ha1
from voipcore.store.calls import CallLog, CallRecord
from voipcore.store.db import open_engine
from voipcore.store.users import Store


def open_store(config_file: Path) -> Store:
    return Store(open_engine(f"sqlite:///{config_file.parent / 'db'}"))


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "voipcore.toml"
    path.write_text(
        f"""[sip]
listen = ["udp:127.0.0.1:0"]
domain = "example.com"
[http]
listen = "127.0.0.1:0"
[store]
url = "sqlite:///{tmp_path / "db"}"
[[users]]
username = "1000"
extension = "1000"
[[users]]
username = "carol"
password = "carol-pw"
role = "admin"
"""
    )
    return path


def test_check_config_ok(config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(config_file)]) == 0
    assert "OK (domain example.com" in capsys.readouterr().out


def test_check_config_bad_exits_2_naming_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[sip]\nlisten = ["udp:1.2.3.4:5060"]\ndomain = "x"\n[http]\nlisten = "x"\n')
    with pytest.raises(SystemExit) as info:
        main(["check-config", str(bad)])
    assert info.value.code == 2
    assert "http.listen: expected HOST:PORT" in capsys.readouterr().err


def test_users_add_list_remove(config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--config", str(config_file)]
    assert (
        main(["users", "add", "201", "--password", "pw-201", "--display-name", "Ann", *args]) == 0
    )
    assert main(["users", "list", *args]) == 0
    out = capsys.readouterr().out
    assert "201" in out and "Ann" in out
    user = open_store(config_file).get_user("201")
    assert user is not None and (user.extension, user.role) == ("201", "rep")
    assert user.ha1_md5 == compute_ha1("201", "example.com", "pw-201")
    assert main(["users", "remove", "201", *args]) == 0
    assert main(["users", "remove", "201", *args]) == 1
    assert "no user '201'" in capsys.readouterr().err


def test_users_add_generates_password_without_terminal(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["users", "add", "dave", "--config", str(config_file)]) == 0
    assert "generated password for dave: " in capsys.readouterr().out


def test_seed_generates_demo_password_once_and_applies_config_passwords(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = load_config(config_file)
    store = Store(open_engine(config.store.url))
    seed_users(config, store)
    first = capsys.readouterr().err
    assert "created user 1000 with password " in first
    demo = store.get_user("1000")
    seed_users(config, store)
    assert "created user" not in capsys.readouterr().err
    assert store.get_user("1000") == demo
    carol = store.get_user("carol")
    assert carol is not None and (carol.role, demo and demo.role) == ("admin", "rep")
    assert carol.ha1_sha256 == compute_ha1("carol", "example.com", "carol-pw", "SHA-256")


def test_calls_list_prints_table_and_json(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = CallLog(open_store(config_file).engine)
    log.upsert(
        CallRecord(
            call_id="c1",
            direction="outbound",
            caller="1000",
            callee_dialled="(404) 555-1234",
            callee_e164="+14045551234",
            user="1000",
            started_at=1_700_000_000.0,
            answered_at=1_700_000_005.0,
            ended_at=1_700_000_065.0,
            hangup_cause="normal",
            sip_status=200,
        )
    )
    log.engine.dispose()
    assert main(["calls", "list", "--config", str(config_file)]) == 0
    assert "+14045551234" in capsys.readouterr().out
    assert main(["calls", "list", "--json", "--limit", "5", "--config", str(config_file)]) == 0
    [call] = json.loads(capsys.readouterr().out)
    assert call["call_id"] == "c1" and call["duration"] == 60.0


def test_users_add_caller_id_is_normalised_or_refused(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--config", str(config_file)]
    assert (
        main(
            [
                "users",
                "add",
                "dan",
                "--password",
                "pw-dan",
                "--caller-id",
                "+1 (404) 555-0199",
                *args,
            ]
        )
        == 0
    )
    assert main(["users", "list", *args]) == 0
    assert "+14045550199" in capsys.readouterr().out
    assert main(["users", "add", "eve", "--password", "pw-eve", "--caller-id", "555", *args]) == 2
    assert "--caller-id '555': " in capsys.readouterr().err


def test_users_add_with_a_role_and_list_shows_it(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--config", str(config_file)]
    assert main(["users", "add", "ann", "--password", "pw-ann", "--role", "admin", *args]) == 0
    assert main(["users", "add", "ben", "--password", "pw-ben", *args]) == 0
    capsys.readouterr()
    assert main(["users", "list", *args]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["username", "role", "extension"]
    assert [line.split()[:2] for line in lines[1:]] == [["ann", "admin"], ["ben", "rep"]]
    with pytest.raises(SystemExit):
        main(["users", "add", "cat", "--password", "pw-cat", "--role", "owner", *args])
    assert "invalid choice: 'owner'" in capsys.readouterr().err


PEOPLE_CSV = """Name,Company,Office,Ext,Mobile
Ann Lee,Acme,(404) 555-1234,123,
Bob Roe,Acme,555,,
Cy Dee,Beta,+1 404 555 0100 x77,,(404) 555-0101
Di Fox,,,,
"""
IMPORT = ["--name", "Name", "--account", "Company", "--number", "Office:office:Ext"]
IMPORT += ["--number", "Mobile:mobile"]
REPORT = """rows read: 4
imported:  2{note}
rejected:  2
line 3: Office: too short for a number in US
line 5: no phone number (in Office, Mobile)
"""


def people_book(config_file: Path) -> PeopleBook:
    return PeopleBook(open_store(config_file).engine, "US")


def test_people_import_reports_rejected_rows_and_stores_the_good_ones(
    config_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv_file = tmp_path / "people.csv"
    csv_file.write_text(PEOPLE_CSV)
    args = ["people", "import", str(csv_file), *IMPORT, "--config", str(config_file)]
    assert main([*args, "--dry-run"]) == 1
    assert capsys.readouterr().out == REPORT.format(note=" (dry run: nothing stored)")
    assert people_book(config_file).search()[0] == []

    assert main(args) == 1
    assert capsys.readouterr().out == REPORT.format(note="")
    ann, cy = people_book(config_file).search()[0]
    assert [(n.label, n.e164, n.extension, n.primary) for n in ann.numbers] == [
        ("office", "+14045551234", "123", True)
    ]
    assert ann.account is not None and ann.account.name == "Acme"
    assert [(n.label, n.e164, n.extension) for n in cy.numbers] == [
        ("office", "+14045550100", "77"),
        ("mobile", "+14045550101", None),
    ]


def test_people_import_from_stdin_with_every_row_good_exits_0(
    config_file: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    text = "First,Last,Phone\r\nEve,Ng,404-555-0123 ext. 9\r\n"
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(text.encode())))
    args = ["--first-name", "First", "--last-name", "Last", "--number", "Phone"]
    assert main(["people", "import", "-", *args, "--config", str(config_file)]) == 0
    assert capsys.readouterr().out == "rows read: 1\nimported:  1\nrejected:  0\n"
    [eve] = people_book(config_file).search("Eve Ng")[0]
    assert [(n.label, n.e164, n.extension) for n in eve.numbers] == [("other", "+14045550123", "9")]


def test_people_import_bad_mapping_or_file_exits_2_naming_it(
    config_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv_file = tmp_path / "people.csv"
    csv_file.write_text(PEOPLE_CSV)
    config = ["--config", str(config_file)]
    bad_number = ["--name", "Name", "--number", "Phone 2", *config]
    assert main(["people", "import", str(csv_file), *bad_number]) == 2
    assert capsys.readouterr().err == (
        "voipcore: mapping.numbers.0.column: no column 'Phone 2' in the file "
        "(columns: 'Name', 'Company', 'Office', 'Ext', 'Mobile')\n"
    )
    bad_ext = ["--name", "Name", "--number", "Mobile:mobile:Extension", *config]
    assert main(["people", "import", str(csv_file), *bad_ext]) == 2
    assert "voipcore: mapping.numbers.0.extension_column: no column 'Extension'" in (
        capsys.readouterr().err
    )
    missing = tmp_path / "missing.csv"
    assert main(["people", "import", str(missing), *bad_number]) == 2
    assert capsys.readouterr().err == f"voipcore: {missing}: No such file or directory\n"
    assert people_book(config_file).search()[0] == []


def test_people_list_shows_primary_numbers_and_searches(
    config_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv_file = tmp_path / "people.csv"
    csv_file.write_text(PEOPLE_CSV)
    config = ["--config", str(config_file)]
    assert main(["people", "import", str(csv_file), *IMPORT, *config]) == 1
    capsys.readouterr()
    assert main(["people", "list", *config]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["name", "account", "primary", "number", "numbers"]
    assert [line.split() for line in lines[1:]] == [
        ["Ann", "Lee", "Acme", "+14045551234", "x123", "1"],
        ["Cy", "Dee", "Beta", "+14045550100", "x77", "2"],
    ]
    assert main(["people", "list", "--search", "beta", *config]) == 0
    assert [line.split()[:2] for line in capsys.readouterr().out.splitlines()[1:]] == [
        ["Cy", "Dee"]
    ]
    assert main(["people", "list", "--limit", "1", *config]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == [
        lines[1],
        "(first 1 shown: raise --limit or narrow with --search)",
    ]
