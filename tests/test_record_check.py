"""stprof record / check / compare on real runs, driven as a subprocess.

The acceptance tests of the CI checks: on this noisy machine, checks of an
unchanged command against its baseline never fail, and a planted regression
(dd with 64 KiB blocks instead of 1 MiB; 10% more write syscalls) is caught
every time in as many tries, with the default thresholds.  A time-only
regression (a 1 ms sleep become 30 ms) is shown as slower and fails with
--fail-on-time.  They run with every collector that works here, and are
skipped with the reason for one that does not.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from collector_guard import unavailable_reason
from workloads import build

TRIES = 20  # checks per claim: unchanged never fails, planted always caught
REPEAT = 5  # runs per record: 5 against 5 reach p = 0.008 when fully separated
WARMUP = 1
WRITES = 2000  # ci_writes' syscalls; the plant makes 10% more


# ------------------------------------------------------------ collectors
def _collector_param(name: str) -> Any:
    marks = [pytest.mark.slow]
    if name == "ebpf":
        marks += [pytest.mark.root, pytest.mark.bcc]
    reason = unavailable_reason(name)
    if reason:
        marks.append(pytest.mark.skip(reason=f"{name} collector unavailable: {reason}"))
    return pytest.param(name, marks=marks, id=name)


COLLECTORS = [_collector_param(name) for name in ("ebpf", "ptrace")]


# ------------------------------------------------------------ the workload
@dataclass
class Workload:
    """A command whose behaviour flag files switch: the planted regressions."""

    command: list[str]
    flags: Path

    def plant(self, flag: str) -> None:
        (self.flags / flag).touch()

    def unplant(self) -> None:
        for flag in self.flags.iterdir():
            flag.unlink()


SCRIPT = """\
#!/bin/sh
# dd with 1 MiB blocks (64 KiB when {flags}/bs64k exists), then {writes}
# small writes and a 1 ms sleep (see tests/workloads/ci_writes.c).
if [ -e {flags}/bs64k ]; then
    dd if=/dev/zero of=/dev/null bs=64K count=512 status=none
else
    dd if=/dev/zero of=/dev/null bs=1M count=32 status=none
fi
exec {ci_writes} {flags} {writes}
"""


@pytest.fixture(scope="module")
def workload(tmp_path_factory: pytest.TempPathFactory) -> Workload:
    if shutil.which("cc") is None:
        pytest.skip("no C compiler (cc) to build the workload")
    root = tmp_path_factory.mktemp("ci-workload")
    flags = root / "flags"
    flags.mkdir()
    binary = build("ci_writes")
    script = root / "switch.sh"
    script.write_text(SCRIPT.format(flags=flags, writes=WRITES, ci_writes=binary))
    script.chmod(0o755)
    return Workload([str(script)], flags)


# ------------------------------------------------------------ running stprof
def stprof(*args: str, timeout: float = 300,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "stprof", *args], capture_output=True,
                          text=True, timeout=timeout, env=env)


def check(baseline: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return stprof("check", "--baseline", str(baseline), *extra)


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    """The single stderr line of a refusal (asserting it is one line)."""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("stprof: "), done.stderr
    return lines[0]


@pytest.fixture(scope="module", params=COLLECTORS)
def baseline(request: pytest.FixtureRequest, workload: Workload,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A record of the unchanged workload, made with one collector."""
    collector: str = request.param
    path = tmp_path_factory.mktemp(f"baseline-{collector}") / "baseline.json"
    workload.unplant()
    done = stprof("record", "--collector", collector, "--repeat", str(REPEAT),
                  "--warmup", str(WARMUP), "-o", str(path), "--", *workload.command)
    assert done.returncode == 0, done.stderr
    yield path
    workload.unplant()


def run_checks(baseline: Path, tries: int, *extra: str) -> list[subprocess.CompletedProcess[str]]:
    return [check(baseline, *extra) for _ in range(tries)]


def flagged(stdout: str, label: str) -> set[str]:
    """The metrics the text verdict lists under ``label`` (REGRESSION, slower...)."""
    return {line.split()[1] for line in stdout.splitlines()
            if line.startswith("  ") and line.split()[0] == label}


def describe(results: list[subprocess.CompletedProcess[str]], wrong: list[int]) -> str:
    return "\n".join(f"try {i + 1}: exit {results[i].returncode}\n{results[i].stdout}"
                     f"{results[i].stderr}" for i in wrong)


# ------------------------------------------------------------ acceptance
def test_unchanged_command_never_fails(baseline: Path, workload: Workload) -> None:
    workload.unplant()
    results = run_checks(baseline, TRIES)
    false_alarms = [i for i, done in enumerate(results) if done.returncode != 0]
    assert not false_alarms, describe(results, false_alarms)
    assert all(done.stdout.startswith("stprof: no regression") for done in results)


