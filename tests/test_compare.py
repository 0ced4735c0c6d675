"""The comparison logic on Profiles built here: statistics, verdicts, budgets, renderers.

The acceptance tests on real runs are in test_record_check.py; these pin
down the decisions (what is a regression, what is noise) and the file
formats, fast and without a collector.
"""

from __future__ import annotations

import itertools
import json
import random
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

import pytest

from profiler import stats
from profiler.budgets import check_budgets, parse_budget
from profiler.compare import (
    Comparison,
    Kind,
    Threshold,
    Verdict,
    check_comparable,
    compare_records,
    metric_kind,
)
from profiler.errors import InputError
from profiler.model import Budget, Faults, Profile, SyscallStats
from profiler.record import RECORD_SCHEMA, Record, Settings, new_record
from reports.compare_json import CompareJsonRenderer
from reports.compare_junit import CompareJunitRenderer
from reports.compare_markdown import CompareMarkdownRenderer
from reports.compare_text import CompareTextRenderer

COMMAND = ["dd", "if=/dev/zero", "of=/dev/null", "bs=1M", "count=64"]


# ------------------------------------------------------------------ builders
def make_profile(syscalls: dict[str, tuple[int, int]], *, faults: int = 100,
                 fault_ns: int | None = 50_000, wall_ns: int = 5_000_000,
                 budget: Budget | None = None, exit_status: int = 0) -> Profile:
    """A run: ``syscalls`` maps a name to (calls, total_ns)."""
    profile = Profile(command=list(COMMAND), exit_status=exit_status, collector="ebpf",
                      wall_ns=wall_ns, budget=budget)
    for name, (calls, total_ns) in syscalls.items():
        profile.syscalls[name] = SyscallStats(calls=calls, total_ns=total_ns)
    profile.faults = Faults(count=faults, total_ns=fault_ns, method="test")
    return profile


