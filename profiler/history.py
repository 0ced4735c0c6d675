"""The CI history: every recorded run of every workload, per commit, in SQLite.

One file (``--db FILE.sqlite``) keeps what ``stprof record --db`` made, run
by run: the full profile JSON, and the metrics a check or a trend chart
reads, one indexed row per metric.  This module is the store: the schema and
its migrations, writing one record's runs, reading a metric's series and a
baseline.  It knows nothing of the command line or of the renderers.

Tables (plain types only, so that a server database could take the same
schema: INTEGER, VARCHAR, TEXT, DOUBLE PRECISION; times are ISO-8601 text)::

    records  one `record` invocation: name, commit_sha, branch, recorded_at,
             host, collector, command (JSON), settings (JSON), stprof_version,
             host_info (JSON)
    labels   record_id, label_key, label_value       (--label K=V)
    runs     one kept run: record_id, run_index, exit_status, profile (JSON)
    metrics  run_id, metric, kind ('count' | 'time'), value

The schema version is ``PRAGMA user_version``.  An older file is brought up
to date by the steps of ``MIGRATIONS`` in one transaction; a newer one is
refused.  Writers use WAL, a busy timeout and one transaction per record, so
two CI jobs may record into one file at once.  A file that is not SQLite, a
corrupt one or a read-only one is refused with one line and never written.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from profiler.compare import TOTAL_METRICS, Kind, measured_kind, profile_metrics
from profiler.errors import InputError, UsageError
from profiler.model import Profile
from profiler.record import Record, Settings

SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 60.0
SQLITE_MAGIC = b"SQLite format 3\x00"
DEFAULT_LAST = 10

_SCHEMA_1 = (
    """CREATE TABLE records (
        id INTEGER PRIMARY KEY,
        name VARCHAR(200) NOT NULL,
        commit_sha VARCHAR(64) NOT NULL,
        branch VARCHAR(200) NOT NULL,
        recorded_at VARCHAR(40) NOT NULL,
        host VARCHAR(255) NOT NULL,
        collector VARCHAR(32) NOT NULL,
        command TEXT NOT NULL,
        settings TEXT NOT NULL,
        stprof_version VARCHAR(40) NOT NULL,
        host_info TEXT NOT NULL)""",
    "CREATE INDEX records_by_branch ON records (name, branch, recorded_at)",
    "CREATE INDEX records_by_commit ON records (name, commit_sha)",
    """CREATE TABLE labels (
        record_id INTEGER NOT NULL REFERENCES records (id),
        label_key VARCHAR(200) NOT NULL,
        label_value TEXT NOT NULL,
        PRIMARY KEY (record_id, label_key))""",
    """CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        record_id INTEGER NOT NULL REFERENCES records (id),
        run_index INTEGER NOT NULL,
        exit_status INTEGER,
        profile TEXT NOT NULL)""",
    "CREATE INDEX runs_by_record ON runs (record_id)",
    """CREATE TABLE metrics (
        run_id INTEGER NOT NULL REFERENCES runs (id),
        metric VARCHAR(200) NOT NULL,
        kind VARCHAR(8) NOT NULL,
        value DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (run_id, metric))""",
    "CREATE INDEX metrics_by_name ON metrics (metric, run_id)",
)

Migration = Callable[[sqlite3.Connection], None]
Row = tuple[Any, ...]


def _create_version_1(connection: sqlite3.Connection) -> None:
    for statement in _SCHEMA_1:
        connection.execute(statement)


# MIGRATIONS[n] takes a database from version n to n + 1 (0 is a new file).
MIGRATIONS: list[Migration] = [_create_version_1]


# ------------------------------------------------------------------ metrics
EXTRA_METRICS: dict[str, Kind] = {
    "irqs.count": Kind.COUNT,
    "irqs.total_ns": Kind.TIME,
    "cpu.user_ns": Kind.TIME,
    "cpu.sys_ns": Kind.TIME,
}


def history_metrics(profile: Profile) -> dict[str, tuple[Kind, float]]:
    """One run's indexed metrics: the check's (calls, errors, times, faults,
    budget parts) plus interrupts and CPU time; only what was measured."""
    values: dict[str, tuple[Kind, float]] = {
        name: (measured_kind(name), float(value))
        for name, value in profile_metrics(profile).items() if value is not None
    }
    if profile.irqs is not None and profile.irqs.method != "none":
        values["irqs.count"] = (Kind.COUNT, float(profile.irqs.count))
        values["irqs.total_ns"] = (Kind.TIME, float(profile.irqs.total_ns))
    values["cpu.user_ns"] = (Kind.TIME, float(profile.rusage.user_ns))
    values["cpu.sys_ns"] = (Kind.TIME, float(profile.rusage.sys_ns))
    return values


# ------------------------------------------------------------------ what is read
@dataclass(frozen=True)
class Where:
    """Where a record comes from: the workload's name and the code it ran."""

    name: str
    commit: str
    branch: str
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RunPoint:
    """One run's value of one metric."""

    value: float
    recorded_at: str
    run_id: int


