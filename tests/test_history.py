"""The CI history (record/check --db, history) on real runs of a real git history.

A synthetic repository of 12 commits holds a C workload whose source changes
at commit 8 to make one extra getppid per iteration; it is built with cc and
recorded (``record --db``) at each commit, commits 1-7 on main, 8-12 on a
feature branch.  ``history`` must mark commit 8 and no other; ``check --db
--against main`` must fail on commit 12 and pass on commit 7 rebuilt; 20
checks of the unchanged workload must never fail; two writers at once must
both land; the charts must open in a real browser; bad files are refused
with one line, exit 2, and left byte for byte as they were.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sqlite3
import struct
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from browser import Browser
from browser import unavailable_reason as browser_unavailable
from collector_guard import unavailable_reason

from profiler import history as history_module
from profiler.changepoint import StepRule, change_points
from profiler.compare import Kind
from profiler.history import HistoryStore, Where
from profiler.record import Record

STPROF = [sys.executable, "-m", "stprof"]
ROOT = Path(__file__).resolve().parent.parent
COMMITS = 12
CHANGE_AT = 8  # the commit (1-based) that adds a getppid per iteration
ITERATIONS = 2000
REPEAT = 3
RERUNS = 20
NAME = "steps"
GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org",
           "GIT_CONFIG_NOSYSTEM": "1", "HOME": "/nonexistent"}

SOURCE = """\
/* the history test's workload, commit {commit} */
#include <sys/syscall.h>
#include <unistd.h>

