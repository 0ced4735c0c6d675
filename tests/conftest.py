"""Shared fixtures: the compiled C workloads, and a guard against hung tests."""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from collector_guard import unavailable_reason
from workloads import build

LINUX_COLLECTORS = ("ptrace", "ebpf")


@pytest.fixture(scope="session")
def groundtruth() -> Path:
    """tests/workloads/groundtruth.c, compiled (see its header for its arguments)."""
    return build("groundtruth")


class TimeLimitExceeded(Exception):
    """A test ran past its time limit (raised by SIGALRM)."""


@pytest.fixture
def time_limit() -> Iterator[None]:
    """Fail a test that runs over 60 s instead of hanging the suite.

    The exception is raised where the test is (a trace loop, say), so the
    code under test gets to clean up as it would on any other exception.
    """

    def expired(_signum: int, _frame: FrameType | None) -> None:
        raise TimeLimitExceeded("test ran over its 60 s limit")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(60)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(params=LINUX_COLLECTORS)
def collector(request: pytest.FixtureRequest) -> str:
    """Each Linux collector's name in turn; skipped with its reason where it cannot
    run (a failure instead under STPROF_REQUIRE)."""
    name: str = request.param
    reason = unavailable_reason(name)
    if reason:
        pytest.skip(f"{name} collector unavailable here: {reason}")
    return name
