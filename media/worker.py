"""A media worker process: one engine served over the control protocol.

Started by :class:`media.workers.WorkerPool` as ``python -m media.worker``;
prints ``ready`` on stdout once it accepts control connections.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

import uvloop

from media.control import ControlServer
from media.engine import MediaEngine


async def serve(args: argparse.Namespace) -> None:
    engine = MediaEngine(
        rtp_ports=(args.ports[0], args.ports[1]),
        host=args.host,
        advertise=args.advertise,
        dscp=args.dscp,
        media_timeout=args.media_timeout,
    )
    await engine.start()
    server = ControlServer(engine)
    await server.listen_unix(args.socket)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    await stop.wait()
    server.close()
    await engine.stop()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m media.worker")
    parser.add_argument("--socket", required=True, help="Unix socket for control")
    parser.add_argument("--ports", type=int, nargs=2, required=True, metavar=("LOW", "HIGH"))
    parser.add_argument("--host", default="127.0.0.1", help="address RTP sockets bind to")
    parser.add_argument("--advertise", default=None, help="address put in SDP")
    parser.add_argument("--dscp", type=int, default=46)
    parser.add_argument("--media-timeout", type=float, default=60.0)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args()
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    uvloop.run(serve(args))


if __name__ == "__main__":
    main()
