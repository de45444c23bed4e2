"""A fault-injecting TCP proxy on loopback, for delivery tests.

It forwards bytes between clients and one upstream port and cuts connections on purpose:

* at random moments (exponentially distributed, ``mean_life`` seconds per connection), and
* right after forwarding a chunk from the server (``cut_after_response`` probability per
  chunk), which is when a response the server considers written is lost on its way: the cut is
  an abortive close (RST), so bytes still unread by the client are discarded by its kernel.

Every decision comes from one seeded :class:`random.Random`, so a failure can be replayed.
``cuts`` counts the connections cut on purpose.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct


class FaultProxy:
    """Forward ``127.0.0.1:<port>`` to ``127.0.0.1:<upstream>``, cutting as configured."""

    def __init__(
        self,
        upstream: int,
        *,
        seed: int = 1,
        mean_life: float | None = 1.0,
        cut_after_response: float = 0.0,
    ) -> None:
        self.upstream = upstream
        self.random = random.Random(seed)
        self.mean_life = mean_life
        self.cut_after_response = cut_after_response
        self.cuts = 0
        self.connections = 0
        self.enabled = True
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    async def __aenter__(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _handle(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        try:
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
            except OSError:
                _abort(client_writer)
                return
            cut = asyncio.Event()
            life = self.random.expovariate(1 / self.mean_life) if self.mean_life else None
            pumps = [
                asyncio.create_task(self._pump(client_reader, up_writer, cut, downstream=False)),
                asyncio.create_task(self._pump(up_reader, client_writer, cut, downstream=True)),
            ]
            waiter = asyncio.create_task(cut.wait())
            try:
                while True:
                    done, _ = await asyncio.wait(
                        [*pumps, waiter], timeout=life, return_when=asyncio.FIRST_COMPLETED
                    )
                    if done or self.enabled:
                        break
                    # Its life ran out while cutting was off: give it another one.
                    life = self.random.expovariate(1 / self.mean_life) if self.mean_life else None
                if not done or cut.is_set():  # the connection's life ran out, or a cut
                    self.cuts += 1
                    _abort(client_writer)
                    _abort(up_writer)
                else:  # one side closed normally: let the other finish its half
                    await asyncio.wait(pumps, timeout=2)
            finally:
                for t in (*pumps, waiter):
                    t.cancel()
                # Close before awaiting: the proxy's shutdown may cancel this task inside the
                # gather, and a writer left open then warns about an unclosed transport.
                for writer in (client_writer, up_writer):
                    with contextlib.suppress(Exception):
                        writer.close()
                await asyncio.gather(*pumps, waiter, return_exceptions=True)
        finally:
            self._tasks.discard(task)
            with contextlib.suppress(Exception):
                client_writer.close()

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        cut: asyncio.Event,
        *,
        downstream: bool,
    ) -> None:
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    with contextlib.suppress(Exception):
                        writer.write_eof()
                    return
                writer.write(data)
                await writer.drain()
                if (
                    downstream
                    and self.enabled
                    and self.cut_after_response
                    and self.random.random() < self.cut_after_response
                ):
                    cut.set()
                    return
        except (ConnectionError, OSError):
            cut.set()


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close with RST: unread data on the other side is discarded."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport = writer.transport
    transport.abort()


def main() -> None:
    """``python -m tests.faultproxy --upstream P --port Q [--seed S] [--mean-life T]``.

    Starts with cutting off. SIGUSR1 turns cutting on, SIGUSR2 off; SIGTERM ends it and prints
    ``{"cuts": N, "connections": M}`` on stdout.
    """
    import argparse
    import json
    import signal

    parser = argparse.ArgumentParser()
    parser.add_argument("--upstream", type=int, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--mean-life", type=float, default=1.0)
    parser.add_argument("--cut-after-response", type=float, default=0.0)
    args = parser.parse_args()

    async def run() -> None:
        proxy = FaultProxy(
            args.upstream,
            seed=args.seed,
            mean_life=args.mean_life,
            cut_after_response=args.cut_after_response,
        )
        proxy.enabled = False
        server = await asyncio.start_server(proxy._handle, "127.0.0.1", args.port)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGUSR1, lambda: setattr(proxy, "enabled", True))
        loop.add_signal_handler(signal.SIGUSR2, lambda: setattr(proxy, "enabled", False))
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        server.close()
        for task in list(proxy._tasks):
            task.cancel()
        await asyncio.gather(*proxy._tasks, return_exceptions=True)
        print(json.dumps({"cuts": proxy.cuts, "connections": proxy.connections}), flush=True)

    asyncio.run(run())


if __name__ == "__main__":
    main()