@dataclass
class CommitPoints:
    """Every run of one commit, for one metric, in the order they were recorded."""

    commit: str
    branch: str
    first_recorded: str
    runs: list[RunPoint] = field(default_factory=list)

    @property
    def values(self) -> list[float]:
        return [run.value for run in self.runs]


@dataclass
class Series:
    """One metric of one workload over the commits, oldest first."""

    name: str
    metric: str
    kind: Kind
    commits: list[CommitPoints]


@dataclass
class Baseline:
    """The runs a check compares with, and where they came from."""

    record: Record
    description: str  # e.g. "main, last 10 runs"
    commits: list[tuple[str, int]]  # (commit, runs taken from it), oldest first

    @property
    def commit_list(self) -> str:
        return ", ".join(f"{sha[:10]} x{count}" for sha, count in self.commits)


# ------------------------------------------------------------------ the store
class HistoryStore:
    """An open history file; use as a context manager."""

    def __init__(self, connection: sqlite3.Connection, path: str) -> None:
        self.connection = connection
        self.path = path

    def __enter__(self) -> HistoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.connection.close()

    # ---- opening
    @classmethod
    def open_for_writing(cls, path: str) -> HistoryStore:
        """Open (or create) ``path`` to add records; migrate an older schema."""
        if _check_file(path, writing=True):
            _probe(path)  # read-only: a refusal must not even checkpoint the file
        connection = _connect(path, read_only=False)
        with _errors(path):
            connection.execute("PRAGMA journal_mode=WAL")
            _migrate(connection, path)
        return cls(connection, path)

    @classmethod
    def open_for_reading(cls, path: str) -> HistoryStore:
        """Open an existing history without ever writing to it."""
        _check_file(path, writing=False)
        connection = _connect(path, read_only=True)
        with _errors(path):
            version = _user_version(connection)
            _refuse_newer(path, version)
            if version == 0:
                connection.close()
                raise InputError(f"{path}: not a stprof history (no schema; "
                                 "make one with `stprof record --db`)")
            if version < SCHEMA_VERSION:
                connection.close()
                raise InputError(f"{path}: history schema version {version} is older than "
                                 f"this stprof's {SCHEMA_VERSION} (any `stprof record --db "
                                 f"{path}` migrates it)")
        return cls(connection, path)

    # ---- writing
    def add_record(self, record: Record, where: Where) -> int:
        """Store every run of ``record`` in one transaction; the new record's id."""
        with _errors(self.path), self._transaction():
            cursor = self.connection.execute(
                "INSERT INTO records (name, commit_sha, branch, recorded_at, host, collector,"
                " command, settings, stprof_version, host_info)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (where.name, where.commit, where.branch, record.created,
                 record.host.get("hostname", ""), record.collector,
                 json.dumps(record.command), json.dumps(record.settings.to_dict()),
                 record.stprof_version, json.dumps(record.host, sort_keys=True)))
            record_id = int(cursor.lastrowid or 0)
            self.connection.executemany(
                "INSERT INTO labels (record_id, label_key, label_value) VALUES (?, ?, ?)",
                [(record_id, key, value) for key, value in sorted(where.labels.items())])
            for index, run in enumerate(record.runs, start=1):
                self._add_run(record_id, index, run)
        return record_id

    def _add_run(self, record_id: int, index: int, run: Profile) -> None:
        cursor = self.connection.execute(
            "INSERT INTO runs (record_id, run_index, exit_status, profile) VALUES (?, ?, ?, ?)",
            (record_id, index, run.exit_status, run.to_json(indent=None)))
        run_id = int(cursor.lastrowid or 0)
        self.connection.executemany(
            "INSERT INTO metrics (run_id, metric, kind, value) VALUES (?, ?, ?, ?)",
            [(run_id, name, kind.value, value)
             for name, (kind, value) in sorted(history_metrics(run).items())])

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self.connection.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.connection.execute("ROLLBACK")
            raise
        self.connection.execute("COMMIT")

    # ---- reading
    def names(self) -> list[str]:
        with _errors(self.path):
            rows = self.connection.execute("SELECT DISTINCT name FROM records ORDER BY name")
            return [str(row[0]) for row in rows]

    def check_name(self, name: str) -> None:
        """Refuse a workload name this history has never recorded."""
        known = self.names()
        if name not in known:
            listed = ", ".join(known) if known else "none yet"
            raise UsageError(f"{self.path}: no runs named {name!r} (recorded: {listed})")

    def metric_kinds(self, name: str) -> dict[str, Kind]:
        """Every metric recorded for workload ``name``, with its kind."""
        with _errors(self.path):
            rows = self.connection.execute(
                "SELECT DISTINCT m.metric, m.kind FROM metrics m"
                " JOIN runs r ON r.id = m.run_id JOIN records c ON c.id = r.record_id"
                " WHERE c.name = ?", (name,))
            return {str(metric): Kind(kind) for metric, kind in rows}

    def series(self, name: str, metric: str, kind: Kind, branch: str | None = None) -> Series:
        """``metric`` of every run of ``name``, grouped by commit, oldest commit first."""
        query = ("SELECT c.commit_sha, c.branch, c.recorded_at, r.id, m.value FROM records c"
                 " JOIN runs r ON r.record_id = c.id"
                 " LEFT JOIN metrics m ON m.run_id = r.id AND m.metric = ?"
                 " WHERE c.name = ?")
        params: list[str] = [metric, name]
        if branch is not None:
            query += " AND c.branch = ?"
            params.append(branch)
        query += " ORDER BY c.recorded_at, c.id, r.run_index"
        commits: dict[str, CommitPoints] = {}
        per_syscall = metric not in TOTAL_METRICS and metric not in EXTRA_METRICS
        with _errors(self.path):
            for sha, on_branch, recorded_at, run_id, value in self.connection.execute(
                    query, params):
                point = commits.setdefault(sha, CommitPoints(sha, on_branch, recorded_at))
                if value is None and not per_syscall:
                    continue  # not measured in this run (a collector without it)
                # a syscall a run never made is 0 calls in 0 ns in that run
                point.runs.append(RunPoint(float(value or 0.0), recorded_at, int(run_id)))
        return Series(name, metric, kind, list(commits.values()))

    def baseline(self, name: str, against: str, default_branch: str) -> Baseline:
        """The runs ``--against`` names: a branch's last N runs, or one commit's runs.

        ``against`` is ``last:N`` (the last N runs of ``default_branch``), a
        branch name (its last 10 runs) or a commit (all its runs; a unique
        prefix of at least 4 hex digits will do).
        """
        with _errors(self.path):
            if against.startswith("last:"):
                branch, count = default_branch, _last_count(against)
            elif self._has_branch(name, against):
                branch, count = against, DEFAULT_LAST
            else:
                commit = self._commit_of(name, against)
                rows = self._commit_runs(name, commit)
                return _baseline_of(rows, f"commit {commit[:10]}", self.path)
            if not self._has_branch(name, branch):
                raise UsageError(f"{self.path}: no runs of {name!r} on branch {branch!r}")
            rows = self._last_runs(name, branch, count)
        return _baseline_of(rows, f"{branch}, last {len(rows)} runs", self.path)

    def _has_branch(self, name: str, branch: str) -> bool:
        row = self.connection.execute(
            "SELECT 1 FROM records WHERE name = ? AND branch = ? LIMIT 1",
            (name, branch)).fetchone()
        return row is not None

    def _commit_of(self, name: str, prefix: str) -> str:
        if len(prefix) < 4 or any(ch not in "0123456789abcdefABCDEF" for ch in prefix):
            raise UsageError(f"{self.path}: --against {prefix!r}: no such branch recorded for "
                             f"{name!r}, and not a commit (4 or more hex digits)")
        rows = self.connection.execute(
            "SELECT DISTINCT commit_sha FROM records WHERE name = ? AND commit_sha LIKE ?",
            (name, prefix.lower() + "%")).fetchall()
        if not rows:
            raise UsageError(f"{self.path}: no runs of {name!r} on a branch or commit "
                             f"named {prefix!r}")
        if len(rows) > 1:
            raise UsageError(f"{self.path}: --against {prefix!r} names {len(rows)} commits; "
                             "give more digits")
        return str(rows[0][0])

    _RUN_COLUMNS = ("SELECT c.commit_sha, c.command, c.collector, c.settings, c.recorded_at,"
                    " c.stprof_version, c.host_info, r.profile FROM records c"
                    " JOIN runs r ON r.record_id = c.id")

    def _last_runs(self, name: str, branch: str, count: int) -> list[Row]:
        """The branch's last ``count`` runs made by the collector of its newest record
        (runs of another collector would not compare)."""
        newest = self.connection.execute(
            "SELECT collector FROM records WHERE name = ? AND branch = ?"
            " ORDER BY recorded_at DESC, id DESC LIMIT 1", (name, branch)).fetchone()
        rows = self.connection.execute(
            f"{self._RUN_COLUMNS} WHERE c.name = ? AND c.branch = ? AND c.collector = ?"
            " ORDER BY c.recorded_at DESC, c.id DESC, r.run_index DESC LIMIT ?",
            (name, branch, newest[0], count)).fetchall()
        return list(reversed(rows))

    def _commit_runs(self, name: str, commit: str) -> list[Row]:
        """The commit's runs made by the collector of its newest record."""
        rows = list(self.connection.execute(
            f"{self._RUN_COLUMNS} WHERE c.name = ? AND c.commit_sha = ?"
            " ORDER BY c.recorded_at, c.id, r.run_index", (name, commit)).fetchall())
        return [row for row in rows if rows and row[2] == rows[-1][2]]

    def run_count(self) -> int:
        with _errors(self.path):
            return int(self.connection.execute("SELECT COUNT(*) FROM runs").fetchone()[0])


