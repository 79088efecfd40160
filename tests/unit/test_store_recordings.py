"""The recordings index (voipcore.store.recordings) and its retention sweep, driven by `now`."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy.exc import IntegrityError

from voipcore.store.calls import CallLog
from voipcore.store.db import open_engine
from voipcore.store.recordings import DAY, Recording, RecordingStore

from .test_calls_store import T0, started


@pytest.fixture
def store(tmp_path: Path) -> RecordingStore:
    engine = open_engine(f"sqlite:///{tmp_path / 'voipcore.db'}")
    CallLog(engine).upsert_many([started("c1"), started("c2")])
    return RecordingStore(engine)


def recording(tmp_path: Path, ident: str, call_id: str = "c1", at: float = T0) -> Recording:
    path = tmp_path / f"{ident}.wav"
    path.write_bytes(b"RIFF")
    return Recording(ident, call_id, str(path), at, at + 60, 60.0, 4)


def test_a_recording_round_trips_and_is_listed_with_its_call(
    store: RecordingStore, tmp_path: Path
) -> None:
    first, second = recording(tmp_path, "r1"), recording(tmp_path, "r2", at=T0 + 120)
    store.add(second)
    store.add(first)
    store.add(recording(tmp_path, "r3", "c2"))
    assert store.get("r1") == first
    assert store.get("nope") is None
    assert store.of_call("c1") == [first, second]
    assert store.of_call("c9") == []


def test_a_recording_needs_its_call_in_the_log(store: RecordingStore, tmp_path: Path) -> None:
    with pytest.raises(IntegrityError):
        store.add(recording(tmp_path, "r1", "no-such-call"))


def test_the_sweep_deletes_files_past_the_retention_and_marks_them_expired(
    store: RecordingStore, tmp_path: Path
) -> None:
    old, recent = recording(tmp_path, "old"), recording(tmp_path, "recent", at=T0 + 10 * DAY)
    store.add(old)
    store.add(recent)
    now = T0 + 90 * DAY + 1

    assert store.sweep(now, retention_days=90) == [old]

    assert not Path(old.path).exists() and Path(recent.path).exists()
    assert store.get("old") == replace(old, expired_at=now)
    assert store.get("recent") == recent
    assert store.sweep(now + DAY, retention_days=90) == []  # once only


def test_a_file_already_gone_is_marked_expired_all_the_same(
    store: RecordingStore, tmp_path: Path
) -> None:
    gone = recording(tmp_path, "gone")
    Path(gone.path).unlink()
    store.add(gone)
    assert store.sweep(T0 + 2 * DAY, retention_days=1) == [gone]
    expired = store.get("gone")
    assert expired is not None and expired.expired_at == T0 + 2 * DAY
