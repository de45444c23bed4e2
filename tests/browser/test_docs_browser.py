"""The documentation's HTML and JavaScript, run in Chromium against plain ``hypercorn``.

* docs/getting-started.md's ``app.py``, extracted from the page into an empty folder and served
  exactly as the page says (``hypercorn app:app``, on a free loopback port), shows live ticks in
  Chromium on each of the three transports, names the transport it uses, and round-trips a chat
  message typed into its form.
* Every page of README.md and docs/ whose app serves HTML (a ``file *.py`` block with a page in
  it, or ``file *.html`` blocks the app serves at ``/NAME``): the page opens at ``/``, its script
  negotiates (a 200 from ``.../negotiate``) and nothing throws. An HTML file block that no app of
  its page serves fails the test. A docs page must therefore connect when it loads.
* docs/security.md's example: a page of the same origin that logs in gets its cookie to
  ``on_connect``; without it the connection is refused.

The parser and the process helpers are tests/test_docs.py's (the same conventions).
"""

from __future__ import annotations

import contextlib
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page

from ..test_docs import ROOT, Block, doc_pages, environment, hypercorn, parse

TRANSPORTS = ["websocket", "sse", "longpoll"]


def page_files(page: Path) -> dict[str, Block]:
    """The page's ``file`` blocks, the last one of each name (the page's final state)."""
    blocks, _ = parse(page)
    return {b.arg: b for b in blocks if b.kind == "file"}


def write_all(files: dict[str, Block], folder: Path) -> None:
    for name, block in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(block.text, encoding="utf-8")


def get(url: str) -> tuple[int, str]:
    """Status and content type of a GET (no proxy from the environment)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=10) as response:
            return response.status, response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type", "")


@contextlib.contextmanager
def errors_of(page: Page) -> Iterator[list[str]]:
    """Uncaught exceptions and console errors of ``page`` (not failed favicon loads)."""
    seen: list[str] = []
    page.on("pageerror", lambda error: seen.append(f"uncaught: {error}"))

    def console(message: Any) -> None:
        if message.type == "error" and "favicon" not in str(message.location.get("url", "")):
            seen.append(f"console: {message.text}")

    page.on("console", console)
    yield seen


# --- getting started: the tutorial's app.py, three transports ---------------------------------


@pytest.fixture(scope="module")
def getting_started(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """docs/getting-started.md's app.py alone in an empty folder, on ``hypercorn app:app``."""
    files = page_files(ROOT / "docs" / "getting-started.md")
    assert list(files) == ["app.py"], "the tutorial ends with one complete file, app.py"
    folder = tmp_path_factory.mktemp("hello-realtime")
    write_all(files, folder)
    with hypercorn(folder, "app.py", environment()) as (port, _log):
        yield f"http://127.0.0.1:{port}"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_getting_started_page_shows_live_messages(
    page: Page, getting_started: str, transport: str
) -> None:
    with errors_of(page) as errors:
        page.goto(f"{getting_started}/?transports={transport}")
        page.wait_for_function(
            "t => document.querySelector('#transport').textContent === t", arg=transport
        )
        ticks = (
            "[...document.querySelectorAll('#messages li')].filter(li => "
            "li.textContent.startsWith('tick ')).length"
        )
        page.wait_for_function(f"() => {ticks} >= 1", timeout=10_000)
        first = page.evaluate(f"() => {ticks}")
        page.wait_for_function(f"n => {ticks} >= n + 2", arg=first, timeout=10_000)  # live
        newest = page.locator("#messages li").first.text_content() or ""
        assert newest.startswith("tick ")

        page.fill("#chat input[name=text]", f"hello over {transport}")
        page.press("#chat input[name=text]", "Enter")
        page.wait_for_function(
            "text => [...document.querySelectorAll('#messages li')]"
            ".some(li => li.textContent === text)",
            arg=f"chat: hello over {transport}",
            timeout=10_000,
        )
        # The page clears the input once send() resolves. On SSE and long-poll the reply comes
        # in the POST's answer and the publication down the stream, in either order.
        page.wait_for_function(
            "() => document.querySelector('#chat input[name=text]').value === ''", timeout=10_000
        )
        page.press("#chat input[name=text]", "Enter")  # empty: the server refuses it
        page.wait_for_function(
            "() => [...document.querySelectorAll('#messages li')]"
            ".some(li => li.textContent.startsWith('refused: '))",
            timeout=10_000,
        )
        assert page.text_content("#transport") == transport
    assert errors == []