int main(void)
{{
    for (int i = 0; i < {iterations}; i++) {{
        syscall(SYS_getpid);
{extra}    }}
    return 0;
}}
"""


def _collector() -> str:
    return "ebpf" if not unavailable_reason("ebpf") else "ptrace"


def _ptrace_or_skip() -> None:
    reason = unavailable_reason("ptrace")
    if reason:
        pytest.skip(f"ptrace collector unavailable: {reason}")


def stprof(*args: str, cwd: Path | None = None,
           timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("GITHUB_STEP_SUMMARY", None)
    return subprocess.run([*STPROF, *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=timeout, check=False)


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True,
                          env={**os.environ, **GIT_ENV}, check=True, timeout=60)
    return done.stdout.strip()


def checksum(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class StepsHistory:
    repo: Path
    db: Path
    shas: list[str]  # commit 1 first
    collector: str

    @property
    def binary(self) -> Path:
        return self.repo / "w"

    def build(self) -> None:
        subprocess.run(["cc", "-O1", "-static", "-o", str(self.binary),
                        str(self.repo / "w.c")], check=True, timeout=60)


def _write_commit(repo: Path, commit: int) -> None:
    extra = "        syscall(SYS_getppid);\n" if commit >= CHANGE_AT else ""
    (repo / "w.c").write_text(SOURCE.format(commit=commit, iterations=ITERATIONS,
                                            extra=extra))


@pytest.fixture(scope="module")
def steps(tmp_path_factory: pytest.TempPathFactory) -> StepsHistory:
    if shutil.which("cc") is None or shutil.which("git") is None:
        pytest.skip("needs cc and git")
    _ptrace_or_skip()
    repo = tmp_path_factory.mktemp("repo")
    git(repo, "init", "-q", "-b", "main")
    made = StepsHistory(repo, repo.parent / "history.sqlite", [], _collector())
    for commit in range(1, COMMITS + 1):
        if commit == CHANGE_AT:
            git(repo, "checkout", "-q", "-b", "feature")
        _write_commit(repo, commit)
        git(repo, "add", "w.c")
        git(repo, "commit", "-q", "-m", f"commit {commit}")
        made.shas.append(git(repo, "rev-parse", "HEAD"))
        made.build()
        done = stprof("record", "--db", str(made.db), "--name", NAME, "--repeat", str(REPEAT),
                      "--warmup", "0", "-c", made.collector, "--label", f"n={commit}", "--",
                      str(made.binary), cwd=repo)
        assert done.returncode == 0, done.stderr
    return made


def change_lines(output: str) -> list[tuple[str, str]]:
    """(metric, commit) of every 'change:' line of `stprof history`."""
    return re.findall(r"^change: (\S+) at commit (\w+) ", output, re.MULTILINE)


# ------------------------------------------------------------ the store
def test_every_run_lands_with_commit_branch_and_labels(steps: StepsHistory) -> None:
    with sqlite3.connect(steps.db) as db:
        rows = db.execute("SELECT c.commit_sha, c.branch, l.label_value, COUNT(r.id)"
                          " FROM records c JOIN runs r ON r.record_id = c.id"
                          " JOIN labels l ON l.record_id = c.id AND l.label_key = 'n'"
                          " GROUP BY c.id ORDER BY c.id").fetchall()
        version = db.execute("PRAGMA user_version").fetchone()[0]
        getppid = db.execute("SELECT m.value FROM metrics m JOIN runs r ON r.id = m.run_id"
                             " JOIN records c ON c.id = r.record_id"
                             " WHERE m.metric = 'getppid.calls' AND c.commit_sha = ?",
                             (steps.shas[-1],)).fetchall()
    assert version == history_module.SCHEMA_VERSION
    assert [row[0] for row in rows] == steps.shas
    assert [row[1] for row in rows] == ["main"] * (CHANGE_AT - 1) + ["feature"] * (
        COMMITS - CHANGE_AT + 1)
    assert [row[2] for row in rows] == [str(n) for n in range(1, COMMITS + 1)]
    assert all(row[3] == REPEAT for row in rows)
    assert [value for (value,) in getppid] == [float(ITERATIONS)] * REPEAT


def test_history_marks_commit_8_and_no_other(steps: StepsHistory) -> None:
    done = stprof("history", "--db", str(steps.db), "--name", NAME, "--metric", "total.calls",
                  "--metric", "getppid.calls", "--metric", "getpid.calls",
                  "--metric", "total.errors")
    assert done.returncode == 0, done.stderr
    changed = change_lines(done.stdout)
    eighth = steps.shas[CHANGE_AT - 1][:10]
    assert sorted(changed) == [("getppid.calls", eighth), ("total.calls", eighth)], done.stdout
    table = [line for line in done.stdout.splitlines() if re.match(r"^[0-9a-f]{10} ", line)]
    assert [line[:10] for line in table] == [sha[:10] for sha in steps.shas]
    assert [("<-" in line) for line in table] == [n == CHANGE_AT
                                                  for n in range(1, COMMITS + 1)]
    # the default metrics (times among them) mark nothing but commit 8 either
    default = stprof("history", "--db", str(steps.db), "--name", NAME)
    assert default.returncode == 0, default.stderr
    assert {commit for _, commit in change_lines(default.stdout)} == {eighth}


def test_check_against_main_fails_on_12_and_passes_on_7(steps: StepsHistory,
                                                      tmp_path: Path) -> None:
    markdown, junit = tmp_path / "check.md", tmp_path / "check.xml"
    done = stprof("check", "--db", str(steps.db), "--name", NAME, "--against", "main",
                  "--markdown", str(markdown), "--junit", str(junit), cwd=steps.repo)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "getppid.calls" in done.stdout
    baseline_commits = [sha[:10] for sha in steps.shas[: CHANGE_AT - 1]]
    # the last 10 runs of main: 3 of commit 7, 3 of 6, 3 of 5, 1 of 4
    used = baseline_commits[-4:]
    text = markdown.read_text()
    assert all(sha in text for sha in used) and baseline_commits[0] not in text
    assert all(sha in junit.read_text() for sha in used)
    try:
        git(steps.repo, "checkout", "-q", steps.shas[CHANGE_AT - 2])
        steps.build()
        done = stprof("check", "--db", str(steps.db), "--name", NAME, "--against", "main",
                      cwd=steps.repo)
        assert done.returncode == 0, done.stdout + done.stderr
        by_commit = stprof("check", "--db", str(steps.db), "--name", NAME, "--against",
                           steps.shas[2][:8], cwd=steps.repo)
        assert by_commit.returncode == 0, by_commit.stdout + by_commit.stderr
        assert f"commit {steps.shas[2][:10]}" in by_commit.stdout
    finally:
        git(steps.repo, "checkout", "-q", "feature")
        steps.build()


@pytest.mark.slow
def test_unchanged_reruns_never_alarm(steps: StepsHistory, tmp_path: Path) -> None:
    """20 checks of commit 7's workload against main: no failure, and their runs,
    put in a history of their own, show no change in any default metric."""
    reruns = tmp_path / "reruns.sqlite"
    try:
        git(steps.repo, "checkout", "-q", steps.shas[CHANGE_AT - 2])
        steps.build()
        saved = []
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        env.pop("GITHUB_STEP_SUMMARY", None)
        for pair in range(RERUNS // 2):  # two at a time: the machine has two cores
            outs = [tmp_path / f"check{pair}-{side}.json" for side in (0, 1)]
            checks = [subprocess.Popen([*STPROF, "check", "--db", str(steps.db), "--name",
                                        NAME, "-o", str(out)], cwd=steps.repo, env=env,
                                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                       text=True) for out in outs]
            said = [check.communicate(timeout=120)[0] for check in checks]
            assert [check.returncode for check in checks] == [0, 0], f"false alarm: {said}"
            saved += [Record.load(out) for out in outs]
    finally:
        git(steps.repo, "checkout", "-q", "feature")
        steps.build()
    with HistoryStore.open_for_writing(str(reruns)) as store:
        for attempt, record in enumerate(saved):
            store.add_record(record, Where(NAME, f"{attempt:02d}" + "e" * 38, "main"))
    done = stprof("history", "--db", str(reruns), "--name", NAME, "--metric", "total.calls",
                  "--metric", "getpid.calls", "--metric", "total.syscall_ns",
                  "--metric", "faults.count")
    assert done.returncode == 0, done.stderr
    assert change_lines(done.stdout) == [], done.stdout
    assert "no change detected" in done.stdout


# ------------------------------------------------------------ concurrent writers
def test_two_record_processes_at_once_both_land(tmp_path: Path) -> None:
    _ptrace_or_skip()
    db = tmp_path / "shared.sqlite"
    command = ["record", "--db", str(db), "--name", "true", "--commit", "c0ffee",
               "--branch", "main", "--repeat", "20", "--warmup", "0", "-c", "ptrace",
               "--", "/bin/true"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    writers = [subprocess.Popen([*STPROF, *command], env=env, stderr=subprocess.PIPE,
                                text=True) for _ in range(2)]
    errors = [writer.communicate(timeout=120)[1] for writer in writers]
    assert [writer.returncode for writer in writers] == [0, 0], errors
    with sqlite3.connect(db) as connection:
        assert connection.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 40
        per_record = connection.execute(
            "SELECT COUNT(*) FROM runs GROUP BY record_id").fetchall()
    assert per_record == [(20,), (20,)]


WRITER = """
import sys
from profiler.history import HistoryStore, Where
from profiler.record import Record
record = Record.load(sys.argv[2])
store = HistoryStore.open_for_writing(sys.argv[1])
for i in range(20):
    store.add_record(record, Where("w", f"{sys.argv[3]}{i:02d}", "main"))
