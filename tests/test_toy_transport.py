"""A fourth transport through the registries alone passes the channel contract suite.

``tests/toy_transport.py`` adds ``loopback`` (the protocol in an envelope of its own, on its
own route) with one carrier and one client connection, registered with one call each: nothing
in ``transports/core``, ``transports/protocol`` or ``transports/server`` knows it. The whole
contract suite then runs over it, in-process, on real Hypercorn and on Redis.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_contract_suite_passes_on_a_toy_transport() -> None:
    """Every contract scenario, in every serving mode, passes on ``loopback``."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "tests/test_channel_contract.py",
            "-k",
            "loopback",
            "-q",
            "-p",
            "no:cacheprovider",
        ],
        cwd=ROOT,
        env={**os.environ, "TRANSPORTS_TOY": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    tail = result.stdout[-3000:]
    assert result.returncode == 0, tail + result.stderr[-2000:]
    passed = re.search(r"(\d+) passed", tail)
    assert passed is not None, tail
    # Every scenario of the suite, in each of its three serving modes.
    scenarios = len(
        re.findall(r"^async def test_", (ROOT / "tests/test_channel_contract.py").read_text(), re.M)
    )
    assert int(passed.group(1)) == 3 * scenarios, tail


def test_toy_is_not_in_the_default_suite() -> None:
    """The toy transport is registered only for that run (the registries stay as shipped)."""
    from transports.carriers import names
    from transports.client.registry import CONNECTIONS

    assert "loopback" not in names()
    assert "loopback" not in CONNECTIONS