def make_runs(read_calls: Sequence[int], read_ns: Sequence[int],
              faults: Sequence[int] | None = None) -> list[Profile]:
    faults = faults or [100] * len(read_calls)
    return [make_profile({"read": (calls, ns), "write": (calls, ns // 2), "close": (3, 4_000)},
                         faults=fault)
            for calls, ns, fault in zip(read_calls, read_ns, faults)]


def make_record(runs: list[Profile], command: list[str] | None = None,
                collector: str = "ebpf") -> Record:
    return new_record(command or list(COMMAND), collector, Settings(repeat=len(runs)), runs)


def compare(base: list[Profile], current: list[Profile],
            threshold: Threshold | None = None) -> Comparison:
    return compare_records(make_record(base), make_record(current), threshold or Threshold())


def result(comparison: Comparison, metric: str) -> Verdict:
    for item in comparison.results:
        if item.metric == metric:
            return item.verdict
    raise AssertionError(f"{metric} not compared")


NOISY_MS = [10_000_000, 10_400_000, 9_700_000, 10_900_000, 9_900_000]


# ------------------------------------------------------------------ stats
def brute_force_p(current: Sequence[float], baseline: Sequence[float]) -> float:
    """Two-sided p of U by trying every split of the pooled values (the definition)."""
    pooled = [*current, *baseline]
    m, n = len(current), len(baseline)
    centre = m * n / 2
    observed = abs(stats.u_statistic(current, baseline) - centre)
    splits = list(itertools.combinations(range(m + n), m))
    extreme = 0
    for chosen in splits:
        first = [pooled[i] for i in chosen]
        rest = [pooled[i] for i in range(m + n) if i not in chosen]
        if abs(stats.u_statistic(first, rest) - centre) >= observed - 1e-9:
            extreme += 1
    return extreme / len(splits)


def test_u_test_exact_on_a_hand_computed_case() -> None:
    test = stats.mann_whitney([4, 5, 6], [1, 2, 3])
    assert test.u == 9
    assert test.method == "exact"
    assert test.p_value == pytest.approx(2 / 20)  # both extreme orderings of C(6,3)


@pytest.mark.parametrize("seed", range(12))
def test_u_test_matches_brute_force(seed: int) -> None:
    rng = random.Random(seed)
    m, n = rng.randint(2, 6), rng.randint(2, 6)
    with_ties = seed % 2 == 0

    def draw() -> float:
        return float(rng.randint(0, 4)) if with_ties else rng.random()

    current = [draw() for _ in range(m)]
    baseline = [draw() for _ in range(n)]
    assert stats.mann_whitney(current, baseline).p_value == pytest.approx(
        brute_force_p(current, baseline))


def test_u_test_monte_carlo_when_ties_and_many_runs() -> None:
    current = [float(i % 3) for i in range(14)]
    baseline = [float(i % 3) + 1 for i in range(14)]
    test = stats.mann_whitney(current, baseline)
    assert test.method == "monte-carlo"
    assert test.p_value < 0.05
    assert stats.mann_whitney(current, current).p_value > 0.5


def test_cliffs_delta_signs() -> None:
    assert stats.cliffs_delta([5, 6], [1, 2]) == 1.0
    assert stats.cliffs_delta([1, 2], [5, 6]) == -1.0
    assert stats.cliffs_delta([1, 2], [1, 2]) == 0.0


def test_smallest_p_value() -> None:
    assert stats.smallest_p_value(5, 5) == pytest.approx(2 / 252)
    assert stats.smallest_p_value(2, 2) == pytest.approx(2 / 6)


# ------------------------------------------------------------- verdicts
def test_unchanged_noisy_runs_are_no_regression() -> None:
    base = make_runs([1000] * 5, NOISY_MS)
    current = make_runs([1000, 1001, 1000, 1000, 999], list(reversed(NOISY_MS)))
    comparison = compare(base, current)
    assert not comparison.regressed, CompareTextRenderer().render(comparison)
    assert comparison.exit_status == 0


def test_ten_percent_more_calls_is_a_regression() -> None:
    comparison = compare(make_runs([1000] * 5, NOISY_MS), make_runs([1100] * 5, NOISY_MS))
    assert result(comparison, "read.calls") is Verdict.REGRESSION
    assert result(comparison, "total.calls") is Verdict.REGRESSION
    assert comparison.exit_status == 1


def test_count_tolerance_takes_the_baseline_spread_and_a_slack() -> None:
    base = make_runs([1000, 1010, 1005, 1002, 1008], NOISY_MS)
    within = make_runs([1030] * 5, NOISY_MS)  # 1010 + 3% of 1005 = 1040.15
    beyond = make_runs([1045] * 5, NOISY_MS)
    assert result(compare(base, within), "read.calls") is Verdict.SAME
    assert result(compare(base, beyond), "read.calls") is Verdict.REGRESSION


def test_one_outlying_current_run_does_not_fail_a_count() -> None:
    comparison = compare(make_runs([1000] * 5, NOISY_MS),
                         make_runs([1000, 1000, 2000, 1000, 1000], NOISY_MS))
    assert result(comparison, "read.calls") is Verdict.SAME


def test_fewer_calls_is_an_improvement_not_a_failure() -> None:
    comparison = compare(make_runs([1000] * 5, NOISY_MS), make_runs([500] * 5, NOISY_MS))
    assert result(comparison, "read.calls") is Verdict.IMPROVEMENT
    assert comparison.exit_status == 0


def test_new_syscall_beyond_the_slack_is_a_regression() -> None:
    base = make_runs([1000] * 5, NOISY_MS)
    current = make_runs([1000] * 5, NOISY_MS)
    for run in current:
        run.syscalls["fsync"] = SyscallStats(calls=10, total_ns=10_000)
    assert result(compare(base, current), "fsync.calls") is Verdict.REGRESSION


def test_time_change_needs_significance_and_size() -> None:
    base = make_runs([1000] * 5, NOISY_MS)
    slower = make_runs([1000] * 5, [int(v * 1.6) for v in NOISY_MS])
    slightly = make_runs([1000] * 5, [int(v * 1.1) for v in NOISY_MS])
    assert result(compare(base, slower), "read.total_ns") is Verdict.SLOWER
    assert result(compare(base, slightly), "read.total_ns") is Verdict.SAME


def test_slower_times_fail_only_from_the_failing_threshold() -> None:
    base = make_runs([1000] * 5, NOISY_MS)
    slower = make_runs([1000] * 5, [int(v * 1.6) for v in NOISY_MS])
    by_default = compare(base, slower)
    assert by_default.exit_status == 0
    assert {r.metric for r in by_default.slower} >= {"read.total_ns", "total.syscall_ns"}
    failing = compare(base, slower, Threshold(time_fail=0.5))
    assert result(failing, "read.total_ns") is Verdict.REGRESSION
    assert failing.exit_status == 1
    lenient = compare(base, slower, Threshold(time_fail=1.0))
    assert result(lenient, "read.total_ns") is Verdict.SLOWER
    slightly = make_runs([1000] * 5, [int(v * 1.1) for v in NOISY_MS])
    strict = compare(base, slightly, Threshold(time_fail=0.05))  # below time_relative
    assert result(strict, "read.total_ns") is Verdict.REGRESSION


def test_faster_times_are_improvements() -> None:
    base = make_runs([1000] * 5, NOISY_MS)
    faster = make_runs([1000] * 5, [v // 2 for v in NOISY_MS])
    assert result(compare(base, faster), "read.total_ns") is Verdict.IMPROVEMENT


def test_one_slow_run_is_not_significant() -> None:
    times = list(NOISY_MS)
    times[2] *= 5
    comparison = compare(make_runs([1000] * 5, NOISY_MS), make_runs([1000] * 5, times))
    assert result(comparison, "read.total_ns") is Verdict.SAME


def test_tiny_times_are_below_the_absolute_floor() -> None:
    base = make_runs([1000] * 5, NOISY_MS)
    current = make_runs([1000] * 5, NOISY_MS)
    for run in current:  # close: 4 us -> 40 us, significant and +900%, yet negligible
        run.syscalls["close"].total_ns = 40_000 + run.wall_ns % 7
    assert result(compare(base, current), "close.total_ns") is Verdict.SAME


def test_time_significance_is_reported() -> None:
    comparison = compare(make_runs([1000] * 5, NOISY_MS),
                         make_runs([1000] * 5, [v * 2 for v in NOISY_MS]))
    read = next(r for r in comparison.results if r.metric == "read.total_ns")
    assert read.significance is not None
    assert read.significance.p_value == pytest.approx(2 / 252)
    assert read.significance.cliffs_delta == 1.0
    assert read.significance.ratio == pytest.approx(2.0, rel=0.01)


def test_too_few_runs_for_times_is_said() -> None:
    comparison = compare(make_runs([1000] * 2, NOISY_MS[:2]),
                         make_runs([1000] * 2, [v * 3 for v in NOISY_MS[:2]]))
    assert result(comparison, "read.total_ns") is Verdict.SAME
    assert any("cannot be judged" in note for note in comparison.notes)


def test_new_exit_status_is_a_regression() -> None:
    base = make_runs([1000] * 5, NOISY_MS)
    current = make_runs([1000] * 5, NOISY_MS)
    current[0].exit_status = 1
    assert result(compare(base, current), "exit_status") is Verdict.REGRESSION


def test_budget_parts_are_compared_when_present() -> None:
    base = make_runs([1000] * 5, NOISY_MS)
    current = make_runs([1000] * 5, NOISY_MS)
    for run in base:
        run.budget = Budget(lifetime_ns=20_000_000, runqueue_ns=1_000_000 + run.wall_ns % 9)
    for index, run in enumerate(current):
        run.budget = Budget(lifetime_ns=20_000_000, runqueue_ns=9_000_000 + index)
    assert result(compare(base, current), "budget.runqueue_ns") is Verdict.SLOWER


def test_odd_syscall_names_are_judged_by_their_suffix() -> None:
    base = make_runs([1000] * 5, NOISY_MS)
    current = make_runs([1000] * 5, NOISY_MS)
    for run in current:  # e.g. a collector's "syscall_-1" for an unknown number
        run.syscalls["syscall_-1"] = SyscallStats(calls=1, total_ns=2_500)
    comparison = compare(base, current)
    odd = next(r for r in comparison.results if r.metric == "syscall_-1.total_ns")
    assert odd.kind is Kind.TIME
    assert not comparison.regressed


def test_metric_names() -> None:
    assert metric_kind("read.calls") is Kind.COUNT
    assert metric_kind("read.total_ns") is Kind.TIME
    assert metric_kind("total.syscall_ns") is Kind.TIME
    assert metric_kind("faults.count") is Kind.COUNT
    assert metric_kind("budget.runqueue_ns") is Kind.TIME
    assert metric_kind("read.bogus") is None
    assert metric_kind("total.bogus") is None
    assert metric_kind("calls") is None


# ------------------------------------------------------------- refusals
def test_other_command_is_refused() -> None:
    base = make_record(make_runs([1000] * 3, NOISY_MS[:3]))
    other = make_record(make_runs([1000] * 3, NOISY_MS[:3]), command=["true"])
    with pytest.raises(InputError, match="another command"):
        check_comparable(base, other, allow_collector_change=False)


def test_other_collector_is_refused_unless_allowed() -> None:
    base = make_record(make_runs([1000] * 3, NOISY_MS[:3]))
    other = make_record(make_runs([1000] * 3, NOISY_MS[:3]), collector="ptrace")
    with pytest.raises(InputError, match="allow-collector-change"):
        check_comparable(base, other, allow_collector_change=False)
    check_comparable(base, other, allow_collector_change=True)


def record_dict() -> dict[str, object]:
    return make_record(make_runs([1000] * 3, NOISY_MS[:3])).to_dict()


def test_record_round_trip(tmp_path: Path) -> None:
    record = make_record(make_runs([1000] * 3, NOISY_MS[:3]))
    record.save(tmp_path / "r.json")
    loaded = Record.load(tmp_path / "r.json")
    assert loaded.to_dict() == record.to_dict()
    assert loaded.settings.repeat == 3


@pytest.mark.parametrize(("mangle", "message"), [
    (lambda d: {**d, "schema": "stprof-record/2"}, "unsupported record schema"),
    (lambda d: d["runs"][0], "a single profile"),
    (lambda d: {"hello": "world"}, "not a stprof record"),
    (lambda d: [1, 2], "not a stprof record"),
    (lambda d: {**d, "runs": []}, "malformed"),
    (lambda d: {k: v for k, v in d.items() if k != "command"}, "missing key 'command'"),
    (lambda d: {**d, "runs": [{**d["runs"][0], "schema": "stprof/9"}]}, "unsupported schema"),
])
def test_bad_records_are_refused(tmp_path: Path, mangle, message: str) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(mangle(record_dict())))
    with pytest.raises(InputError, match=message):
        Record.load(path)


def test_truncated_record_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cut.json"
    text = json.dumps(record_dict())
    path.write_text(text[: len(text) // 2])
    with pytest.raises(InputError, match="not valid JSON"):
        Record.load(path)


def test_record_schema_name() -> None:
    assert record_dict()["schema"] == RECORD_SCHEMA == "stprof-record/1"


# ------------------------------------------------------------------ budgets
BUDGET = """
[max]
read.calls = 1050
"write.calls" = 2000
total.syscall_ns = "+10%"
faults.count = "+5%"
total.wall_ns = "1s"
close.total_ns = "+500us"

[min]
read.calls = 1

[tolerance]
counts = "5%"
times = "30%"
time_floor = "1ms"
fail_on_times = "50%"
alpha = 0.01
"""


def test_budget_file_parses_naturally() -> None:
    budget = parse_budget(BUDGET)
    texts = {f"{limit.metric} {limit.operator} {limit.written}" for limit in budget.limits}
    assert texts == {"read.calls <= 1050", "write.calls <= 2000", "total.syscall_ns <= +10%",
                     "faults.count <= +5%", "total.wall_ns <= 1s", "close.total_ns <= +500us",
                     "read.calls >= 1"}
    threshold = budget.threshold(Threshold())
    assert threshold.count_relative == pytest.approx(0.05)
    assert threshold.time_relative == pytest.approx(0.30)
    assert threshold.time_absolute_ns == 1_000_000
    assert threshold.alpha == 0.01
    assert threshold.time_fail == pytest.approx(0.5)


def test_budgets_pass_and_fail() -> None:
    budget = parse_budget(BUDGET)
    base = make_runs([1000] * 5, NOISY_MS)
    same = check_budgets(budget.limits, base, make_runs([1000] * 5, NOISY_MS))
    assert all(b.passed for b in same), same
    worse = check_budgets(budget.limits, base,
                          make_runs([1100] * 5, [int(v * 1.2) for v in NOISY_MS], [110] * 5))
    failed = {b.text for b in worse if not b.passed}
    assert failed == {"read.calls <= 1050", "total.syscall_ns <= +10%", "faults.count <= +5%"}


@pytest.mark.parametrize(("text", "message"), [
    ("[max]\nread.calls = ", "not valid TOML"),
    ("[max]\nread.bogus = 3", "unknown metric 'read.bogus'"),
    ("[maximum]\nread.calls = 3", "unknown table"),
    ("[max]\nread.calls = \"10%\"", "relative to the baseline"),
    ("[max]\nread.calls = \"2ms\"", "no time unit"),
    ("[max]\nread.calls = \"lots\"", "cannot read limit"),
    ("[max]\nread.calls = true", "must be a number"),
    ("[max]\nread.calls = -1", "negative"),
    ("", "no budget"),
    ("[tolerance]\nalpha = 2", "between 0 and 1"),
    ("[tolerance]\nfoo = 2", "has no 'foo'"),
])
def test_malformed_budgets_are_one_line(text: str, message: str) -> None:
    with pytest.raises(InputError, match=message) as caught:
        parse_budget(text, "b.toml")
    assert "\n" not in caught.value.one_line()
    assert caught.value.exit_status == 2


def test_relative_time_budget_needs_a_significant_excess() -> None:
    limits = parse_budget('[max]\nread.total_ns = "+10%"').limits
    base = make_runs([1000] * 5, NOISY_MS)
    one_slow_median = [9_700_000, 11_200_000, 11_300_000, 11_400_000, 9_800_000]
    noisy = check_budgets(limits, base, make_runs([1000] * 5, one_slow_median))
    assert noisy[0].passed and "not significantly" in noisy[0].note
    slower = check_budgets(limits, base, make_runs([1000] * 5, [v * 2 for v in NOISY_MS]))
    assert not slower[0].passed and not slower[0].note


def test_budget_on_an_unmeasured_metric_is_refused() -> None:
    budget = parse_budget("[max]\n\"budget.runqueue_ns\" = \"+5%\"")
    runs = make_runs([1000] * 3, NOISY_MS[:3])
    with pytest.raises(InputError, match="not measured"):
        check_budgets(budget.limits, runs, runs)


# ---------------------------------------------------------------- renderers
def regressed_comparison() -> Comparison:
    base = make_runs([1000] * 5, NOISY_MS)
    current = make_runs([1100] * 5, [v * 2 for v in NOISY_MS])
    comparison = compare(base, current)
    comparison.budgets = check_budgets(parse_budget(BUDGET).limits, base, current)
    return comparison


def test_text_is_one_line_when_all_is_well() -> None:
    base = make_runs([1000] * 5, NOISY_MS)
    text = CompareTextRenderer().render(compare(base, make_runs([1000] * 5, NOISY_MS)))
    assert text.count("\n") == 1
    assert text.startswith("stprof: no regression")


def test_text_names_the_culprits() -> None:
    text = CompareTextRenderer().render(regressed_comparison())
    assert text.startswith("stprof: REGRESSION")
    assert "read.calls" in text
    assert "read.total_ns" in text and "p=0.00794" in text
    assert "OVER BUDGET" in text and "faults.count" not in text.split("OVER BUDGET")[0]


def test_markdown_has_tables() -> None:
    markdown = CompareMarkdownRenderer().render(regressed_comparison())
    assert markdown.startswith("### stprof: :x: REGRESSION")
    assert "| `read.calls` |" in markdown
    assert "| `read.calls <= 1050` |" in markdown
    assert "<details>" in markdown


def test_junit_has_a_testcase_per_metric_and_budget() -> None:
    comparison = regressed_comparison()
    root = ET.fromstring(CompareJunitRenderer().render(comparison))
    cases = root.findall("./testsuite/testcase")
    assert len(cases) == len(comparison.results) + len(comparison.budgets)
    failed = {case.get("name") for case in cases if case.find("failure") is not None}
    assert "read.calls" in failed and "read.calls <= 1050" in failed
    assert "close.calls" not in failed
    assert root.get("failures") == str(len(failed))


def test_json_holds_the_whole_comparison() -> None:
    comparison = regressed_comparison()
    data = json.loads(CompareJsonRenderer().render(comparison))
    assert data["schema"] == "stprof-comparison/1"
    assert data["exit_status"] == 1
    assert len(data["results"]) == len(comparison.results)
    read = next(r for r in data["results"] if r["metric"] == "read.total_ns")
    assert read["significance"]["p_value"] == pytest.approx(2 / 252)
    assert read["baseline"]["values"] == [float(v) for v in NOISY_MS]


# --------------------------------------------------------------- CLI, offline
def stprof(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "stprof", *args], capture_output=True,
                          text=True, timeout=120, env=env)


@pytest.fixture
def records(tmp_path: Path) -> dict[str, Path]:
    paths = {}
    for name, runs in {
        "base": make_runs([1000] * 5, NOISY_MS),
        "same": make_runs([1000] * 5, list(reversed(NOISY_MS))),
        "worse": make_runs([1100] * 5, NOISY_MS),
    }.items():
        paths[name] = tmp_path / f"{name}.json"
        make_record(runs).save(paths[name])
    return paths


def test_cli_compare_exit_statuses(records: dict[str, Path], tmp_path: Path) -> None:
    same = stprof("compare", str(records["base"]), str(records["same"]))
    assert same.returncode == 0, same.stderr
    assert same.stdout.startswith("stprof: no regression")
    worse = stprof("compare", str(records["base"]), str(records["worse"]),
                   "--json", str(tmp_path / "c.json"), "--junit", str(tmp_path / "c.xml"),
                   "--markdown", str(tmp_path / "c.md"))
    assert worse.returncode == 1, worse.stderr
    assert "read.calls" in worse.stdout
    assert json.loads((tmp_path / "c.json").read_text())["exit_status"] == 1
    ET.parse(tmp_path / "c.xml")
    assert "REGRESSION" in (tmp_path / "c.md").read_text()


def test_cli_appends_the_github_step_summary(records: dict[str, Path], tmp_path: Path) -> None:
    import os

    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    done = stprof("compare", str(records["base"]), str(records["worse"]),
                  env={**os.environ, "GITHUB_STEP_SUMMARY": str(summary)})
    assert done.returncode == 1
    text = summary.read_text()
    assert text.startswith("earlier step\n") and "### stprof: :x: REGRESSION" in text


def test_cli_budget_failure_and_malformed_budget(records: dict[str, Path],
                                                 tmp_path: Path) -> None:
    tight = tmp_path / "tight.toml"
    tight.write_text("[max]\nread.calls = 10\n")
    over = stprof("compare", str(records["base"]), str(records["same"]), "--budget", str(tight))
    assert over.returncode == 1
    assert "OVER BUDGET" in over.stdout
    broken = tmp_path / "broken.toml"
    broken.write_text("[max]\nread.calls = = 3\n")
    bad = stprof("compare", str(records["base"]), str(records["same"]), "--budget", str(broken))
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1 and bad.stderr.startswith("stprof: ")


def test_cli_refuses_unreadable_input(records: dict[str, Path], tmp_path: Path) -> None:
    missing = stprof("compare", str(records["base"]), str(tmp_path / "nope.json"))
    assert missing.returncode == 2
    assert missing.stderr.count("\n") == 1
