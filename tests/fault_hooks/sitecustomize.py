"""Fault injection for job processes, kept out of the library.

A test that wants a job to die at a given point puts this folder on the job's ``PYTHONPATH`` and
names the fault in ``SKEWLESS_TEST_FAULT``; Python imports ``sitecustomize`` at start-up, so the
job (``python jobs/...`` or ``spark-submit jobs/...``) runs with the hook installed.

``kill-before-commit``: SIGKILL once the embedded writer has moved the staged files into the
table but before it writes the Delta log entry, the worst moment for a crash.
"""

from __future__ import annotations

import os
import signal
from typing import Any

FAULT_ENV = "SKEWLESS_TEST_FAULT"

if os.environ.get(FAULT_ENV) == "kill-before-commit":
    from skewless.offline import delta

    def _killed_before_commit(*args: Any, **kwargs: Any) -> int:
        os.kill(os.getpid(), signal.SIGKILL)
        raise AssertionError("unreachable: the process was killed")

    delta.EmbeddedDeltaTables._commit = _killed_before_commit  # type: ignore[method-assign]