store.close()
"""


def test_two_processes_of_20_transactions_each_interleave_safely(tmp_path: Path) -> None:
    """The store under contention: 2 x 20 transactions at once into one new file."""
    _ptrace_or_skip()
    one_run = tmp_path / "one.json"
    done = stprof("record", "-o", str(one_run), "--repeat", "1", "--warmup", "0",
                  "-c", "ptrace", "--", "/bin/true")
    assert done.returncode == 0, done.stderr
    db = tmp_path / "busy.sqlite"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(db), str(one_run), tag],
                                env=env, stderr=subprocess.PIPE, text=True)
               for tag in ("a", "b")]
    errors = [writer.communicate(timeout=120)[1] for writer in writers]
    assert [writer.returncode for writer in writers] == [0, 0], errors
    with sqlite3.connect(db) as connection:
        assert connection.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 40
        assert connection.execute("SELECT COUNT(DISTINCT commit_sha) FROM records"
                                  ).fetchone()[0] == 40


# ------------------------------------------------------------ charts


def test_charts_open_in_chromium_and_png_has_its_size(steps: StepsHistory,
                                                      tmp_path: Path) -> None:
    if browser_unavailable():
        pytest.skip(browser_unavailable())
    html, png = tmp_path / "history.html", tmp_path / "history.png"
    metrics = ["total.calls", "getppid.calls", "faults.count", "total.syscall_ns"]
    done = stprof("history", "--db", str(steps.db), "--name", NAME,
                  *(word for metric in metrics for word in ("--metric", metric)),
                  "--html", str(html), "--png", str(png))
    assert done.returncode == 0, done.stderr
    charts = _open_in_chromium(html)
    assert charts["problems"] == []
    assert charts["canvases"] == len(metrics)
    assert charts["runs"] == [COMMITS * REPEAT] * len(metrics)
    assert charts["changes"][:2] == [[CHANGE_AT - 1], [CHANGE_AT - 1]]
    assert all(painted > 1000 for painted in charts["painted"])
    assert charts["tip"].startswith(f"commit {steps.shas[0]}")
    width, height = _png_size(png)
    assert (width, height) == (900, int(100 * (0.9 + 2.4 * len(metrics))))
    assert 20_000 < png.stat().st_size < 400_000


def _open_in_chromium(html: Path) -> dict[str, Any]:
    with Browser() as browser, browser.open(html, width=1050, height=900) as visit:
        page = visit.page
        result: dict[str, Any] = page.evaluate("""() => ({
          canvases: document.querySelectorAll('.chart canvas').length,
          runs: window.stprofCharts.map(u => u.data[2].filter(v => v !== null).length),
          changes: JSON.parse(document.getElementById('history-data').textContent)
                     .map(c => c.changes),
          painted: [...document.querySelectorAll('.chart canvas')].map(c => {
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let n = 0;
            for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
            return n;
          }),
        })""")
        first = page.locator("#chart-0 .u-over")
        box = first.bounding_box()
        assert box is not None
        # the first commit's runs sit at the left end of the x range
        page.mouse.move(box["x"] + box["width"] * 0.6 / (COMMITS + 0.2),
                        box["y"] + box["height"] / 2)
        result["tip"] = page.locator("#chart-0 .tip").inner_text()
        result["problems"] = visit.problems()
    return result


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


# ------------------------------------------------------------ bad input
def _refused(done: subprocess.CompletedProcess[str], *words: str) -> None:
    lines = done.stderr.splitlines()
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and lines[0].startswith("stprof: "), done.stderr
    assert "Traceback" not in done.stderr
    for word in words:
        assert word in lines[0]


@pytest.fixture
def small_history(tmp_path: Path) -> Iterator[Path]:
    _ptrace_or_skip()
    db = tmp_path / "small.sqlite"
    done = stprof("record", "--db", str(db), "--name", "true", "--commit", "abc1234",
                  "--branch", "main", "--repeat", "2", "--warmup", "0", "-c", "ptrace",
                  "--", "/bin/true")
    assert done.returncode == 0, done.stderr
    yield db
    db.chmod(0o644)


RECORD_INTO = ["--name", "true", "--commit", "abc1234", "--branch", "main", "--repeat", "1",
               "--warmup", "0", "-c", "ptrace", "--", "/bin/true"]


def test_newer_schema_refused_untouched(small_history: Path) -> None:
    db = sqlite3.connect(small_history)
    db.execute(f"PRAGMA user_version = {history_module.SCHEMA_VERSION + 1}")
    db.commit()
    db.close()  # the last connection: the WAL is checkpointed into the file now
    before = checksum(small_history)
    for args in (["record", "--db", str(small_history), *RECORD_INTO],
                 ["history", "--db", str(small_history), "--name", "true"],
                 ["check", "--db", str(small_history), "--name", "true"]):
        _refused(stprof(*args), "newer")
        assert checksum(small_history) == before


@pytest.mark.parametrize("content", [b"just some text\n" * 40,
                                     b"SQLite format 3\x00" + b"\xff" * 4000],
                         ids=["text", "corrupt"])
def test_foreign_or_corrupt_file_refused_untouched(tmp_path: Path, content: bytes) -> None:
    _ptrace_or_skip()
    db = tmp_path / "history.sqlite"
    db.write_bytes(content)
    for args in (["record", "--db", str(db), *RECORD_INTO],
                 ["history", "--db", str(db), "--name", "true"],
                 ["check", "--db", str(db), "--name", "true"]):
        _refused(stprof(*args), str(db))
        assert db.read_bytes() == content


def test_another_programs_sqlite_file_refused_untouched(tmp_path: Path) -> None:
    _ptrace_or_skip()
    db = tmp_path / "other.sqlite"
    connection = sqlite3.connect(db)
    connection.execute("CREATE TABLE notes (text TEXT)")
    connection.commit()
    connection.close()
    before = checksum(db)
    _refused(stprof("record", "--db", str(db), *RECORD_INTO), "not a stprof history")
    _refused(stprof("history", "--db", str(db), "--name", "true"), "not a stprof history")
    assert checksum(db) == before


def test_read_only_history_refused_for_record_but_readable(small_history: Path) -> None:
    small_history.chmod(0o444)
    before = checksum(small_history)
    _refused(stprof("record", "--db", str(small_history), *RECORD_INTO), "read-only")
    assert checksum(small_history) == before
    done = stprof("history", "--db", str(small_history), "--name", "true")
    assert done.returncode == 0, done.stderr
    assert "abc1234" in done.stdout
    assert checksum(small_history) == before


def test_unknown_name_or_metric_refused_untouched(small_history: Path) -> None:
    before = checksum(small_history)
    _refused(stprof("history", "--db", str(small_history), "--name", "nope"), "'nope'")
    _refused(stprof("history", "--db", str(small_history), "--name", "true",
                    "--metric", "nosuch.calls"), "nosuch.calls")
    _refused(stprof("check", "--db", str(small_history), "--name", "nope"), "'nope'")
    _refused(stprof("check", "--db", str(small_history), "--name", "true",
                    "--against", "feature"), "feature")
    assert checksum(small_history) == before


def test_baseline_takes_only_the_newest_collectors_runs(small_history: Path) -> None:
    """2 ptrace runs, then 1 eBPF run on main: the baseline is the eBPF run alone."""
    reason = unavailable_reason("ebpf")
    if reason:
        pytest.skip(f"ebpf collector unavailable: {reason}")
    done = stprof("record", "--db", str(small_history), *RECORD_INTO[:-4], "-c", "ebpf",
                  "--", "/bin/true")
    assert done.returncode == 0, done.stderr
    done = stprof("check", "--db", str(small_history), "--name", "true")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[main, last 1 runs: abc1234 x1]" in done.stdout
    assert ", ebpf" in done.stdout


def test_record_outside_a_checkout_needs_a_commit(tmp_path: Path) -> None:
    _ptrace_or_skip()
    db = tmp_path / "h.sqlite"
    _refused(stprof("record", "--db", str(db), "--repeat", "1", "-c", "ptrace", "--",
                    "/bin/true", cwd=tmp_path), "--commit required")
    assert not db.exists()
    _refused(stprof("record", "-c", "ptrace", "--", "/bin/true", cwd=tmp_path), "--db")


# ------------------------------------------------------------ schema
def test_schema_is_plain_types_a_server_could_take(tmp_path: Path) -> None:
    with HistoryStore.open_for_writing(str(tmp_path / "h.sqlite")) as store:
        columns = [(table, column[2]) for (table,) in store.connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
            for column in store.connection.execute(f"PRAGMA table_info({table})")]
    assert {table for table, _ in columns} == {"records", "labels", "runs", "metrics"}
    plain = re.compile(r"^(INTEGER|TEXT|DOUBLE PRECISION|VARCHAR\(\d+\))$")
    assert all(plain.match(kind) for _, kind in columns), columns


def test_an_older_schema_is_migrated_in_place_keeping_the_runs(
        small_history: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def add_notes(connection: sqlite3.Connection) -> None:
        connection.execute("ALTER TABLE records ADD COLUMN notes TEXT")

    monkeypatch.setattr(history_module, "SCHEMA_VERSION", history_module.SCHEMA_VERSION + 1)
    monkeypatch.setattr(history_module, "MIGRATIONS", [*history_module.MIGRATIONS, add_notes])
    with HistoryStore.open_for_writing(str(small_history)) as store:
        assert store.run_count() == 2
        version = store.connection.execute("PRAGMA user_version").fetchone()[0]
        columns = [c[1] for c in store.connection.execute("PRAGMA table_info(records)")]
    assert version == history_module.SCHEMA_VERSION and "notes" in columns


# ------------------------------------------------------------ change points
def test_change_points_find_one_step_and_ignore_lone_outliers() -> None:
    counts = [[100.0] * 3] * 7 + [[200.0] * 3] * 5
    assert [c.index for c in change_points(counts, StepRule.for_kind(Kind.COUNT))] == [7]
    unmeasured = [[100.0] * 3] * 6 + [[]] + [[200.0] * 3] * 5  # commit 7 lacks the metric
    assert [c.index for c in change_points(unmeasured, StepRule.for_kind(Kind.COUNT))] == [7]
    outlier_last = [[100.0] * 3] * 11 + [[900.0] * 3]
    assert change_points(outlier_last, StepRule.for_kind(Kind.COUNT)) == []
    spike = [[100.0] * 3] * 5 + [[900.0] * 3] + [[100.0] * 3] * 5
    assert change_points(spike, StepRule.for_kind(Kind.COUNT)) == []
    tiny = [[1000.0]] * 6 + [[1010.0]] * 6  # 1 %: below the count tolerance
    assert change_points(tiny, StepRule.for_kind(Kind.COUNT)) == []
    noisy = [[v] for v in (1.0, 1.9, 1.2, 0.8, 2.1, 1.1, 1.7, 0.9, 2.0, 1.3)]
    assert change_points([[v * 1e6 for v in g] for g in noisy],
                         StepRule.for_kind(Kind.TIME)) == []


def test_json_of_stored_profiles_is_complete(steps: StepsHistory) -> None:
    with sqlite3.connect(steps.db) as db:
        (text,) = db.execute("SELECT profile FROM runs ORDER BY id DESC LIMIT 1").fetchone()
    data = json.loads(text)
    assert data["schema"] == "stprof/1"
    assert data["syscalls"]["getppid"]["calls"] == ITERATIONS