def _last_count(against: str) -> int:
    count = against[len("last:"):]
    if not count.isdigit() or int(count) < 1:
        raise UsageError(f"--against {against!r}: N in last:N must be a whole number >= 1")
    return int(count)


def _baseline_of(rows: Sequence[Row], description: str, path: str) -> Baseline:
    """The runs as one Record (the newest record's command, collector and settings)."""
    if not rows:
        raise UsageError(f"{path}: no baseline runs ({description})")
    newest = rows[-1]
    runs = [Profile.from_json(row[7], f"{path}: stored run") for row in rows]
    counts: dict[str, int] = {}
    for row in rows:
        counts[str(row[0])] = counts.get(str(row[0]), 0) + 1
    try:
        record = Record(command=[str(word) for word in json.loads(newest[1])],
                        collector=str(newest[2]),
                        settings=Settings.from_dict(json.loads(newest[3])),
                        runs=runs, created=str(newest[4]), stprof_version=str(newest[5]),
                        host={str(k): str(v) for k, v in json.loads(newest[6]).items()})
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise InputError(f"{path}: malformed stored record ({exc})") from None
    return Baseline(record, description, list(counts.items()))


# ------------------------------------------------------------------ files
def _check_file(path: str, *, writing: bool) -> bool:
    """Refuse what must not be opened; whether the file exists."""
    target = Path(path)
    if not target.exists():
        if not writing:
            raise InputError(f"{path}: no such history (record into it with "
                             "`stprof record --db`)")
        parent = target.parent
        if not parent.is_dir():
            raise UsageError(f"{path}: cannot create (No such file or directory)")
        if not os.access(parent, os.W_OK):
            raise UsageError(f"{path}: cannot create (Permission denied)")
        return False
    if not target.is_file():
        raise InputError(f"{path}: not a regular file")
    try:
        with target.open("rb") as stream:
            head = stream.read(len(SQLITE_MAGIC))
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    if head and head != SQLITE_MAGIC:
        raise InputError(f"{path}: not an SQLite database (refused, left as it is)")
    if writing and _read_only(target):
        raise UsageError(f"{path}: read-only file, not written")
    return True


