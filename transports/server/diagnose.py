"""The optional diagnostics endpoints (docs/protocol.md §13), mounted when ``diagnose`` is on.

* ``POST <prefix>/diagnose/publish`` ``{"topic": "$diagnose:<id>", "event", "data"}``
  publishes on that diagnostics topic and answers ``{"offset", "epoch"}``: a client (the
  ``python -m transports.diagnose`` tool, the diagnose page) subscribed to the topic on one
  transport times how the publication reaches it.
* ``GET <prefix>/diagnose`` serves ``static/diagnose.html`` when the package ships it.

Both sit behind the edge like the carriers: the origin check, the body limits and the JSON
errors are the edge's.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from ..carriers import Endpoint, Reply, Request
from ..core.answer import Answer
from ..core.engine import Engine
from ..protocol.errors import BackplaneError, Refused
from ..protocol.frames import decode_diagnose_publish

__all__ = ["DiagnoseEndpoint", "PAGE"]

PAGE = Path(__file__).resolve().parent.parent / "static" / "diagnose.html"
"""The diagnose page (served only when it exists)."""

_HTML = {"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-cache"}


class DiagnoseEndpoint(Endpoint):
    """``POST /diagnose/publish`` and ``GET /diagnose``."""

    routes: ClassVar[tuple[tuple[str, str], ...]] = (
        ("POST", "/diagnose/publish"),
        ("GET", "/diagnose"),
    )

    def __init__(self, engine: Engine, page: Path = PAGE) -> None:
        super().__init__(engine)
        self.engine = engine
        self.page = page

    async def handle(self, request: Request) -> Reply:
        if request.method == "GET":
            return self._page()
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            return Answer.error("unsupported_media_type", "Content-Type must be application/json")
        engine = self.engine
        try:
            topic, event, data = decode_diagnose_publish(await request.read_body(), engine.limits)
            record = await engine.publish_diagnostic(topic, event, data, request.address)
        except Refused as exc:
            return Answer.refused(exc)
        except BackplaneError:
            engine.metrics.inc("backplane_errors")
            return Answer.refused(Refused.retry_later("unavailable", "backplane unavailable", 1))
        return Answer.json({"offset": record.offset, "epoch": record.epoch})

    def _page(self) -> Answer:
        try:
            body = self.page.read_bytes()
        except OSError:
            return Answer.error("not_found", "the diagnose page is not installed")
        return Answer(200, body, dict(_HTML))
