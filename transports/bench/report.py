"""Medians, spreads, same-repetition ratios, the goals, the Markdown report and the charts."""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

Summary = dict[str, dict[str, dict[str, dict[str, float]]]]

MEMORY_CEILING = {
    "raw-ws": "raw-ws",
    "websocket": "raw-ws",
    "sio-ws": "raw-ws",
    "raw-sse": "raw-sse",
    "sse": "raw-sse",
    "longpoll": "raw-sse",
    "sio-polling": "raw-sse",
}
"""Idle memory is compared with the raw route of the same kind: a socket for WebSocket, a held
HTTP response for SSE and long-poll."""


def ceiling_of(workload: str, config: str) -> str | None:
    """The configuration whose figures are the ceiling for ``config`` in ``workload``."""
    name, _, server = config.partition("@")
    if workload == "connect":
        return "direct/raw-ws"
    if workload == "idle":
        return None
    if workload == "memory":
        return MEMORY_CEILING.get(name)
    return "raw-ws"


def _numbers(runs: list[dict[str, Any] | None], key: str) -> list[float | None]:
    out: list[float | None] = []
    for run in runs:
        value = None if run is None else run.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            out.append(None)
        elif isinstance(value, float) and math.isnan(value):
            out.append(None)
        else:
            out.append(float(value))
    return out