def _read_only(target: Path) -> bool:
    """No write permission, or no write bit at all (which root would ignore)."""
    mode = target.stat().st_mode
    return not os.access(target, os.W_OK) or not mode & (stat.S_IWUSR | stat.S_IWGRP
                                                         | stat.S_IWOTH)


def _connect(path: str, *, read_only: bool) -> sqlite3.Connection:
    try:
        if read_only:
            uri = f"{Path(path).resolve().as_uri()}?mode=ro"
            connection = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S,
                                         isolation_level=None)
        else:
            connection = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        connection.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
    except sqlite3.Error as exc:
        raise InputError(f"{path}: cannot open the history ({exc})") from None
    return connection


@contextmanager
def _errors(path: str) -> Iterator[None]:
    """SQLite's errors as one line for the user."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            raise InputError(f"{path}: still locked by another writer after "
                             f"{BUSY_TIMEOUT_S:.0f} s") from None
        raise InputError(f"{path}: unusable history ({exc})") from None
    except sqlite3.DatabaseError as exc:
        raise InputError(f"{path}: corrupt or not a stprof history ({exc})") from None


def _probe(path: str) -> None:
    """Refuse a newer or corrupt existing file before opening it for writing."""
    connection = _connect(path, read_only=True)
    try:
        with _errors(path):
            version = _user_version(connection)
            _refuse_newer(path, version)
            if version:
                _check_integrity(connection, path)
            elif _has_tables(connection):
                raise InputError(f"{path}: an SQLite database, but not a stprof history")
    finally:
        connection.close()


def _user_version(connection: sqlite3.Connection) -> int:
    return int(connection.execute("PRAGMA user_version").fetchone()[0])


def _refuse_newer(path: str, version: int) -> None:
    if version > SCHEMA_VERSION:
        raise InputError(f"{path}: history schema version {version} is newer than this "
                         f"stprof's {SCHEMA_VERSION} (upgrade stprof)")


def _check_integrity(connection: sqlite3.Connection, path: str) -> None:
    row = connection.execute("PRAGMA quick_check(1)").fetchone()
    if row is None or row[0] != "ok":
        raise InputError(f"{path}: corrupt SQLite database ({row[0] if row else 'no answer'})")


def _migrate(connection: sqlite3.Connection, path: str) -> None:
    """Bring the file to SCHEMA_VERSION, all steps in one transaction."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        version = _user_version(connection)  # again: another writer may have migrated
        _refuse_newer(path, version)
        if version == 0 and _has_tables(connection):
            raise InputError(f"{path}: an SQLite database, but not a stprof history")
        for step in MIGRATIONS[version:SCHEMA_VERSION]:
            step(connection)
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


def _has_tables(connection: sqlite3.Connection) -> bool:
    row = connection.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
    return bool(row and row[0])
