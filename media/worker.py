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
from dataclasses import dataclass

import uvloop

from media.control import ControlAddress, ControlServer
from media.engine import MediaEngine


@dataclass
class CollectorPolicy:
    """Keeps the cyclic garbage collector's pauses out of the 20 ms tick and the relay.

    A full collection walks every live container object: ~80 per call, 10 ms at
    1,000 calls, a stall every relayed packet then queues behind.  Instead, every
    :attr:`young_every` seconds the objects made since the previous step are collected
    (a short walk: the rest are frozen) and the survivors frozen, which takes them
    out of all later collections (``gc.freeze``).  Frozen objects are still freed
    by reference counting; an ended call leaves no cycle (``Stream.close``), so it
    is freed at once.  Cycles from anywhere else that become garbage once frozen
    wait for the full collection every :attr:`full_every`, which bounds them.
    Sans-I/O: :meth:`step` is given the time.
    """

    young_every: float = 1.0
    full_every: float = 3600.0
    _next_young: float = 0.0
    _next_full: float | None = None

    def step(self, now: float) -> str | None:
        """Collect what is due at ``now``: ``"young"``, ``"full"`` or None."""
        if self._next_full is None:
            self._next_full = now + self.full_every
        full = now >= self._next_full
        if not full and now < self._next_young:
            return None
        self._next_young = now + self.young_every
        if full:
            self._next_full = now + self.full_every
            gc.unfreeze()
        gc.collect()
        gc.freeze()
        return "full" if full else "young"


async def _collect(policy: CollectorPolicy) -> None:
    loop = asyncio.get_running_loop()
    while True:
        policy.step(loop.time())
        await asyncio.sleep(policy.young_every)


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
    # Modules, the engine and the sockets live as long as the process, the calls
    # for minutes: see CollectorPolicy.
    collector = asyncio.create_task(_collect(CollectorPolicy()))
    print(f"ready {address}", flush=True)
    await stop.wait()
    collector.cancel()
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