def _stats(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarize(data: dict[str, Any]) -> Summary:
    """``summary[workload][config][figure]`` = median/min/max (and ``ratio_*``: the figure
    divided by the ceiling's in the same repetition, then the median of those)."""
    summary: Summary = {}
    for workload, configs in data["results"].items():
        for config, runs in configs.items():
            keys = sorted({k for r in runs if r for k in r if not k.startswith("_")})
            ceiling = ceiling_of(workload, config)
            ceiling_runs = configs.get(ceiling, []) if ceiling else []
            figures: dict[str, dict[str, float]] = {}
            for key in keys:
                values = [v for v in _numbers(runs, key) if v is not None]
                if not values:
                    continue
                entry = _stats(values)
                base = _numbers(ceiling_runs, key) if ceiling_runs else []
                ratios = [
                    v / b
                    for v, b in zip(_numbers(runs, key), base, strict=False)
                    if v is not None and b
                ]
                if ratios:
                    r = _stats(ratios)
                    entry.update(ratio=r["median"], ratio_min=r["min"], ratio_max=r["max"])
                figures[key] = entry
            summary.setdefault(workload, {})[config] = figures
    return summary


def _pair_ratio(
    data: dict[str, Any], workload: str, config: str, other: str, key: str
) -> float | None:
    """Median over repetitions of config/other for ``key`` (same repetition)."""
    configs = data["results"].get(workload, {})
    a, b = _numbers(configs.get(config, []), key), _numbers(configs.get(other, []), key)
    ratios = [x / y for x, y in zip(a, b, strict=False) if x is not None and y]
    return statistics.median(ratios) if ratios else None


def _get(summary: Summary, workload: str, config: str, key: str) -> dict[str, float] | None:
    return summary.get(workload, {}).get(config, {}).get(key)


def fmt(value: float | None, digits: int | None = None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if digits is not None:
        return f"{value:,.{digits}f}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:,.1f}"
    return f"{value:,.2f}"


def cell(entry: dict[str, float] | None, digits: int | None = None) -> str:
    """``median [min-max]``."""
    if entry is None:
        return "-"
    if entry["min"] == entry["max"]:
        return fmt(entry["median"], digits)
    return (
        f"{fmt(entry['median'], digits)} [{fmt(entry['min'], digits)}–{fmt(entry['max'], digits)}]"
    )


def ratio_cell(entry: dict[str, float] | None) -> str:
    if entry is None or "ratio" not in entry:
        return "-"
    if entry["ratio_min"] == entry["ratio_max"]:
        return f"{entry['ratio']:.2f}x"
    return f"{entry['ratio']:.2f}x [{entry['ratio_min']:.2f}–{entry['ratio_max']:.2f}]"


def goals(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Each performance goal of issue #7 with its measured figure (ratios from this run)."""
    s: Summary = data.get("summary") or summarize(data)
    out: list[dict[str, Any]] = []

    def add(
        goal: str,
        target: str,
        ratio: float | None,
        absolute: str,
        cpu: str,
        met: bool | None,
        peer: str = "",
    ) -> None:
        out.append(
            {
                "goal": goal,
                "target": target,
                "ratio": None if ratio is None else round(ratio, 3),
                "absolute": absolute,
                "cpu": cpu,
                "peer": peer,
                "met": met,
            }
        )

    def rate_goal(
        goal: str,
        config: str,
        key: str,
        cpu_key: str,
        floor: float,
        peer: str | None,
        peer_floor: float | None,
    ) -> None:
        entry = _get(s, "messages", config, key)
        ratio = entry.get("ratio") if entry else None
        cpu = _get(s, "messages", config, cpu_key)
        peer_ratio = _pair_ratio(data, "messages", config, peer, key) if peer else None
        met = None if ratio is None else ratio >= floor
        if met is not None and peer_floor is not None and peer_ratio is not None:
            met = met and peer_ratio >= peer_floor
        target = f">= {floor}x ceiling" + (f", >= {peer_floor}x {peer}" if peer_floor else "")
        add(
            goal,
            target,
            ratio,
            f"{fmt(entry['median'] if entry else None, 0)} msg/s",
            f"{fmt(cpu['median'] if cpu else None, 0)} us/msg "
            f"({fmt(cpu.get('ratio') if cpu else None)}x ceiling)",
            met,
            f"{fmt(peer_ratio)}x {peer}" if peer else "",
        )

    rate_goal(
        "WebSocket echo, 1 client pipelined (window 16)",
        "websocket",
        "pipe_msg_s",
        "pipe_srv_us",
        0.85,
        "sio-ws",
        2.0,
    )
    rate_goal(
        "WebSocket echo, 50 clients", "websocket", "c50_msg_s", "c50_srv_us", 0.85, "sio-ws", None
    )
    p50 = _get(s, "messages", "websocket", "rtt_p50_ms")
    p99 = _get(s, "messages", "websocket", "rtt_p99_ms")
    if p50 and p99:
        r50, r99 = p50.get("ratio"), p99.get("ratio")
        met = None if r50 is None or r99 is None else (r50 <= 1.2 and r99 <= 1.2)
        add(
            "round trip p50 / p99, 1 client, WebSocket",
            "<= 1.2x ceiling",
            r50,
            f"p50 {fmt(p50['median'], 3)} ms ({fmt(r50)}x), p99 {fmt(p99['median'], 3)} ms "
            f"({fmt(r99)}x)",
            "",
            met,
            f"p50 {fmt(_pair_ratio(data, 'messages', 'websocket', 'sio-ws', 'rtt_p50_ms'))}x "
            "sio-ws",
        )
    rate_goal(
        "long-poll echo, 50 clients", "longpoll", "c50_msg_s", "c50_srv_us", 0.3, "sio-polling", 3.0
    )
    rate_goal("SSE + POST echo, 50 clients", "sse", "c50_msg_s", "c50_srv_us", 0.3, None, None)
    for config, label in (("websocket", "WebSocket"), ("sse", "SSE")):
        entry = _get(s, "fanout", config, "deliv_s")
        cpu = _get(s, "fanout", config, "srv_us")
        ratio = entry.get("ratio") if entry else None
        add(
            f"fan-out, 1,000 subscribers x 100 messages, {label}",
            ">= 0.9x ceiling",
            ratio,
            f"{fmt(entry['median'] if entry else None, 0)} deliveries/s",
            f"{fmt(cpu['median'] if cpu else None, 0)} us/delivery "
            f"({fmt(cpu.get('ratio') if cpu else None)}x ceiling)",
            None if ratio is None else ratio >= 0.9,
            f"{fmt(_pair_ratio(data, 'fanout', config, 'sio-ws', 'deliv_s'))}x sio-ws",
        )
    entry = _get(s, "fanout", "longpoll", "deliv_s")
    all_ok = _get(s, "fanout", "longpoll", "all_ok")
    connected = _get(s, "fanout", "longpoll", "connected")
    cpu = _get(s, "fanout", "longpoll", "srv_us")
    ratio = entry.get("ratio") if entry else None
    everyone = bool(all_ok and connected and all_ok["min"] >= connected["max"])
    add(
        "fan-out, 1,000 long-poll subscribers",
        ">= 0.5x ceiling, every client gets every message",
        ratio,
        f"{fmt(entry['median'] if entry else None, 0)} deliveries/s; clients with every message "
        f"{fmt(all_ok['min'] if all_ok else None, 0)}-{fmt(all_ok['max'] if all_ok else None, 0)}"
        f" of {fmt(connected['max'] if connected else None, 0)}",
        f"{fmt(cpu['median'] if cpu else None, 0)} us/delivery",
        None if ratio is None else (ratio >= 0.5 and everyone),
        f"{fmt(_pair_ratio(data, 'fanout', 'longpoll', 'sio-polling', 'deliv_s'))}x sio-polling",
    )
    for config in ("websocket", "sse", "longpoll"):
        entry = _get(s, "memory", config, "kib_per_conn")
        ratio = entry.get("ratio") if entry else None
        ceiling = MEMORY_CEILING[config]
        base = _get(s, "memory", ceiling, "kib_per_conn")
        peer = _get(s, "memory", "sio-ws", "kib_per_conn")
        add(
            f"idle memory per connection, {config}",
            f"<= 1.15x {ceiling}",
            ratio,
            f"{fmt(entry['median'] if entry else None, 1)} KiB "
            f"({ceiling}: {fmt(base['median'] if base else None, 1)} KiB)",
            "",
            None if ratio is None else ratio <= 1.15,
            f"sio-ws {fmt(peer['median'] if peer else None, 1)} KiB",
        )
    idle = (data["results"].get("idle", {}).get("mixed") or [None])[0]
    if idle:
        add(
            "idle connections held by one process, heartbeats on",
            "20,000 mixed, server CPU < 50% of a core",
            None,
            f"{idle['open_at_end']:,} open ({idle['websocket']:,} WS, {idle['sse']:,} SSE, "
            f"{idle['longpoll']:,} long-poll), {idle['rss_mib']:,.0f} MiB RSS",
            f"{idle['srv_pct']:.1f}% of a core over {idle['window_s']:.0f} s",
            idle["srv_pct"] < 50 and idle["open_at_end"] >= 20000,
        )
    return out


MESSAGE_COLUMNS = [
    ("rtt_p50_ms", "RTT p50 ms", 3),
    ("rtt_p99_ms", "RTT p99 ms", 3),
    ("pipe_msg_s", "pipelined msg/s", 0),
    ("pipe_srv_us", "srv us/msg (pipe)", 0),
    ("c50_msg_s", "50-client msg/s", 0),
    ("c50_srv_us", "srv us/msg (50c)", 0),
    ("c50_p99_ms", "50c p99 ms", 1),
    ("up_msg_s", "up msg/s", 0),
    ("up_srv_us", "srv us/msg (up)", 0),
    ("down_got", "down: got", 0),
    ("down_msg_s", "down msg/s", 0),
    ("down_srv_us", "srv us/msg (down)", 0),
]
FANOUT_COLUMNS = [
    ("connected", "connected", 0),
    ("all_ok", "got all", 0),
    ("last_s", "last client s", 2),
    ("deliv_s", "deliveries/s", 0),
    ("lat_p50_ms", "lat p50 ms", 0),
    ("lat_p99_ms", "lat p99 ms", 0),
    ("srv_us", "srv us/delivery", 0),
    ("srv_pct", "srv CPU%", 0),
    ("cli_pct", "clients CPU%", 0),
]
MEMORY_COLUMNS = [
    ("opened", "open", 0),
    ("base_mib", "RSS base MiB", 1),
    ("final_mib", "RSS final MiB", 1),
    ("kib_per_conn", "KiB/conn", 1),
]
WIRE_COLUMNS = [
    ("up_b", "up: bytes/msg", 0),
    ("up_ack_b", "up: ack bytes/msg", 0),
    ("down_b", "down: bytes/msg (one at a time)", 0),
    ("down_req_b", "down: request bytes/msg", 0),
    ("burst_down_b", "down: bytes/msg (burst of 100)", 0),
    ("burst_req_b", "burst: request bytes/msg", 1),
]
CONNECT_COLUMNS = [
    ("p50_ms", "p50 ms", 1),
    ("min_ms", "min ms", 1),
    ("max_ms", "max ms", 1),
    ("ok", "ok", 0),
    ("failed", "failed", 0),
]


def _table(
    summary: Summary,
    workload: str,
    columns: list[tuple[str, str, int]],
    ratio_keys: list[tuple[str, str]],
    data: dict[str, Any],
) -> list[str]:
    configs = summary.get(workload, {})
    if not configs:
        return []
    present = [c for c in columns if any(c[0] in f for f in configs.values())]
    head = ["config", *[c[1] for c in present], *[r[1] for r in ratio_keys]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for config, figures in configs.items():
        row = [config]
        row += [cell(figures.get(key), digits) for key, _, digits in present]
        row += [ratio_cell(figures.get(key)) for key, _ in ratio_keys]
        if workload == "connect":
            runs = [r for r in data["results"][workload][config] if r]
            if runs:
                transport = runs[-1].get("_transport", "")
                error = runs[-1].get("_error", "")
                row[0] = f"{config} -> {transport}" + (" (fails)" if not runs[-1]["ok"] else "")
                if error and not runs[-1]["ok"]:
                    row[0] += f": {error[:70]}"
        lines.append("| " + " | ".join(row) + " |")
    return lines


def markdown(data: dict[str, Any]) -> str:
    """The report: goals first, then one table per workload."""
    meta = data["meta"]
    m = meta["machine"]
    s: Summary = data["summary"]
    v = m["versions"]
    lines = [
        "# Transport comparison",
        "",
        "<!-- --8<-- [start:header] -->",
        "",
        f"**Command:** `{meta['command']}` ({meta['duration_s'] / 60:.0f} min, "
        f"{meta['repeat']} repetition(s)).  ",
        f"**Date:** {meta['date']}; commit `{m['commit']}`.  ",
        f"**Machine:** {m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB, {m['os']}, "
        f"Python {m['python']}; client and server processes share the cores.  ",
        "**Versions:** " + ", ".join(f"{k} {val}" for k, val in v.items()) + ".",
        "",
        "<!-- --8<-- [end:header] -->",
        "",
        "Cells are **median [min–max]** over repetitions; a fresh server process per "
        "measurement; configurations interleaved inside each repetition. Ratios are computed "
        "inside each repetition against the ceiling (raw Quart WebSocket on the same server; "
        "for idle memory the raw route of the same kind) and then the median is taken: above "
        "1 is more for rates, below 1 is less for times, CPU, bytes and memory. "
        "`srv us/msg` is server CPU time (user + system) per message: the figure least "
        "disturbed by a shared machine.",
        "",
        "<!-- --8<-- [start:tables] -->",
        "",
    ]
    for note in meta.get("notes", []):
        lines += [f"> {note}", ""]
    if data.get("goals"):
        lines += [
            "### Goals (issue #7)",
            "",
            "| goal | target | ratio | measured | server CPU | vs peer | met |",
            "|---|---|---|---|---|---|---|",
        ]
        for g in data["goals"]:
            met = {True: "yes", False: "**no**", None: "-"}[g["met"]]
            lines.append(
                f"| {g['goal']} | {g['target']} | {fmt(g['ratio'])} | {g['absolute']} | "
                f"{g['cpu']} | {g['peer']} | {met} |"
            )
        lines.append("")
    sections = [
        (
            "connect",
            "Connect time: from `connect()` (negotiate) to the first message",
            CONNECT_COLUMNS,
            [("p50_ms", "p50 / raw-ws direct")],
        ),
        (
            "messages",
            "Messages: round trip, echo throughput, upstream, downstream",
            MESSAGE_COLUMNS,
            [
                ("pipe_msg_s", "pipelined / ceiling"),
                ("c50_msg_s", "50c / ceiling"),
                ("rtt_p50_ms", "RTT p50 / ceiling"),
                ("pipe_srv_us", "srv us (pipe) / ceiling"),
            ],
        ),
        (
            "fanout",
            "Broadcast fan-out",
            FANOUT_COLUMNS,
            [("deliv_s", "deliveries/s / ceiling"), ("srv_us", "srv us / ceiling")],
        ),
        (
            "memory",
            "Idle memory per connection (server RSS growth)",
            MEMORY_COLUMNS,
            [("kib_per_conn", "KiB/conn / raw of its kind")],
        ),
        (
            "wire",
            "Bytes on the wire per 100-byte message",
            WIRE_COLUMNS,
            [("up_b", "up / raw-ws"), ("down_b", "down / raw-ws")],
        ),
    ]
    for workload, title, columns, ratios in sections:
        table = _table(s, workload, columns, ratios, data)
        if table:
            lines += [f"### {title}", "", *table, ""]
    idle = (data["results"].get("idle", {}).get("mixed") or [None])[0]
    if idle:
        lines += [
            "### Idle connections, heartbeats on (library only, one server process)",
            "",
            "| open at end | WebSocket | SSE | long-poll | failed | connect s | server CPU % "
            "| clients CPU % | server RSS MiB | KiB/conn |",
            "|---|---|---|---|---|---|---|---|---|---|",
            f"| {idle['open_at_end']:,} | {idle['websocket']:,} | {idle['sse']:,} | "
            f"{idle['longpoll']:,} | {idle['failed']:,} | {idle['connect_s']:.0f} | "
            f"{idle['srv_pct']:.1f} | {idle['cli_pct']:.0f} | {idle['rss_mib']:,.0f} | "
            f"{idle['kib_per_conn']:.1f} |",
            "",
        ]
    lines += _uvicorn_section(data)
    if data.get("errors"):
        lines += ["### Errors", ""]
        for e in data["errors"]:
            lines.append(f"* {e['workload']} {e['config']} rep {e['rep']}: `{e['error']}`")
        lines.append("")
    lines += ["<!-- --8<-- [end:tables] -->", ""]
    return "\n".join(lines)


UVICORN_FIGURES = [
    ("messages", "pipe_msg_s", "pipelined msg/s"),
    ("messages", "c50_msg_s", "50-client msg/s"),
    ("messages", "c50_srv_us", "srv us/msg (50c)"),
    ("messages", "rtt_p50_ms", "RTT p50"),
    ("fanout", "deliv_s", "fan-out deliveries/s"),
    ("fanout", "srv_us", "srv us/delivery"),
    ("memory", "kib_per_conn", "KiB/conn"),
]


def _uvicorn_section(data: dict[str, Any]) -> list[str]:
    """Same configuration on uvicorn / on Hypercorn, same repetition (when both ran)."""
    rows = []
    names = sorted(
        {
            c.partition("@")[0]
            for configs in data["results"].values()
            for c in configs
            if c.endswith("@uvicorn")
        }
    )
    for name in names:
        cells = []
        for workload, key, _ in UVICORN_FIGURES:
            ratio = _pair_ratio(data, workload, f"{name}@uvicorn", name, key)
            absolute = _get(data["summary"], workload, f"{name}@uvicorn", key)
            cells.append(
                "-"
                if ratio is None
                else f"{ratio:.2f}x ({fmt(absolute['median']) if absolute else '-'})"
            )
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    if not rows:
        return []
    head = ["config", *[label for _, _, label in UVICORN_FIGURES]]
    return [
        "### uvicorn / Hypercorn",
        "",
        "<!-- --8<-- [start:uvicorn] -->",
        "",
        "Each cell: the figure on uvicorn divided by the same configuration's on Hypercorn in "
        "the same repetition (median), and the uvicorn figure itself.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
        *rows,
        "",
        "<!-- --8<-- [end:uvicorn] -->",
        "",
    ]


def missing(data: dict[str, Any]) -> list[str]:
    """Measurements that produced no figures (errors, or a NaN where a number belongs)."""
    out = [f"{e['workload']} {e['config']} rep {e['rep']}: {e['error']}" for e in data["errors"]]
    for workload, configs in data["results"].items():
        for config, runs in configs.items():
            for index, run in enumerate(runs):
                if run is None:
                    continue
                for key, value in run.items():
                    if isinstance(value, float) and math.isnan(value) and not key.startswith("_"):
                        out.append(f"{workload} {config} rep {index + 1}: {key} is NaN")
    return out


# --- charts -------------------------------------------------------------------------------

COLORS = {
    "raw": "#9e9e9e",
    "websocket": "#1f77b4",
    "sse": "#2ca02c",
    "longpoll": "#ff7f0e",
    "auto": "#17becf",
    "sio": "#d62728",
}


def color(config: str) -> str:
    name = config.split("/")[-1].partition("@")[0]
    if name.startswith("raw"):
        return COLORS["raw"]
    if name.startswith("sio"):
        return COLORS["sio"]
    return COLORS.get(name, "#7f7f7f")


def _bars(ax: Any, s: Summary, workload: str, key: str, title: str, log: bool = False) -> None:
    configs = [c for c, f in s.get(workload, {}).items() if key in f]
    med = [s[workload][c][key]["median"] for c in configs]
    low = [m - s[workload][c][key]["min"] for c, m in zip(configs, med, strict=True)]
    high = [s[workload][c][key]["max"] - m for c, m in zip(configs, med, strict=True)]
    ax.bar(range(len(configs)), med, yerr=[low, high], capsize=3, color=[color(c) for c in configs])
    ax.set_xticks(range(len(configs)))
    ax.set_xticklabels(configs, rotation=35, ha="right", fontsize=8)
    ax.set_title(title, fontsize=10)
    if log:
        ax.set_yscale("log")
    ax.grid(axis="y", alpha=0.3)
    for i, value in enumerate(med):
        ax.annotate(fmt(value), (i, value), ha="center", va="bottom", fontsize=7)


def charts(data: dict[str, Any], out: Path) -> list[Path]:
    """PNG charts of the summary into ``out``; the paths written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s: Summary = data["summary"]
    written: list[Path] = []
    caption = (
        f"{data['meta']['date']} · {data['meta']['machine']['cores']} cores · "
        f"median, bars min–max over {data['meta']['repeat']} repetition(s)"
    )

    def save(fig: Any, name: str) -> None:
        fig.text(0.99, 0.005, caption, ha="right", va="bottom", fontsize=7, color="#555")
        fig.tight_layout(rect=(0, 0.02, 1, 1))
        path = out / name
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

    if "messages" in s:
        fig, axes = plt.subplots(2, 3, figsize=(15, 8.5))
        _bars(axes[0][0], s, "messages", "pipe_msg_s", "echo, 1 client pipelined: msg/s")
        _bars(axes[0][1], s, "messages", "c50_msg_s", "echo, 50 clients: msg/s")
        _bars(axes[0][2], s, "messages", "rtt_p50_ms", "round trip p50, 1 client: ms")
        _bars(axes[1][0], s, "messages", "pipe_srv_us", "server CPU us/msg (pipelined echo)")
        _bars(axes[1][1], s, "messages", "c50_srv_us", "server CPU us/msg (50-client echo)")
        _bars(axes[1][2], s, "messages", "down_msg_s", "server to client burst: msg/s")
        save(fig, "messages.png")
    if "fanout" in s:
        fig, axes = plt.subplots(1, 3, figsize=(15, 4.8))
        _bars(axes[0], s, "fanout", "deliv_s", "fan-out to 1,000: deliveries/s")
        _bars(axes[1], s, "fanout", "last_s", "time until the last client has all: s")
        _bars(axes[2], s, "fanout", "srv_us", "server CPU us per delivery")
        save(fig, "fanout.png")
    if "memory" in s:
        fig, ax = plt.subplots(figsize=(8, 4.5))
        _bars(ax, s, "memory", "kib_per_conn", "idle connection: server KiB (RSS growth)")
        save(fig, "memory.png")
    if "wire" in s:
        fig, axes = plt.subplots(1, 3, figsize=(15, 4.8))
        _bars(axes[0], s, "wire", "up_b", "client to server: bytes per 100-byte message")
        _bars(axes[1], s, "wire", "down_b", "server to client, one at a time: bytes/msg")
        _bars(axes[2], s, "wire", "burst_down_b", "server to client, burst of 100: bytes/msg")
        save(fig, "wire.png")
    if "connect" in s:
        fig, ax = plt.subplots(figsize=(13, 5))
        _bars(ax, s, "connect", "p50_ms", "connect to first message, p50 ms (log)", log=True)
        save(fig, "connect.png")
    return written
