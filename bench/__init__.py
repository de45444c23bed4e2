"""Benchmark results. The harness is ``transports.bench`` (``python -m transports.bench``).

``bench/results/`` holds the raw JSON, the Markdown tables and the PNG charts of the run the
documentation shows (``docs/tutorial.md``); ``bench/results/tmp/`` (ignored by git) is where
``--quick`` writes.
"""
