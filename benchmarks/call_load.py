"""Calls per second one signalling process sustains (issue 4).

    python -m benchmarks.call_load [--duration 60] [--hold 10] [--rates 5,10,20,40]
                                   [--loops uvloop,asyncio] [--workers N] [--no-rtp]

SIPp places calls (INVITE, 407 digest, 200, ACK, RTP both ways for --hold
seconds, BYE) through voipcore to a second SIPp registered as the callee;
media is anchored in voipcore's in-process engine, so every call also costs
two RTP streams of 50 packets/s each way (--no-rtp: the media is still anchored,
ports and all, but SIPp sends no RTP, so the two SIPp processes and the engine
leave the cores to signalling).  With --workers N the media runs in
N worker processes instead.  With RTP, each call's media is checked in the
call log the server writes when the call ends: every leg must have received
from its SIPp and sent to it at least 90 % of the 50 packets/s of the hold
time (SIPp plays but does not count what it receives; the engine's counts of
what it relayed stand for it).  A rate passes when every call of a --duration
run succeeds, signalling and media.  Concurrent calls = rate x hold.  The
same search runs on the stdlib asyncio loop as the baseline.  CPU is read
from /proc for the signalling process ("sig") and for each media worker
process it started ("workers", one figure each); "ms/call" is the signalling
CPU divided by the calls placed, and "CPS/core" its inverse (the rate one
fully busy core would carry at that cost).
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile
from pathlib import Path

import numpy as np

from media import g711
from media.tones import sine
from tests.harness import ServerProcess, TestUser, cpu_seconds, free_udp_port
from tests.sipclient import SipClient
from tests.sipp import SippError, run_sipp, scenario, start_uas, write_users_csv

DOMAIN = "test.local"
#: G.711 at 20 ms per packet (RFC 3551 §4.5.14).
PACKETS_PER_SECOND = 50
#: Share of the hold time's packets a leg must receive and send for its media to count.
MEDIA_SHARE = 0.9


def children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (the media workers of a server), from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    parent = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (FileNotFoundError, ProcessLookupError, IndexError):
                continue
            if parent == pid:
                found.append(int(entry))
    return sorted(found)


def media_failures(db: Path, calls: int, hold: int) -> int:
    """Calls the call log lacks, or with a leg that relayed under :data:`MEDIA_SHARE`."""
    least = MEDIA_SHARE * PACKETS_PER_SECOND * hold
    with sqlite3.connect(db) as conn:
        flowed = conn.execute(
            "SELECT COUNT(*) FROM (SELECT call_id FROM call_legs GROUP BY call_id"
            " HAVING COUNT(*) = 2 AND MIN(packets_in) >= ? AND MIN(packets_out) >= ?)",
            (least, least),
        ).fetchone()[0]
    return calls - int(flowed)


def with_rtp(name: str, after: str, workdir: Path, audio: Path) -> Path:
    """A copy of a shipped scenario that streams ``audio`` once the call is up."""
    text = scenario(name).read_text()
    stream = f'<nop><action><exec rtp_stream="{audio},-1,0"/></action></nop>'
    path = workdir / name
    path.write_text(text.replace(after, after + "\n  " + stream, 1))
    return path


def probe(
    loop: str, rate: int, duration: int, hold: int, workers: int, rtp: bool, workdir: Path
) -> str:
    workdir.mkdir(parents=True, exist_ok=True)
    audio = workdir / "tone.ulaw"
    audio.write_bytes(g711.ulaw_encode(sine(1000, 1.0, 0.3).astype(np.int16)).tobytes())
    uac, uas = scenario("uac_call.xml"), scenario("uas_call.xml")
    if rtp:
        ack = "CSeq: 2 ACK\n      Content-Length: 0\n\n    ]]>\n  </send>"
        uac = with_rtp("uac_call.xml", ack, workdir, audio)
        uas = with_rtp("uas_call.xml", '<recv request="ACK" crlf="true" />', workdir, audio)
    calls = rate * duration
    server = ServerProcess(
        workdir / "server",
        users=[TestUser("alice", "alice-secret", "201"), TestUser("bob", "bob-secret", "202")],
        extra_sip=f"max_calls_per_user = {calls + 10}",
        # Room for thousands of anchored calls: two RTP/RTCP port pairs each.
        extra_config=f"[media]\nworkers = {workers}\nrtp_ports = [10000, 60000]\n",
        event_loop=loop,
    ).start()
    uas_port = free_udp_port()
    uas_proc = start_uas(
        uas,
        port=uas_port,
        media_port=free_udp_port(),
        workdir=workdir,
        calls=calls,
        timeout=duration + hold + 60,
    )
    try:
        bob = SipClient("127.0.0.1", server.udp_port)
        contact = f"<sip:bob@127.0.0.1:{uas_port}>"
        assert bob.register("bob", "bob-secret", DOMAIN, contacts=(contact,)).status == 200
        users = write_users_csv(workdir / "users.csv", [("alice", "alice-secret")])
        pids = [server.pid, *children(server.pid)]
        before = [cpu_seconds(pid) for pid in pids]
        try:
            result = run_sipp(
                uac,
                "127.0.0.1",
                server.udp_port,
                workdir=workdir,
                users_csv=users,
                rate=rate,
                calls=calls,
                limit=rate * (hold + 5) + 10,
                keys={"domain": DOMAIN, "callee": "202"},
                auth_uri=f"202@{DOMAIN}",
                timeout=duration + hold + 60,
                extra_args=["-mp", str(free_udp_port()), "-d", str(hold * 1000)],
            )
        except SippError as exc:
            return f"{loop:<8} {rate:>5} sipp failed: {exc}"
        used = [cpu_seconds(pid) - cpu for pid, cpu in zip(pids, before, strict=True)]
        cpu = [f"{100 * u / max(result.elapsed, 1e-9):.1f}%" for u in used]
        per_call = used[0] / calls
    finally:
        uas_proc.kill()
        server.stop()
    # Read once the server has stopped: it writes a call's media counts as the call ends.
    no_media = media_failures(server.workdir / "voipcore.db", calls, hold) if rtp else 0
    ok = result.failed == 0 and result.successful == calls and not no_media
    worker_cpu = "+".join(cpu[1:]) or "-"
    return (
        f"{loop:<8} {rate:>5} {result.successful:>6}/{calls:<6} {result.failed:>6} "
        f"{no_media if rtp else '-':>8} {rate * hold:>10} {cpu[0]:>7} {worker_cpu:>9} "
        f"{1000 * per_call:>8.2f} {1 / per_call:>8.0f}  {'pass' if ok else 'FAIL'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=60)
    parser.add_argument("--hold", type=int, default=10)
    parser.add_argument("--rates", default="5,10,20,40")
    parser.add_argument("--loops", default="uvloop,asyncio")
    parser.add_argument("--workers", type=int, default=0, help="media worker processes")
    parser.add_argument(
        "--no-rtp", dest="rtp", action="store_false", help="anchor media but send no RTP"
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="voipcore-call-load-"))
    media = f"{args.workers} media workers" if args.workers else "media in-process"
    print(
        f"call_load: {args.duration} s per rate, calls held {args.hold} s "
        f"{'with RTP both ways' if args.rtp else 'without RTP'}, "
        f"{media}; {os.cpu_count()} cores shared by the server and two SIPp processes"
    )
    print(
        f"{'loop':<8} {'CPS':>5} {'calls ok':>13} {'failed':>6} {'no media':>8} "
        f"{'concurrent':>10} {'sig':>7} {'workers':>9} {'ms/call':>8} {'CPS/core':>8}"
    )
    for loop in args.loops.split(","):
        for rate in (int(r) for r in args.rates.split(",")):
            line = probe(
                loop,
                rate,
                args.duration,
                args.hold,
                args.workers,
                args.rtp,
                work / f"{loop}-{rate}",
            )
            print(line, flush=True)
            if "FAIL" in line or "failed:" in line:
                break
    print(f"files: {work}", file=sys.stderr)


if __name__ == "__main__":
    main()
