"""``python -m transports.bench``: the transport comparison (see :mod:`transports.bench`)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any

from . import report
from .clients import FLOOR
from .procs import ROOT, Nginx
from .server import raise_fd_limit
from .workloads import (
    BEFORE,
    Figures,
    Plan,
    connect_time,
    fanout,
    idle_cpu,
    memory,
    messages,
    wire,
)

WORKLOADS = ("connect", "messages", "fanout", "burst", "memory", "wire", "idle")
MESSAGE_CONFIGS = [
    "raw-ws",
    "raw-sse",
    "raw-http",
    "asgi-ws",
    "asgi-http",
    "thin-ws",
    "websocket",
    "sse",
    "longpoll",
    "sio-ws",
    "sio-polling",
]
FANOUT_CONFIGS = [c for c in MESSAGE_CONFIGS if c not in ("raw-http", *FLOOR)]  # no fan-out
MEMORY_CONFIGS = [c for c in FANOUT_CONFIGS if c != "thin-ws"]
WIRE_CONFIGS = MEMORY_CONFIGS
CONNECT_DIRECT = [
    "raw-ws",
    "raw-sse",
    "websocket",
    "sse",
    "longpoll",
    "auto",
    "sio-ws",
    "sio-polling",
    "sio-auto",
]
CONNECT_PROXIED = ["raw-ws", "raw-sse", "websocket", "sse", "longpoll", "auto", "sio-auto"]
CONNECT_PROXIED_QUICK = ["raw-sse", "auto", "sio-auto"]
PROFILES = ("a-no-upgrade", "b-buffering")
VERSIONS = (
    "quart",
    "hypercorn",
    "uvicorn",
    "granian",
    "websockets",
    "wsproto",
    "h11",
    "aiohttp",
    "python-socketio",
    "python-engineio",
    "psutil",
)


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gib = 0.0
    try:
        import psutil

        memory_gib = psutil.virtual_memory().total / 2**30
    except Exception:  # pragma: no cover - psutil is a dev dependency
        pass
    versions = {}
    for name in VERSIONS:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "-"
    commit = ""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout.strip()
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(memory_gib, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
        "commit": commit,
    }


class Run:
    """Collects every measurement: ``results[workload][config]`` is a list, one per repetition
    (``None`` where a repetition could not measure it; its error is in ``errors``)."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.results: dict[str, dict[str, list[Figures | None]]] = {}
        self.errors: list[dict[str, Any]] = []

    async def measure(
        self, workload: str, config: str, work: Callable[[], Awaitable[Figures]], rep: int
    ) -> None:
        slot = self.results.setdefault(workload, {}).setdefault(config, [])
        while len(slot) < rep:
            slot.append(None)
        t0 = time.monotonic()
        try:
            figures = await work()
        except Exception as exc:
            slot.append(None)
            self.errors.append(
                {
                    "workload": workload,
                    "config": config,
                    "rep": rep + 1,
                    "error": f"{type(exc).__name__}: {exc}"[:400],
                }
            )
            print(f"  rep {rep + 1} {workload:9} {config:22} ERROR {exc!r}"[:300], flush=True)
            traceback.print_exc(limit=3)
            return
        slot.append(figures)
        took = time.monotonic() - t0
        print(
            f"  rep {rep + 1} {workload:9} {config:22} {short(figures)}  ({took:.0f} s)", flush=True
        )


def short(figures: Figures) -> str:
    parts = []
    for key, value in figures.items():
        if key.startswith("_") or key.endswith("_mib") or key in ("wall_s",):
            continue
        if isinstance(value, float):
            parts.append(f"{key}={value:,.2f}" if abs(value) < 100 else f"{key}={value:,.0f}")
        else:
            parts.append(f"{key}={value}")
    return " ".join(parts)[:240]


def rotate(items: list[str], rep: int) -> list[str]:
    """Interleave: each repetition starts the configurations at another place."""
    if not items:
        return items
    k = rep % len(items)
    return items[k:] + items[:k]


