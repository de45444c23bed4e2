"""No hand-copied figures: every measured number in the docs comes from the committed results.

The pages that quote measurements (the comparison, delivery and scaling pages) include their
figures from files rendered out of the committed results (``--8<-- "bench/results/FILE:SECTION"``):
results.md (the tables), figures.md and notes.md (rendered from ``bench/templates/``) and
scaleout.txt. This file checks that

* those files are exactly what ``python -m transports.bench --from-json`` renders from the
  committed JSON now (a new run, or an edited template, that was not re-rendered fails);
* the pages' own text holds no figure: a number with a unit of measurement (msg/s, µs, ms, KiB,
  bytes, %, a ``1.9x`` ratio, ``15k``), a decimal or a number with thousands separators, outside
  code, comments and snippet lines, fails unless it is listed in ``ALLOWED`` as a fact that is
  not a measurement (a protocol constant, a default setting), with the reason;
* the templates hold no literal figure either (only placeholders), and every section of
  figures.md is included by some page, and every section a page includes exists.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from transports.bench import report

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
TEMPLATES = ROOT / "bench" / "templates"
DOCS = ROOT / "docs"

PAGES = ("choosing-a-transport.md", "delivery.md", "scaling.md")
"""The pages that quote measurements: every figure on them must come through a snippet."""

ALLOWED: dict[str, dict[str, str]] = {
    "choosing-a-transport.md": {
        "100 bytes": "the benchmark's message size (PAYLOAD_SIZE in transports/bench/server.py)",
        "2.5 s": "the client policy's WebSocket and SSE deadlines (transports/static/policy.json)",
        "1,000": "the fan-out workload's subscribers (its plan), in a chart's title",
    },
    "delivery.md": {
        "200,000": "the in-memory backplane's cap on remembered replies (a constant)",
        "1 MiB": "the default outbox_max_bytes (transports/core/settings.py)",
    },
    "scaling.md": {
        "16 bytes": "the shortest secret key the library accepts",
    },
    "templates/notes.md": {
        "20,000": "the goal's target and this machine's hard RLIMIT_NOFILE, not measured",
        "2x": "the goal's target against python-socketio",
        "2.5 s": "the client policy's SSE deadline",
    },
    "templates/figures.md": {},
}
"""Figures that are not measurements, per page (exact text of the match) and why."""

NUMBER = r"\d[\d,]*(?:\.\d+)?"
TOKEN = re.compile(
    r"(?<![\w/§.,-])"  # not inside a word, a path, a section number or a version
    rf"(?P<number>{NUMBER}(?:\s?[–-]\s?{NUMBER})?)(?![\d.])"  # a number, or a range
    r"(?P<unit>\s?(?:msg|messages|deliveries|echoes|requests|polls)/s\b|/s\b"
    r"|\s?(?:µs|us|ms|KiB|MiB|GiB|kB|MB|bytes?|min|s)\b|\s?%|[xk]\b)?"
)
MEASURED_UNITS = re.compile(r"/s|µs|us|ms|KiB|MiB|GiB|kB|MB|byte|min|%|x|k")
"""Units a measurement comes in (seconds are left out: heartbeats, deadlines and windows are
settings; a measured duration in seconds has decimals and is caught as one)."""


def is_figure(number: str, unit: str) -> bool:
    """A number with a unit of measurement, a decimal or a number with thousands separators."""
    return bool(
        MEASURED_UNITS.search(unit) or "." in number or re.search(r"\d,\d{3}(?!\d)", number)
    )


SNIPPET_LINE = re.compile(r'^\s*-{1,}8<-{1,}\s+"(?P<path>[^"]+)"\s*$')
SECTION = re.compile(r"<!-- --8<-- \[(?P<edge>start|end):(?P<name>[\w-]+)\] -->")


def prose(text: str) -> str:
    """``text`` without what is not prose: fenced code, inline code, HTML comments, snippet
    lines, link targets and image paths. Lines are kept (blanked) so line numbers hold."""
    text = re.sub(r"<!--.*?-->", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)
    out = []
    fence: str | None = None
    for line in text.splitlines():
        stripped = line.strip()
        marker = re.match(r"(`{3,}|~{3,})", stripped)
        if fence is not None:
            if marker and stripped.startswith(fence) and set(stripped) == {fence[0]}:
                fence = None
            out.append("")
            continue
        if marker:
            fence = marker.group(1)
            out.append("")
            continue
        if SNIPPET_LINE.match(line):
            out.append("")
            continue
        line = re.sub(r"`[^`]*`", "``", line)
        line = re.sub(r"\]\([^)]*\)", "]()", line)
        out.append(line)
    return "\n".join(out)


def figures_in(text: str) -> list[tuple[int, str]]:
    """Every ``(line number, figure)`` in the prose of ``text``."""
    found = []
    for number, line in enumerate(prose(text).splitlines(), start=1):
        for match in TOKEN.finditer(line):
            if is_figure(match.group("number"), match.group("unit") or ""):
                found.append((number, match.group(0).strip()))
    return found


def hand_typed(name: str, text: str) -> list[str]:
    """The figures of ``text`` that ``ALLOWED[name]`` does not explain."""
    allowed = ALLOWED.get(name, {})
    return [
        f"{name}:{line}: {figure!r}" for line, figure in figures_in(text) if figure not in allowed
    ]


def without_placeholders(template: str) -> str:
    return re.sub(r"\{\{.*?\}\}", "FIGURE", template, flags=re.S)


# --- the rendered files are current -----------------------------------------------------------


@pytest.mark.parametrize(
    "directory",
    [
        "",
        "uvicorn",
        "issue19/servers",
        "issue19/messages",
        "issue19/fanout",
        "issue19/quiet-hypercorn",
        "issue19/quiet-servers",
        "issue19/final-servers",
        "issue19/final-hypercorn",
        "issue19/session3-servers",
        "issue19/session4-servers",
        "issue19/session5-py312",
        "issue19/session5-servers",
    ],
)
def test_results_tables_are_rendered_from_the_json(directory: str) -> None:
    """results.md is what --from-json renders from results.json (same directory)."""
    folder = RESULTS / directory
    data = report.load_results(folder / "results.json")
    assert (folder / "results.md").read_text() == report.markdown(data), (
        f"{folder / 'results.md'} is stale: run python -m transports.bench --from-json "
        f"{folder / 'results.json'}" + (f" --out {folder}" if directory else "")
    )


def test_docs_snippets_are_rendered_from_the_json() -> None:
    """figures.md, notes.md and scaleout.txt are what the committed results and templates
    render now."""
    expected = report.docs_snippets(RESULTS, TEMPLATES)
    assert set(expected) == {"figures.md", "notes.md", "scaleout.txt"}
    for name, text in expected.items():
        assert (RESULTS / name).read_text() == text, (
            f"bench/results/{name} is stale: run "
            "python -m transports.bench --from-json bench/results/results.json"
        )


def test_goals_in_notes_follow_the_run() -> None:
    """Each goal's text sits under Met or Missed as results.json decides (notes.md once filed
    the pipelined echo under Met while results.md said no)."""
    data = report.load_results(RESULTS / "results.json")
    notes = (RESULTS / "notes.md").read_text()
    met_at = notes.index("**Met.**")
    missed_at = notes.index("**Missed, and why.**")
    pipelined = next(g for g in data["goals"] if g["goal"].startswith("WebSocket echo, 1 client"))
    where = notes.index("**WebSocket echo, one pipelined client")
    assert (met_at < where < missed_at) is bool(pipelined["met"])


# --- no figure outside the snippets -----------------------------------------------------------


@pytest.mark.parametrize("page", PAGES)
def test_pages_quote_figures_only_through_snippets(page: str) -> None:
    text = (DOCS / page).read_text()
    assert hand_typed(page, text) == [], (
        "figures typed into the page: include them from bench/results/ (a section of "
        "bench/templates/figures.md rendered by --from-json), or list them in ALLOWED with "
        "why they are not measurements"
    )


@pytest.mark.parametrize("template", sorted(report.TEMPLATES.values()))
def test_templates_hold_only_placeholders(template: str) -> None:
    text = without_placeholders((TEMPLATES / template).read_text())
    assert hand_typed(f"templates/{template}", text) == []


@pytest.mark.parametrize("name", sorted(ALLOWED))
def test_allowed_figures_are_still_there(name: str) -> None:
    """An ALLOWED entry that no longer matches anything goes (so the list cannot rot)."""
    path = TEMPLATES / name.removeprefix("templates/") if "/" in name else DOCS / name
    text = path.read_text()
    if name.startswith("templates/"):
        text = without_placeholders(text)
    present = {figure for _, figure in figures_in(text)}
    assert set(ALLOWED[name]) <= present, set(ALLOWED[name]) - present


def _includes() -> list[tuple[str, str, str]]:
    """``(page, file, section)`` for every snippet line of README.md and docs/."""
    out = []
    for page in [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]:
        for line in page.read_text().splitlines():
            match = SNIPPET_LINE.match(line)
            if match:
                file, _, section = match.group("path").partition(":")
                out.append((str(page.relative_to(ROOT)), file, section))
    return out


def _sections(path: Path) -> dict[str, str]:
    text = path.read_text()
    out = {}
    for start in SECTION.finditer(text):
        if start.group("edge") != "start":
            continue
        end = text.find(f"<!-- --8<-- [end:{start.group('name')}] -->", start.end())
        assert end > 0, f"{path}: section {start.group('name')} never ends"
        out[start.group("name")] = text[start.end() : end]
    return out


def test_every_included_section_exists_and_has_content() -> None:
    for page, file, section in _includes():
        path = ROOT / file
        assert path.exists(), f"{page} includes {file}, which does not exist"
        if section:
            sections = _sections(path)
            assert section in sections, f"{page} includes {file}:{section}: no such section"
            assert sections[section].strip(), f"{page} includes {file}:{section}: empty"


def test_every_figures_section_is_included() -> None:
    """A section of figures.md no page includes is a figure the docs lost on the way."""
    included = {section for _, file, section in _includes() if file == "bench/results/figures.md"}
    assert set(_sections(RESULTS / "figures.md")) - included == set()


# --- the checks themselves ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("markdown", "found"),
    [
        ("WebSocket does 15,119 msg/s here.", ["15,119 msg/s"]),
        ("a round trip of 0.21 ms", ["0.21 ms"]),
        ("at 66 µs of server CPU", ["66 µs"]),
        ("it takes 30.5 KiB per connection", ["30.5 KiB"]),
        ("1.91x raw Quart, 15k echoes", ["1.91x", "15k"]),
        ("clients used 80–120% of a core", ["80–120%"]),
        ("its 204 (176 bytes)", ["176 bytes"]),
        ("the run took 17 min and 1,000 subscribers", ["17 min", "1,000"]),
        ("a latency of about 0.6", ["0.6"]),
        ("| WebSocket | 22,219 [18,700–24,488] | 34 µs |", ["22,219", "18,700–24,488", "34 µs"]),
    ],
)
def test_checker_finds_hand_typed_figures(markdown: str, found: list[str]) -> None:
    assert [figure for _, figure in figures_in(markdown)] == found


@pytest.mark.parametrize(
    "markdown",
    [
        "Over HTTP/1.1 a browser opens six connections; HTTP/2 shares one.",
        "protocol §5.3 and §2.2, close 1006 or 4008, a 504 from the proxy",
        "every heartbeat (25 s), poll window + 10 s",
        "a figure in code: `15,119 msg/s`, or a [link](bench/1.5x.png)",
        "```text\n#1 S>C +   4.2 ms  [ws text, 2+77 bytes]\n```",
        "<!-- 0.86x in a comment -->",
        '--8<-- "bench/results/figures.md:wire-sse"',
        "a 100-byte message, 2 x heartbeat, python 3.11.7 and version 0.18.0",
    ],
)
def test_checker_leaves_what_is_not_a_figure(markdown: str) -> None:
    assert figures_in(markdown) == []


def test_a_figure_typed_into_a_page_fails(tmp_path: Path) -> None:
    """Typing a measured figure into the comparison page is caught; through the snippet it is
    not."""
    page = (DOCS / "choosing-a-transport.md").read_text()
    assert hand_typed("choosing-a-transport.md", page) == []
    typed = page.replace(
        '--8<-- "bench/results/figures.md:choose-websocket"',
        "Here: 0.21 ms round trip, 15k echoes/s at 66 µs of server CPU each.",
    )
    assert [line.split(": ", 1)[1] for line in hand_typed("choosing-a-transport.md", typed)] == [
        "'0.21 ms'",
        "'15k'",
        "'66 µs'",
    ]


def test_a_new_run_changes_the_rendered_figures(tmp_path: Path) -> None:
    """Edit a figure in a copy of results.json: figures.md and notes.md render differently, so
    the committed ones would be stale; flip a goal: its text moves, or rendering stops when the
    template has no text for the new outcome."""
    copy = tmp_path / "results"
    copy.mkdir()
    for relative in report.SNIPPET_SOURCES.values():
        source = RESULTS / relative
        target = copy / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(source.read_text())
    data = json.loads((copy / "results.json").read_text())
    for run in data["results"]["wire"]["sse"]:
        run["up_ack_b"] = 176.0  # the tutorial's old hand-typed figure
    (copy / "results.json").write_text(json.dumps(data))
    rendered = report.docs_snippets(copy, TEMPLATES)
    assert rendered["figures.md"] != (RESULTS / "figures.md").read_text()
    assert "176 back" in rendered["figures.md"]

    # python-socketio twice as fast: the pipelined echo misses its goal (2x the peer), and its
    # text moves under Missed.
    for run in data["results"]["messages"]["sio-ws"]:
        run["pipe_msg_s"] *= 2
    (copy / "results.json").write_text(json.dumps(data))
    notes = report.docs_snippets(copy, TEMPLATES)["notes.md"]
    assert (
        notes.index("**Missed, and why.**")
        < notes.index("**WebSocket echo, one pipelined client")
        < notes.index("**Idle connections")
    )

    # The burst ten times slower: it misses, and the template has no text for that outcome
    # (it was written for "met"): rendering refuses.
    for run in data["results"]["burst"]["websocket"]:
        run["deliv_s"] /= 10
    (copy / "results.json").write_text(json.dumps(data))
    with pytest.raises(report.SnippetError, match="burst fan-out"):
        report.docs_snippets(copy, TEMPLATES)


def test_issue19_goals_are_given_for_every_server() -> None:
    """A run on several servers reports each of issue 19's goals on each, as the ratio the
    tables give for that configuration on that server."""
    data = report.load_results(RESULTS / "issue19" / "quiet-servers" / "results.json")
    text = report.markdown(data)
    section = text.split("### Issue 19's goals on each server", 1)[1].split("###", 1)[0]
    header = next(line for line in section.splitlines() if line.startswith("| goal |"))
    assert header == "| goal | target | hypercorn | granian | uvicorn |"
    rows = {line.split(" | ")[0][2:]: line for line in section.splitlines() if line[:2] == "| "}
    for server in ("granian", "uvicorn"):
        ratio = data["summary"]["messages"]["thin-ws@" + server]["pipe_msg_s"]["ratio"]
        met = "yes" if ratio >= 0.95 else "**no**"
        assert f"{report.fmt(ratio)}x {met}" in rows["WebSocket echo, 1 client pipelined"]
    first = data["summary"]["burst"]["thin-ws@uvicorn"]["first_ms"]["ratio"]
    assert f"{report.fmt(first)}x yes" in rows["burst first delivery"]
