"""Benchmark results. The harness is ``transports.bench`` (``python -m transports.bench``).

``bench/results/`` holds the raw JSON, the Markdown tables and the PNG charts of the run the
documentation shows (``docs/choosing-a-transport.md``), and the Markdown snippets the docs
include, rendered from the JSON and ``bench/templates/``; ``bench/results/tmp/`` (ignored by
git) is where ``--quick`` writes.
"""
