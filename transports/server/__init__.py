"""The I/O shell over Quart: the only package that imports ``quart``.

:class:`~transports.server.extension.Realtime` wires the core and the carriers into a Quart
app; :class:`~transports.server.edge.Edge` is the one ASGI edge in front of it (origin, CORS,
body limits, JSON errors); :mod:`~transports.server.run` serves with a drain on shutdown;
:mod:`~transports.server.testing` connects the Python client to an app in-process.
"""
