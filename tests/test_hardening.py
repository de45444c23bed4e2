"""The hardening adapter: its patches of wsproto and Hypercorn private methods are in place,
and a release that changes a patched method fails here, loudly, before it fails in production.
"""

from __future__ import annotations

import importlib.metadata

import pytest
from hypercorn.protocol.ws_stream import WSStream
from wsproto.extensions import PerMessageDeflate

from transports.server import hardening

TARGETS = {
    "PerMessageDeflate.frame_inbound_payload_data": ("wsproto", PerMessageDeflate),
    "PerMessageDeflate.frame_inbound_complete": ("wsproto", PerMessageDeflate),
    "WSStream._handle_events": ("hypercorn", WSStream),
}


@pytest.mark.parametrize("key", sorted(TARGETS))
def test_patched_methods_are_the_code_the_patches_know(key: str) -> None:
    """Each private method the hardening replaces is, in the installed release, the code the
    replacement was written against. When this fails, a wsproto or Hypercorn release changed
    it: review transports/server/hardening.py against the new code, then add its fingerprint
    to ``KNOWN``."""
    package, owner = TARGETS[key]
    name = key.split(".", 1)[1]
    original = hardening.ORIGINALS.get(key, owner.__dict__[name])
    found = hardening.fingerprint(original)
    assert found in hardening.KNOWN[key], (
        f"{package} {importlib.metadata.version(package)} changed {key} "
        f"(fingerprint {found}): review transports/server/hardening.py"
    )


def test_patches_apply_in_a_fresh_process() -> None:
    """In a new process, building an app with the defaults puts every patch in place."""
    import subprocess
    import sys

    code = (
        "from quart import Quart\n"
        "from transports import Realtime\n"
        "from transports.server import hardening\n"
        "Realtime(Quart('x'))\n"
        "assert hardening.PATCHED and all(hardening.PATCHED.values()), hardening.PATCHED\n"
        "assert set(hardening.PATCHED) == set(hardening.KNOWN), hardening.PATCHED\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_an_unknown_release_is_skipped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    """A method that is not the known code is left alone (and said so), never half-patched."""

    class Changed:
        def method(self) -> int:
            return 2

    hardening.KNOWN["Changed.method"] = frozenset({"0000000000000000"})
    try:
        assert hardening._replace(Changed, "method", lambda self: 3) is False
        assert Changed().method() == 2
        assert hardening.PATCHED["Changed.method"] is False
        assert "hardening of Changed.method skipped" in caplog.text
    finally:
        hardening.KNOWN.pop("Changed.method")
        hardening.PATCHED.pop("Changed.method", None)
