"""docs/grafana-dashboard.json: importable JSON whose queries use only metrics the server exposes.

The names come from a live exposition (``Realtime.prometheus()``, what ``metrics_path``
serves), so a renamed metric breaks this test instead of leaving a dashboard panel empty; and
every metric family the server exposes has a panel.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from quart import Quart

from transports.server.extension import Realtime

DASHBOARD = Path(__file__).resolve().parents[1] / "docs" / "grafana-dashboard.json"

SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
}
"""The series names a family of each type exposes (the ``_created`` samples aside)."""


def exposed() -> dict[str, str]:
    """``{series name: family}`` for every series the server's exposition declares."""
    app = Quart(__name__)
    realtime = Realtime(app, secret_key=b"dashboard-test-secret-key-32b", metrics_path="/metrics")
    text = realtime.prometheus().decode()
    names: dict[str, str] = {}
    for family, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE):
        base = family.removesuffix("_total") if kind == "counter" else family
        for suffix in SUFFIXES[kind]:
            names[base + suffix] = family
    return names


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return [panel for panel in found if panel.get("type") != "row"]


def queried(dashboard: dict[str, Any]) -> set[str]:
    """Every ``transports_*`` name in the panels' queries and the variables' queries."""
    texts = [target["expr"] for panel in panels(dashboard) for target in panel["targets"]]
    texts += [json.dumps(variable.get("query")) for variable in dashboard["templating"]["list"]]
    return {name for text in texts for name in re.findall(r"\btransports_[a-z_]+\b", text)}


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    result: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return result


def test_every_metric_the_dashboard_queries_is_exposed(dashboard: dict[str, Any]) -> None:
    names = exposed()
    assert "transports_delivery_seconds_bucket" in names, names
    unknown = queried(dashboard) - set(names)
    assert not unknown, f"not exposed by the server: {sorted(unknown)}"


def test_every_exposed_metric_has_a_panel(dashboard: dict[str, Any]) -> None:
    names = exposed()
    families = set(names.values())
    used = {names[name] for name in queried(dashboard) if name in names}
    assert families - used == set()


def test_the_dashboard_is_importable_with_a_prometheus_datasource_variable(
    dashboard: dict[str, Any],
) -> None:
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert dashboard["title"] and dashboard["uid"] and "id" not in dashboard
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels(dashboard):
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"] and panel["description"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
            assert target["expr"].count("(") == target["expr"].count(")"), target["expr"]
            # Every selector is filtered by the process variable, so the dashboard can zoom in.
            assert re.findall(r"transports_[a-z_]+\{", target["expr"]), target["expr"]
            for selector in re.findall(r"transports_[a-z_]+\{([^}]*)\}", target["expr"]):
                assert 'instance=~"$instance"' in selector, target["expr"]
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24, panel["title"]
