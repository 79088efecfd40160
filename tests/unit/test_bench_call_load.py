"""The call benchmark's media check and process discovery."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from benchmarks.call_load import children, media_failures


def test_media_failures_counts_missing_and_short_calls(tmp_path: Path) -> None:
    db = tmp_path / "calls.db"
    rows = [
        ("ok", 500, 499),
        ("ok", 480, 500),
        ("short", 500, 500),
        ("short", 120, 500),  # this leg's caller stopped sending after 2.4 s
        ("one-way", 500, 0),
        ("one-way", 0, 500),
        ("one-leg", 500, 500),
    ]
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE call_legs (call_id TEXT, packets_in INT, packets_out INT)")
        conn.executemany("INSERT INTO call_legs VALUES (?, ?, ?)", rows)
    # Five calls placed, held 10 s: 450 packets each way per leg needed; one never logged.
    assert media_failures(db, 5, 10) == 4


def test_children_finds_the_processes_a_process_started() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert child.pid in children(os.getpid())
        assert children(child.pid) == []
    finally:
        child.kill()
        child.wait()
