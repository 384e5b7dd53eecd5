"""Keep OpenVINO's and NNCF's usage telemetry off in this process.

``import openvino``, ``ov.convert_model`` and NNCF send usage events to Google Analytics
unless the user opted out (``opt_in_out --opt_out``; https://docs.openvino.ai, "OpenVINO
Telemetry"), and write a client id under ``~/intel``. Each event is sent from a forked
process that is given 3 s and then terminated. Without network (a production line)
``convert_model`` took 1.5-3.6 s here against 0.8-1.1 s declined
(docs/experiments/reliability.md, last section). In a
process with other threads running (torch's), the fork can deadlock: a test process
hung for 25 min at exit here, joining such a child stuck in ``getaddrinfo``. An SDK should
not send a user's usage anywhere either.

:func:`openvino_telemetry_declined` wraps those calls: while it is open, ``CI=true`` is set,
so the library's own "disable in CI" check (which both tools ask for) declines whenever
they configure or re-configure the process-wide ``openvino_telemetry.Telemetry``
singleton, and nothing is written to the user's home folder; on leaving, the singleton's
``consent`` is set to False, in case a tool configured it earlier outside the block.
``FRACTALAD_OPENVINO_TELEMETRY=1`` leaves OpenVINO's own setting alone.

``import openvino`` itself configures it and sends an "import" event (openvino/tools/ovc/
__init__.py), on edge devices too. So ``extras.require`` imports ``openvino`` and ``nncf``
inside the block (every import of them in the SDK goes through it), and
``export/openvino.py`` wraps ``ov.convert_model``, which configures it again under its own
name.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator

#: set to "1" to keep OpenVINO's own telemetry setting (its consent file decides)
KEEP_TELEMETRY_ENV = "FRACTALAD_OPENVINO_TELEMETRY"

_lock = threading.RLock()  # os.environ is process-wide; nested blocks (export -> quantize) re-enter


@contextlib.contextmanager
def openvino_telemetry_declined() -> Iterator[bool]:
    """Run OpenVINO/NNCF tools with their telemetry declined; yields False where the env keeps OpenVINO's setting."""
    if os.environ.get(KEEP_TELEMETRY_ENV) == "1":
        yield False
        return
    with _lock:
        previous = os.environ.get("CI")
        os.environ["CI"] = "true"
        try:
            yield True
        finally:
            if previous is None:
                os.environ.pop("CI", None)
            else:
                os.environ["CI"] = previous
            _decline_configured_telemetry()


def _decline_configured_telemetry() -> None:
    try:
        from openvino_telemetry import Telemetry
    except ImportError:  # not installed: the tools use their stubs and send nothing
        return
    try:
        Telemetry().consent = False  # the instance a tool configured
    except RuntimeError:  # none configured yet
        pass


__all__ = ["KEEP_TELEMETRY_ENV", "openvino_telemetry_declined"]
