"""Running a benchmark module of ``bench/`` the way its docs say, for the tests that check it."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def run_bench(
    module: str, args: list[str], out: Path, markdown: Callable[[dict[str, Any]], str]
) -> dict[str, Any]:
    """``python -m <module> <args> --out <out>`` from the project's root: it must succeed and
    write results.json, and the results.md beside it must be ``markdown`` of that JSON (which
    is returned)."""
    done = subprocess.run(
        [sys.executable, "-m", module, *args, "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=220,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    data: dict[str, Any] = json.loads((out / "results.json").read_text())
    assert (out / "results.md").read_text() == markdown(data)
    return data
