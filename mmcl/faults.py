"""Fault injection for the fault-tolerance tests: `maybe_fault("point")` kills this process with SIGKILL
when $MMCL_FAULT_AT names that point (comma-separated list allowed). A no-op unless the variable is set."""

import os
import signal

ENV = "MMCL_FAULT_AT"


def maybe_fault(point: str) -> None:
    wanted = os.environ.get(ENV)
    if wanted and point in wanted.split(","):
        os.kill(os.getpid(), signal.SIGKILL)
