"""Whether a collector's tests may run here, and CI's guard against silent skips.

Tests of a collector skip with its reason where it cannot run (not root, no
bcc...).  CI sets STPROF_REQUIRE=ebpf,ptrace: there a collector that cannot
run is an error, so a broken set-up or module can never pass as a skip.
"""

from __future__ import annotations

import os


def required() -> set[str]:
    return {name for name in os.environ.get("STPROF_REQUIRE", "").split(",") if name}


def unavailable_reason(name: str) -> str:
    """'' when collector ``name`` can run here, else why not.

    Raises when STPROF_REQUIRE names it, so the test run fails instead of
    skipping.
    """
    from collectors import collector_class

    available = collector_class(name).availability()
    if available.ok:
        return ""
    if name in required():
        raise RuntimeError(
            f"the {name} collector is required here (STPROF_REQUIRE) but cannot run: "
            f"{available.reason}"
        )
    return available.reason