# --- every page with HTML ------------------------------------------------------------------------


def html_pages() -> list[Any]:
    """(page, apps, html files) for every page with HTML an app of the page may serve."""
    params = []
    for page in doc_pages():
        files = page_files(page)
        blocks, _ = parse(page)
        apps = {b.arg for b in blocks if b.kind == "serve"} | {"app.py"}
        apps = {name for name in apps if name in files and name.endswith(".py")}
        html = sorted(name for name in files if name.endswith(".html"))
        with_page = [
            name
            for name in sorted(apps)
            if any(tag in files[name].text.lower() for tag in ("<script", "<!doctype", "<html"))
        ]
        if html or with_page:
            name = str(page.relative_to(ROOT))
            params.append(pytest.param(page, sorted(apps), html, id=name))
    return params


@pytest.mark.parametrize(("doc", "apps", "html"), html_pages())
def test_page_html_runs_in_chromium(
    page: Page, tmp_path: Path, doc: Path, apps: list[str], html: list[str]
) -> None:
    files = page_files(doc)
    write_all(files, tmp_path)
    served_html: set[str] = set()
    checked = 0
    for app in apps:
        with hypercorn(tmp_path, app, environment()) as (port, _log):
            base = f"http://127.0.0.1:{port}"
            urls = []
            status, kind = get(base + "/")
            if status == 200 and kind.startswith("text/html"):
                urls.append(base + "/")
            for name in html:
                status, kind = get(f"{base}/{name}")
                if status == 200 and kind.startswith("text/html"):
                    urls.append(f"{base}/{name}")
                    served_html.add(name)
            for url in urls:
                with errors_of(page) as errors:
                    with page.expect_response(
                        lambda r: r.url.endswith("/negotiate") and r.request.method == "POST",
                        timeout=15_000,
                    ) as negotiated:
                        page.goto(url)
                    assert negotiated.value.status == 200, f"{url}: negotiate answered"
                    page.wait_for_timeout(1500)  # the page's script runs on
                assert errors == [], f"{url}: {errors}"
                checked += 1
    unserved = sorted(set(html) - served_html)
    assert not unserved, f"{doc.name}: no app of the page serves {unserved} at /NAME"
    assert checked, f"{doc.name}: no app of the page serves its HTML"


# --- security.md: the session cookie reaches on_connect from the same origin --------------------


def test_security_example_cookie_from_the_same_origin(page: Page, tmp_path: Path) -> None:
    files = page_files(ROOT / "docs" / "security.md")
    write_all(files, tmp_path)
    script = """async (login) => {
        if (login) {
            const form = new FormData();
            form.append("user", "ada");
            const answer = await fetch("/login", { method: "POST", body: form });
            if (!answer.ok) return ["login", answer.status];
        }
        const { connect } = await import("/realtime/client.js");
        const client = connect("/realtime");
        const outcome = (sub) => sub.ready.then(() => "ok", (error) => error.code || "error");
        const closed = new Promise((resolve) => client.on("state", (s) => {
            if (s.state === "closed") resolve("closed");
        }));
        const own = await Promise.race([outcome(client.subscribe("user:ada", () => {})), closed]);
        if (own === "closed") return ["closed"];
        const other = await outcome(client.subscribe("user:bob", () => {}));
        client.close();
        return [own, other];
    }"""
    with hypercorn(tmp_path, "app.py", environment()) as (port, _log):
        base = f"http://127.0.0.1:{port}"
        page.goto(base + "/login")  # any page of the app's origin (a 405 for GET)
        assert page.evaluate(script, False) == ["closed"]  # no cookie, no token: 401
        assert page.evaluate(script, True) == ["ok", "forbidden"]
