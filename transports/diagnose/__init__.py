"""The diagnose tool: ``python -m transports.diagnose URL`` runs each transport through the
network path to a server (proxies included) and says which work and why the others do not
(docs/operations.md, "Diagnose").

Modules: :mod:`~.observations` (what a probe saw, plain data), :mod:`~.verdict` (pure: from
observations to a verdict id), :mod:`~.catalogue` (``static/diagnose.json``: each verdict's
title, cause and fix, shared with the diagnose page), :mod:`~.probe` (the network probes, on
aiohttp), :mod:`~.report` (JSON and text) and :mod:`~.cli`. Client side: it imports
:mod:`transports.protocol` and aiohttp, nothing of the server.
"""

from __future__ import annotations
