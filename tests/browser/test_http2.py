"""HTTP/2, the other way out of the six-connection limit (issue 18): Hypercorn with TLS serves
HTTP/2, where every SSE stream of a browser is a stream of one connection; granian too (issue
19: every ASGI server a user would pick).

Eight tabs of one browser context on SSE, each with its own connection (``share: false``), all
open and receive the ticker, and the page itself came over ``h2``; the same eight tabs over
HTTP/1.1 are what tests/browser/test_browser_share.py shows stalling.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page

from .harness import AppServer, start_client, wait_for

TABS = 8


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A throwaway certificate for 127.0.0.1 (what docs/howto/deploy.md's recipe makes)."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return cert, key


@pytest.mark.slow
@pytest.mark.parametrize("server_name", ["hypercorn", "granian"])
def test_eight_sse_tabs_over_http2_all_work(
    browser: Browser, tmp_path: Path, server_name: str
) -> None:
    """On Hypercorn (the library's runner) and on granian (its Rust HTTP/2)."""
    cert, key = self_signed(tmp_path)
    server = AppServer(
        tmp_path / "app.log",
        tick_ms=100,
        flags=("--certfile", str(cert), "--keyfile", str(key), "--server", server_name),
    )
    server.start()
    context = browser.new_context(ignore_https_errors=True)
    try:
        base = f"https://127.0.0.1:{server.port}"
        pages: list[Page] = []
        for _ in range(TABS):
            page = context.new_page()
            page.goto(base + "/page", timeout=15_000)
            page.wait_for_function("window.harnessReady === true", timeout=15_000)
            start_client(page, {"transports": ["sse"], "share": False, "storage": None})
            pages.append(page)
        for page in pages:
            wait_for(page, "() => window.rec.ticks >= 3", 20_000)
        protocols = {
            page.evaluate("() => performance.getEntriesByType('navigation')[0].nextHopProtocol")
            for page in pages
        }
        assert protocols == {"h2"}, protocols
        for page in pages:
            info = page.evaluate("() => harness.info()")
            assert (info["state"], info["transport"]) == ("open", "sse")
            assert page.evaluate("() => window.rec.tickGaps") == []
        # Each tab's message is answered (POST /send beside the eight streams).
        for i, page in enumerate(pages):
            assert page.evaluate(f"() => client.send('echo', {{tab: {i}}})") == {"tab": i}
        # Every tab still gets new ticks while all eight streams are open.
        counts = [page.evaluate("() => window.rec.ticks") for page in pages]
        for page, count in zip(pages, counts, strict=True):
            wait_for(page, "(n) => window.rec.ticks > n + 2", 10_000, arg=count)
    finally:
        context.close()
        server.stop()
