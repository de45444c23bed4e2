"""The in-process cost bench (``python -m transports.bench.inproc``): both sides of its
comparison answer every echo, so its ratio compares like with like."""

from __future__ import annotations

import argparse
import asyncio

from transports.bench.inproc import measure, measure_raw


async def test_library_and_raw_echo_answer_every_message() -> None:
    """50 sockets closed-loop through the library and through a bare Quart route: each echo
    is answered (a lost one would hang the loop; the bound turns that into a failure), and
    the CPU per echo of each is a positive figure."""
    args = argparse.Namespace(echo=500, fanout=2, messages=3, only_echo50=False)
    library = await asyncio.wait_for(measure(args), 60)
    raw = await asyncio.wait_for(measure_raw(500), 60)
    assert library["echo_us"] > 0 and library["echo50_us"] > 0 and raw > 0
    assert library["fanout_us"] > 0 and library["burst_us"] > 0
