"""The Profile's file format: round trip, versioning, refusal of bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from profiler.errors import EXIT_USAGE, InputError
from profiler.model import (
    SCHEMA,
    Budget,
    Faults,
    Profile,
    Stacks,
    SyscallStats,
    bucket_bounds,
    log2_bucket,
)


def sample_profile() -> Profile:
    profile = Profile(command=["dd", "if=/dev/zero"], exit_status=0, collector="ptrace",
                      wall_ns=1234)
    profile.syscall("read").record(1500)
    profile.syscall("read").record(3)
    profile.syscall("chdir").record(700, "ENOENT")
    profile.faults = Faults(count=3, minor=3, method="rusage")
    profile.budget = Budget(lifetime_ns=100, user_ns=60, syscall_cpu_ns=30, unexplained_ns=10)
    profile.stacks = Stacks(folded={"a;b;clear_page_erms": 7, "a;c": 1}, samples=8)
    return profile


@pytest.mark.parametrize("value,index", [(0, 0), (1, 1), (2, 2), (3, 2), (4, 3), (1023, 10),
                                         (1024, 11)])
def test_log2_buckets_hold_their_bounds(value: int, index: int) -> None:
    assert log2_bucket(value) == index
    low, high = bucket_bounds(index)
    assert low <= value < high


def test_record_keeps_min_max_errors_and_hist() -> None:
    stats = SyscallStats()
    for duration in (5, 100, 7):
        stats.record(duration)
    stats.record(9, "EINTR")
    assert (stats.calls, stats.errors, stats.min_ns, stats.max_ns) == (4, 1, 5, 100)
    assert stats.errnos == {"EINTR": 1}
    assert sum(stats.hist) == 4 and stats.hist[log2_bucket(100)] == 1


def test_json_round_trip(tmp_path: Path) -> None:
    profile = sample_profile()
    path = tmp_path / "p.json"
    profile.save(path)
    loaded = Profile.load(path)
    assert loaded == profile
    assert json.loads(path.read_text())["schema"] == SCHEMA


def test_stable_keys() -> None:
    data = sample_profile().to_dict()
    for key in ("schema", "command", "exit_status", "collector", "wall_ns", "rusage",
                "syscalls", "processes", "faults", "notes"):
        assert key in data
    assert set(data["rusage"]) == {"user_ns", "sys_ns", "minflt", "majflt", "nvcsw", "nivcsw"}
    assert {"calls", "errors", "errnos", "total_ns", "min_ns", "max_ns", "hist"} <= set(
        data["syscalls"]["read"])
    assert {"count", "user", "in_syscall", "minor", "major", "total_ns", "method"} <= set(
        data["faults"])


def test_budget_parts_are_the_documented_eight() -> None:
    assert set(Budget().parts()) == {
        "user_ns", "syscall_cpu_ns", "syscall_blocked_ns", "fault_user_ns",
        "fault_in_syscall_ns", "irq_ns", "runqueue_ns", "unexplained_ns"}


def test_top_functions_by_leaf_and_inclusive_counts() -> None:
    stacks = sample_profile().stacks
    assert stacks is not None
    assert stacks.top_functions(1) == [("clear_page_erms", 7)]
    assert stacks.inclusive() == {"a": 8, "b": 7, "clear_page_erms": 7, "c": 1}


@pytest.mark.parametrize("samples,hz,hint", [
    (6, 999, "raise the sampling rate (-F 4999)"),
    (99, 4999, "profile a longer run of it"),
    (100, 999, None),
])
def test_text_report_says_when_stack_samples_are_few(samples: int, hz: int,
                                                     hint: str | None) -> None:
    from reports.text import TextRenderer

    profile = sample_profile()
    profile.stacks = Stacks(mode="faults", frequency_hz=hz, samples=samples,
                            folded={"a;b;clear_page_erms": samples})
    text = TextRenderer().render(profile)
    assert f"({samples} samples at {hz} Hz;" in text
    if hint is None:
        assert "samples: shares this coarse are rough" not in text
    else:
        assert f"Only {samples} samples: shares this coarse are rough; for more, {hint}." in text


@pytest.mark.parametrize("text,message", [
    ("", "not valid JSON"),
    ('{"schema": "stprof/1", "command": [', "not valid JSON"),
    ("[1, 2]", "not a stprof profile"),
    ('{"schema": "stprof/2"}', "unsupported schema 'stprof/2'"),
    ('{"hello": 1}', "unsupported schema None"),
    ('{"schema": "stprof/1", "command": []}', "missing key"),
])
def test_bad_input_is_one_line_usage_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(InputError) as caught:
        Profile.load(path)
    assert message in caught.value.one_line()
    assert "\n" not in caught.value.one_line()
    assert caught.value.exit_status == EXIT_USAGE


def test_truncated_real_profile_is_refused(tmp_path: Path) -> None:
    text = sample_profile().to_json()
    path = tmp_path / "cut.json"
    path.write_text(text[: len(text) // 2])
    with pytest.raises(InputError, match="not valid JSON"):
        Profile.load(path)


def test_unknown_keys_are_ignored_and_wrong_types_refused(tmp_path: Path) -> None:
    data = sample_profile().to_dict()
    data["faults"]["added_later"] = 1
    data["syscalls"]["read"]["added_later"] = {"x": 1}
    data["added_later"] = []
    path = tmp_path / "newer.json"
    path.write_text(json.dumps(data))
    assert Profile.load(path) == sample_profile()
    data["syscalls"]["read"]["calls"] = "x"
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match=r"syscallstats.calls has the wrong type"):
        Profile.load(path)
