"""The reply memory (docs/protocol.md §8) does not hold up replies: with a backplane whose store
has to wait (Redis), a client message's REPLY leaves before its answer is stored; a retry that
comes meanwhile gets the same answer without running the handler again, and the server does not
stop its backplane with answers still being stored.

The backplane here is the in-memory one made to answer like a shared one: every claim and store
is awaited, and a store waits until the test lets it through. The last test runs the benchmark
that measures the same path on a real Redis (bench/reply_memory.py).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from bench import reply_memory
from tests.apps import make_app
from tests.benchrun import run_bench
from tests.conftest import eventually
from tests.redis_server import redis_available
from tests.secharness import LIVE_DEFAULTS, live_server
from transports.backplanes.memory import MemoryBackplane
from transports.bench.inproc import FakeSocket, open_websocket
from transports.typing import TransportName

ROOT = Path(__file__).resolve().parents[1]


class SlowStore(MemoryBackplane):
    """Stores of remembered replies wait for :attr:`gate` while :attr:`hold` is set (or
    ``delay`` seconds)."""

    def __init__(self, delay: float | None = None) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.delay = delay
        self.hold = False
        self.storing = 0
        self.storing_at_disconnect: int | None = None

    def claim_now(self, key: str, ttl: float) -> bool | None:
        return None

    def store_now(self, key: str, value: str, ttl: float) -> bool:
        return False

    async def store(self, key: str, value: str, ttl: float) -> None:
        if key.startswith("reply:") and (self.hold or self.delay is not None):
            self.storing += 1
            try:
                if self.delay is None:
                    await self.gate.wait()
                else:
                    await asyncio.sleep(self.delay)
            finally:
                self.storing -= 1
        await super().store(key, value, ttl)

    async def disconnect(self) -> None:
        self.storing_at_disconnect = self.storing
        await super().disconnect()

    def replies(self) -> dict[str, str]:
        return {k: v for k, (v, _) in self._kv.items() if k.startswith("reply:")}


@pytest.mark.parametrize("transport", ["websocket", "sse", "longpoll"])
async def test_reply_leaves_before_it_is_stored(transport: TransportName) -> None:
    store = SlowStore()
    app = make_app(**{**LIVE_DEFAULTS, "backplane": store})
    async with live_server(app) as live:
        wire = await live.wire(transport)
        before = set(store.replies())
        store.hold = True
        await wire.send('[3,1,"count",{"key":"slow"}]')
        first = await wire.reply(1)
        assert first[2] == "ok"
        assert store.storing == 1  # the answer is not stored yet
        (key,) = set(store.replies()) - before
        assert store.replies()[key] == "1"  # only claimed
        # A retry now (the reply was lost on the way): the same answer, the handler not run.
        await wire.send('[3,1,"count",{"key":"slow"}]')
        again = await wire.reply(1)
        assert again == first
        assert app.config["APPLIED"]["slow"] == 1
        store.gate.set()
        await eventually(lambda: store.storing == 0)
        assert store.replies()[key].startswith("0ok\x00")
        # Once stored, a retry is answered from the reply memory, as before.
        await wire.send('[3,1,"count",{"key":"slow"}]')
        assert await wire.reply(1) == first
        assert app.config["APPLIED"]["slow"] == 1


async def test_stop_waits_for_answers_being_stored() -> None:
    store = SlowStore(delay=0.5)
    app = make_app(**{**LIVE_DEFAULTS, "backplane": store})
    async with app.test_app() as test_app:
        socket = FakeSocket()
        task = await open_websocket(app, test_app.test_client(), socket)
        socket.waiting = asyncio.get_running_loop().create_future()
        socket.push('[3,1,"count",{"key":"k"}]')
        reply: Any = await asyncio.wait_for(socket.waiting, 5)
        assert reply.startswith('[4,1,"ok"')
        assert store.storing == 1
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    # The app's shutdown stopped the engine: it waited for the store before disconnecting.
    assert store.storing_at_disconnect == 0
    (stored,) = store.replies().values()
    assert stored.startswith("0ok\x00")


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.skipif(not redis_available(), reason="redis-server is not installed")
def test_redis_bench_runs_and_renders(tmp_path: Path) -> None:
    """``python -m bench.reply_memory`` (a real redis-server) answers every message on both
    backplanes and renders its table from its JSON; the committed run's table is current."""
    args = ["--repeat", "1", "--echoes", "100"]
    data = run_bench("bench.reply_memory", args, tmp_path, reply_memory.markdown)
    for name in ("after/memory", "after/redis"):
        (figures,) = data["runs"][name]
        assert all(figures[key] > 0 for key in reply_memory.FIGURES), figures
    committed = ROOT / "bench" / "results" / "issue19" / "reply-memory"
    assert (committed / "results.md").read_text() == reply_memory.markdown(
        json.loads((committed / "results.json").read_text())
    ), "stale: run python -m bench.reply_memory --from-json on the committed results.json"