async def run(args: argparse.Namespace) -> dict[str, Any]:
    plan = Plan.quick_plan() if args.quick else Plan()
    plan.server = "hypercorn"
    plan.workers = args.workers
    if args.profile:
        plan.profile_dir = Path(args.profile)
    repeat = 1 if args.quick else args.repeat
    workloads = [w for w in args.workloads.split(",") if w]
    unknown = set(workloads) - set(WORKLOADS)
    if unknown:
        raise SystemExit(f"unknown workloads: {', '.join(sorted(unknown))}")
    servers = [s for s in args.servers.split(",") if s]
    only = set(args.configs.split(",")) if args.configs else None
    before = {c for c in args.before.split(",") if c}
    if before and not os.environ.get("BENCH_BEFORE"):
        raise SystemExit("--before needs BENCH_BEFORE: the source tree to compare with")

    def variants(configs: list[str], workload: str = "") -> list[str]:
        out = []
        for server in servers:
            for config in configs:
                if only is not None and config not in only and f"{workload}:{config}" not in only:
                    continue
                names = [config] + ([config + BEFORE] if config in before else [])
                for name in names:
                    if server == "hypercorn":
                        out.append(name)
                    elif not name.startswith("sio"):
                        out.append(f"{name}@{server}")
        return out

    run_ = Run(plan)
    started = time.monotonic()
    nginx = Nginx.available()
    if not nginx and "connect" in workloads:
        plan.notes.append("nginx or its profiles not found: connect time measured direct only")
    for rep in range(repeat):
        print(f"== repetition {rep + 1}/{repeat}", flush=True)
        if "connect" in workloads:
            for config in rotate(variants(CONNECT_DIRECT, "connect"), rep):
                await run_.measure(
                    "connect",
                    f"direct/{config}",
                    partial(connect_time, "direct", config, plan),
                    rep,
                )
            proxied = CONNECT_PROXIED_QUICK if args.quick else CONNECT_PROXIED
            for profile in PROFILES if nginx else ():
                for config in rotate([c for c in proxied if only is None or c in only], rep):
                    await run_.measure(
                        "connect",
                        f"{profile}/{config}",
                        partial(connect_time, profile, config, plan),
                        rep,
                    )
        if "messages" in workloads:
            for config in rotate(variants(MESSAGE_CONFIGS, "messages"), rep):
                await run_.measure("messages", config, partial(messages, config, plan), rep)
        if "fanout" in workloads:
            for config in rotate(variants(FANOUT_CONFIGS, "fanout"), rep):
                await run_.measure("fanout", config, partial(fanout, config, plan), rep)
        if "burst" in workloads:
            for config in rotate(variants(FANOUT_CONFIGS, "burst"), rep):
                await run_.measure("burst", config, partial(fanout, config, plan, False), rep)
        if "memory" in workloads:
            for config in rotate(variants(MEMORY_CONFIGS, "memory"), rep):
                await run_.measure("memory", config, partial(memory, config, plan), rep)
        if "wire" in workloads and rep == 0:
            for config in [c for c in WIRE_CONFIGS if only is None or c in only]:
                await run_.measure("wire", config, partial(wire, config, plan), rep)
    if "idle" in workloads:
        print("== idle connections", flush=True)
        await run_.measure("idle", "mixed", lambda: idle_cpu(plan), 0)
    duration = time.monotonic() - started
    command = "python -m transports.bench " + " ".join(sys.argv[1:])
    return {
        "meta": {
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "command": command.strip(),
            "duration_s": round(duration, 1),
            "repeat": repeat,
            "quick": bool(args.quick),
            "servers": servers,
            "plan": {
                k: (str(v) if isinstance(v, Path) else v)
                for k, v in vars(plan).items()
                if k not in ("notes",)
            },
            "notes": plan.notes,
            "machine": machine(),
        },
        "results": run_.results,
        "errors": run_.errors,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the comparison; write JSON, Markdown and PNG charts. Exit 0 only if every
    measurement produced its figures."""
    parser = argparse.ArgumentParser(
        prog="python -m transports.bench",
        description="Every transport, raw Quart (the ceiling) and python-socketio (the peer) "
        "through the same workloads; JSON, a Markdown table and PNG charts.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small counts, one repetition (CI: checks the harness, not speed)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="repetitions (default 3)")
    parser.add_argument(
        "--workloads",
        default=",".join(WORKLOADS),
        help=f"comma-separated subset of {','.join(WORKLOADS)}",
    )
    parser.add_argument(
        "--configs",
        default="",
        help="only these configurations (comma-separated; WORKLOAD:CONFIG limits one to a "
        "workload, e.g. raw-ws,thin-ws,messages:sse)",
    )
    parser.add_argument(
        "--servers",
        default="hypercorn",
        help="comma-separated ASGI servers to run raw Quart and the library on: hypercorn, "
        "uvicorn, granian (python-socketio always runs on Hypercorn); each configuration is "
        "compared with raw Quart on its own server",
    )
    parser.add_argument(
        "--before",
        default="",
        help="also run these configurations' servers from the source tree in $BENCH_BEFORE "
        "(another checkout), as NAME~before, interleaved: a change against the code before it",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        help="client processes holding fan-out and idle connections",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output directory (default bench/results, or bench/results/tmp/quick with --quick)",
    )
    parser.add_argument(
        "--profile",
        default="",
        help="record every server with py-spy (raw format) into this directory",
    )
    parser.add_argument(
        "--from-json",
        type=Path,
        default=None,
        help="measure nothing: rebuild the Markdown and the charts from this results.json",
    )
    parser.add_argument(
        "--docs",
        type=Path,
        default=None,
        help="also copy the charts into this directory (the docs site's, e.g. docs/bench)",
    )
    args = parser.parse_args(argv)
    raise_fd_limit()
    out: Path = args.out or (ROOT / "bench" / "results" / ("tmp/quick" if args.quick else ""))
    out.mkdir(parents=True, exist_ok=True)
    if args.from_json is not None:
        data = json.loads(args.from_json.read_text())
    else:
        data = asyncio.run(run(args))
    summary = report.summarize(data)
    data["summary"] = summary
    data["goals"] = report.goals(data)
    (out / "results.json").write_text(json.dumps(data, indent=1, default=str) + "\n")
    markdown = report.markdown(data)
    (out / "results.md").write_text(markdown)
    charts = report.charts(data, out)
    if args.docs is not None:
        args.docs.mkdir(parents=True, exist_ok=True)
        for chart in charts:
            shutil.copyfile(chart, args.docs / chart.name)
    print()
    print(markdown)
    print(
        f"wrote {out / 'results.json'}, {out / 'results.md'} and {len(charts)} charts "
        f"in {data['meta']['duration_s']:.0f} s"
    )
    status = 0
    results_dir = (ROOT / "bench" / "results").resolve()
    if out.resolve() in (results_dir, results_dir / "uvicorn"):
        # The committed results changed: render the snippets the docs quote them through.
        try:
            snippets = report.write_docs_snippets(results_dir, ROOT / "bench" / "templates")
        except report.SnippetError as exc:
            print(f"DOCS SNIPPETS NOT RENDERED: {exc}")
            status = 1
        else:
            print("rendered the docs snippets", *(str(p) for p in snippets))
    missing = report.missing(data)
    if missing:
        print("MISSING FIGURES:", *missing, sep="\n  ")
        return 1
    return status


if __name__ == "__main__":
    sys.exit(main())