PLANTS = [("bs64k", "read.calls"), ("writes", "write.calls")]


def test_planted_regression_is_always_caught(baseline: Path, workload: Workload) -> None:
    """As many tries as the unchanged test, the two count regressions in turn."""
    results, culprits = [], []
    for attempt in range(TRIES):
        flag, culprit = PLANTS[attempt % len(PLANTS)]
        workload.plant(flag)
        try:
            results.append(check(baseline))
        finally:
            workload.unplant()
        culprits.append(culprit)
    missed = [i for i, (done, culprit) in enumerate(zip(results, culprits))
              if done.returncode != 1 or culprit not in flagged(done.stdout, "REGRESSION")]
    assert not missed, describe(results, missed)


def test_slower_time_is_shown_and_fails_when_asked(baseline: Path, workload: Workload) -> None:
    workload.plant("sleep")
    try:
        shown = check(baseline)
        failing = run_checks(baseline, 3, "--fail-on-time", "100%")
    finally:
        workload.unplant()
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert "clock_nanosleep.total_ns" in flagged(shown.stdout, "slower")
    missed = [i for i, done in enumerate(failing)
              if done.returncode != 1
              or "clock_nanosleep.total_ns" not in flagged(done.stdout, "REGRESSION")]
    assert not missed, describe(failing, missed)


def test_outputs_for_ci(baseline: Path, workload: Workload, tmp_path: Path) -> None:
    files = {kind: tmp_path / f"out.{kind}" for kind in ("md", "xml", "json")}
    workload.plant("writes")
    try:
        done = check(baseline, "--markdown", str(files["md"]), "--junit", str(files["xml"]),
                     "--json", str(files["json"]))
    finally:
        workload.unplant()
    assert done.returncode == 1, done.stdout + done.stderr
    comparison = json.loads(files["json"].read_text())
    assert comparison["exit_status"] == 1
    regressed = {r["metric"] for r in comparison["results"] if r["verdict"] == "regression"}
    assert "write.calls" in regressed
    assert "| `write.calls` |" in files["md"].read_text()
    junit = files["xml"].read_text()
    assert 'name="write.calls"' in junit and "<failure" in junit


def test_budgets_on_real_runs(baseline: Path, workload: Workload, tmp_path: Path) -> None:
    budget = tmp_path / "budget.toml"
    budget.write_text('[max]\nwrite.calls = "+5%"\ntotal.wall_ns = "10s"\n'
                      f"read.calls = {WRITES}\n")
    assert check(baseline, "--budget", str(budget)).returncode == 0
    workload.plant("writes")
    try:
        done = check(baseline, "--budget", str(budget), "--count-tolerance", "50%")
    finally:
        workload.unplant()
    assert done.returncode == 1, done.stdout + done.stderr
    assert "write.calls <= +5%" in done.stdout.split("OVER BUDGET", 1)[1]


def test_update_rewrites_the_baseline(baseline: Path, workload: Workload,
                                      tmp_path: Path) -> None:
    copy = tmp_path / "baseline.json"
    shutil.copy(baseline, copy)
    workload.plant("writes")
    try:
        updated = check(copy, "--update")
        assert updated.returncode == 0, updated.stderr
        assert check(copy).returncode == 0
    finally:
        workload.unplant()
    assert json.loads(copy.read_text())["runs"] != json.loads(baseline.read_text())["runs"]


# ------------------------------------------------------------ refusals (exit 2)
def mangled(baseline: Path, into: Path, change: dict[str, object]) -> Path:
    data = json.loads(baseline.read_text())
    data.update(change)
    into.write_text(json.dumps(data))
    return into


