"""A media worker process: one engine served over the control protocol.

Started by :class:`media.workers.WorkerPool` as ``python -m media.worker``, or
by hand on another host; prints ``ready ADDRESS`` on stdout once it accepts
control requests, with the port it bound when asked for port 0.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal

import uvloop

from media.control import ControlAddress, ControlServer
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
    address = await server.listen(args.control)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # Modules, the engine and the sockets live as long as the process: keep the
    # cyclic collector from walking them (40 000 objects, 8 ms) on every full
    # collection, a pause the 20 ms tick would feel.
    gc.freeze()
    print(f"ready {address}", flush=True)
    await stop.wait()
    server.close()
    await engine.stop()


def _address(text: str) -> ControlAddress:
    try:
        return ControlAddress.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m media.worker")
    parser.add_argument(
        "--control",
        type=_address,
        required=True,
        metavar="ADDRESS",
        help="where to serve control requests: unix:PATH, tcp:HOST:PORT or udp:HOST:PORT",
    )
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