def test_bad_inputs_exit_2(baseline: Path, tmp_path: Path) -> None:
    text = baseline.read_text()
    truncated = tmp_path / "truncated.json"
    truncated.write_text(text[: len(text) // 3])
    foreign = tmp_path / "foreign.json"
    foreign.write_text('{"name": "package.json", "version": "1.0.0"}\n')
    profile = tmp_path / "profile.json"
    profile.write_text(json.dumps(json.loads(text)["runs"][0]))
    cases = {
        "truncated": truncated,
        "foreign": foreign,
        "v2": mangled(baseline, tmp_path / "v2.json", {"schema": "stprof-record/2"}),
        "command": mangled(baseline, tmp_path / "cmd.json", {"command": ["/bin/true"]}),
        "collector": mangled(baseline, tmp_path / "col.json", {"collector": "dtrace"}),
    }
    reasons = {}
    for name, path in cases.items():
        done = stprof("compare", str(baseline), str(path))
        assert done.returncode == 2, (name, done.stdout, done.stderr)
        assert done.stdout == "", name
        reasons[name] = one_line_error(done)
    assert "not valid JSON" in reasons["truncated"]
    assert "not a stprof record" in reasons["foreign"]
    assert "stprof-record/2" in reasons["v2"]
    assert "another command" in reasons["command"]
    assert "--allow-collector-change" in reasons["collector"]
    # a plain profile is a record of one run: its counts are judged, its times cannot be
    single = stprof("compare", str(baseline), str(profile))
    assert single.returncode == 0, single.stdout + single.stderr
    assert "times cannot be judged: with 5 and 1 runs" in single.stdout
    allowed = stprof("compare", "--allow-collector-change", str(baseline), str(cases["collector"]))
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    assert "collector changed" in allowed.stdout


def test_check_refuses_before_running(baseline: Path, tmp_path: Path) -> None:
    v2 = mangled(baseline, tmp_path / "v2.json", {"schema": "stprof-record/2"})
    assert "stprof-record/2" in one_line_error(check(v2))
    other = check(baseline, "--", "/bin/true")
    assert other.returncode == 2
    assert "another command" in one_line_error(other)
    broken = tmp_path / "broken.toml"
    broken.write_text("[max]\nread.calls <= 10\n")
    bad_budget = check(baseline, "--budget", str(broken))
    assert bad_budget.returncode == 2
    assert "not valid TOML" in one_line_error(bad_budget)
    missing = check(tmp_path / "nope.json")
    assert missing.returncode == 2
    assert "no such file" in one_line_error(missing)


# ------------------------------------------------------------ recording
@pytest.mark.parametrize("collector", COLLECTORS)
def test_record_leaves_the_targets_output_alone(collector: str, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    done = stprof("record", "-c", collector, "--repeat", "2", "--warmup", "1", "-o", str(out),
                  "--", "sh", "-c", "echo out; echo err >&2")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "out\n" * 3
    assert done.stderr.count("err\n") == 3
    record = json.loads(out.read_text())
    assert record["schema"] == "stprof-record/1"
    assert record["collector"] == collector
    assert record["settings"]["repeat"] == 2 and record["settings"]["warmup"] == 1
    assert len(record["runs"]) == 2
    assert all(run["syscalls"]["write"]["calls"] >= 2 for run in record["runs"])


# The command's exit status says who it ran as: its uid modulo 256
# (nobody, 65534, exits 254; root exits 0).
EXIT_WITH_UID = ["sh", "-c", "exit $(( $(id -u) % 256 ))"]
SUDO_NOBODY = {"SUDO_UID": "65534", "SUDO_GID": "65534"}


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop privileges")
@pytest.mark.parametrize("extra,sudo_env,status", [
    ([], SUDO_NOBODY, 254),
    (["--as-root"], SUDO_NOBODY, 0),
    (["-u", "nobody"], {}, 254),
], ids=["sudo", "as-root", "user"])
def test_record_and_check_run_the_command_as_run_would(extra: list[str],
                                                       sudo_env: dict[str, str], status: int,
                                                       tmp_path: Path) -> None:
    env = {**os.environ, **sudo_env}
    baseline, current = tmp_path / "base.json", tmp_path / "current.json"
    done = stprof("record", "-c", "ptrace", *extra, "--repeat", "2", "--warmup", "0",
                  "-o", str(baseline), "--", *EXIT_WITH_UID, env=env)
    assert done.returncode == 0, done.stderr
    done = stprof("check", "--baseline", str(baseline), *extra, "-o", str(current), env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    for path in (baseline, current):
        runs = json.loads(path.read_text())["runs"]
        assert [run["exit_status"] for run in runs] == [status, status]


def test_user_and_as_root_exclude_each_other(tmp_path: Path) -> None:
    done = stprof("record", "-u", "nobody", "--as-root", "-o", str(tmp_path / "r.json"),
                  "--", "true")
    assert done.returncode == 2
    assert "not allowed with argument" in done.stderr
    assert not (tmp_path / "r.json").exists()


def test_record_of_a_missing_command_is_127(tmp_path: Path) -> None:
    done = stprof("record", "-o", str(tmp_path / "r.json"), "--", "/no/such/command")
    assert done.returncode == 127
    assert not (tmp_path / "r.json").exists()


def test_two_collectors_are_not_compared_silently(workload: Workload, tmp_path: Path) -> None:
    usable = [p.values[0] for p in COLLECTORS if not any(m.name == "skip" for m in p.marks)]
    if len(usable) < 2:
        pytest.skip("needs both the ebpf and the ptrace collector")
    paths = []
    for name in usable:
        path = tmp_path / f"{name}.json"
        done = stprof("record", "-c", name, "--repeat", "3", "-o", str(path), "--",
                      *workload.command)
        assert done.returncode == 0, done.stderr
        paths.append(str(path))
    refused = stprof("compare", *paths)
    assert refused.returncode == 2
    assert "--allow-collector-change" in one_line_error(refused)
    allowed = stprof("compare", "--allow-collector-change", *paths)
    assert allowed.returncode in (0, 1), allowed.stderr
