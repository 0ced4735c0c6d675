"""Reliability of what stprof reads and says (issue 13, items 1, 7 and 8).

- Every input file is read with a bound: /dev/zero, a 1 GiB sparse file and a
  FIFO whose writer never stops are refused in one line, quickly, in bounded
  memory (the peak RSS of the stprof process, from wait4), and the files are
  left as they were.
- The loaders, fed by Hypothesis with profiles, records and budgets broken in
  every way, either load or raise a one-line InputError, never another
  exception.
- The error messages of item 7: -p of stprof itself, the true reason ptrace
  refused (another tracer, another user, a Landlock sandbox, kernel.init_private),
  outputs tried before the command runs, names with newlines quoted.
- Set-up: the lock of another apt-get is waited for, apt's and pip's output
  stay out of the log, and a second `make setup` is quiet.
"""

from __future__ import annotations

import copy
import ctypes
import errno
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from collector_guard import unavailable_reason
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from workloads import build

from collectors.syscall_names import syscall_table
from profiler.budgets import BUDGET_LIMIT, load_budget, parse_budget
from profiler.errors import EXIT_USAGE, InputError, shown
from profiler.model import (
    INPUT_LIMIT,
    MIB,
    Budget,
    Faults,
    Irqs,
    ProcessStats,
    Profile,
    Rusage,
    Stacks,
    describe_size,
    read_input_file,
)
from profiler.record import Record, Settings

STPROF = [sys.executable, "-m", "stprof"]
REPO = Path(__file__).resolve().parents[1]
LINUX = sys.platform.startswith("linux")
ROOT = hasattr(os, "geteuid") and os.geteuid() == 0

# What a refusal may cost at most: the interpreter and stprof's imports
# (about 60 MiB here) and the bound's bytes once.
BASE_RSS = 128 * MIB


# ------------------------------------------------------------------ helpers
@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    peak_rss: int  # bytes

    def lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]


def run_stprof(*args: str, timeout: float = 60, env: dict[str, str] | None = None,
               prefix: tuple[str, ...] = ()) -> Ran:
    """stprof as a subprocess, with its own peak RSS.

    The kernel keeps a forked child's peak from before its exec in its
    ru_maxrss, so stprof is started by a small program (workloads/peak_rss.c)
    rather than forked from pytest, whose own size (bcc loaded by other tests)
    would be measured instead.
    """
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err, \
            tempfile.NamedTemporaryFile("r") as peak:
        started = time.monotonic()
        process = subprocess.Popen([str(build("peak_rss")), peak.name, *prefix, *STPROF, *args],
                                   stdout=out, stderr=err,
                                   stdin=subprocess.DEVNULL, text=True, cwd=REPO, env=env)
        watchdog = threading.Timer(timeout, process.kill)
        watchdog.start()
        try:
            _, status, _ = os.wait4(process.pid, 0)
        finally:
            watchdog.cancel()
        seconds = time.monotonic() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        peak_kib = int(peak.read().strip() or 0)
        return Ran(process.returncode, out.read(), err.read(), seconds, peak_kib * 1024)


def checksum(path: Path) -> tuple[int, int, int | str]:
    """Size, modification time and CRC-32 of a regular file; a file that is
    all hole (sparse, no data extent: SEEK_DATA finds none) is all zeros,
    which needs no gigabyte read to tell."""
    status = path.stat()
    with path.open("rb") as stream:
        try:
            os.lseek(stream.fileno(), 0, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:
                return status.st_size, status.st_mtime_ns, "all hole"
        crc = 0
        while chunk := stream.read(4 * MIB):
            crc = zlib.crc32(chunk, crc)
    return status.st_size, status.st_mtime_ns, crc


def one_line(exc: InputError) -> str:
    line = exc.one_line()
    assert len(line.splitlines()) == 1, line
    assert exc.exit_status == EXIT_USAGE
    return line


# ------------------------------------------------------------------ files past the bound
@pytest.fixture(scope="module")
def good_record(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small valid record, so that the file under test is the one refused."""
    path = tmp_path_factory.mktemp("records") / "good.json"
    runs = [Profile(command=["true"], collector="ptrace", exit_status=0)]
    Record(["true"], "ptrace", Settings(repeat=1, warmup=0), runs).save(path)
    return path


@pytest.fixture(params=["dev-zero", "sparse-1GiB", "endless-fifo"])
def huge_input(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    if request.param == "dev-zero":
        yield Path("/dev/zero")
    elif request.param == "sparse-1GiB":
        path = tmp_path / "sparse.json"
        with path.open("wb") as stream:
            stream.truncate(1024 * MIB)
        yield path
    else:
        path = tmp_path / "endless.fifo"
        os.mkfifo(path)
        # the shell opens the FIFO (waiting for stprof, the reader) and
        # `yes` writes until the reader is gone
        writer = subprocess.Popen(["sh", "-c", 'exec yes stprof > "$0"', str(path)],
                                  stderr=subprocess.DEVNULL)
        try:
            yield path
        finally:
            writer.kill()
            writer.wait()


POSITIONS: dict[str, tuple[Callable[[str, str], list[str]], int, str]] = {
    "report": (lambda bad, good: ["report", bad], INPUT_LIMIT, "profile or record"),
    "compare-baseline": (lambda bad, good: ["compare", bad, good], INPUT_LIMIT,
                         "profile or record"),
    "compare-current": (lambda bad, good: ["compare", good, bad], INPUT_LIMIT,
                        "profile or record"),
    "compare-budget": (lambda bad, good: ["compare", "--budget", bad, good, good], BUDGET_LIMIT,
                       "budget file"),
    "check-baseline": (lambda bad, good: ["check", "-c", "ptrace", "--baseline", bad, "--",
                                          "true"], INPUT_LIMIT, "profile or record"),
}


@pytest.mark.skipif(not LINUX, reason="/dev/zero and FIFOs as on Linux")
@pytest.mark.parametrize("position", sorted(POSITIONS))
def test_input_past_the_bound_is_refused_quickly_in_bounded_memory(
        position: str, huge_input: Path, good_record: Path) -> None:
    arguments, limit, kind = POSITIONS[position]
    before = checksum(good_record)
    huge_before = checksum(huge_input) if huge_input.is_file() else None
    ran = run_stprof(*arguments(str(huge_input), str(good_record)), timeout=60)
    assert ran.returncode == 2, ran.stderr
    assert ran.lines() == [f"stprof: {shown(huge_input)}: larger than {describe_size(limit)}, "
                           f"the most stprof reads of a {kind}"]
    assert ran.seconds < 30, f"took {ran.seconds:.1f} s"
    assert ran.peak_rss < limit + BASE_RSS, f"peak RSS {ran.peak_rss / MIB:.0f} MiB"
    assert checksum(good_record) == before
    if huge_before is not None:
        assert checksum(huge_input) == huge_before
    if huge_input.name.endswith(".fifo"):
        assert stat.S_ISFIFO(huge_input.stat().st_mode)


def _proc_rchar() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="needs /proc/self/io")
def test_a_device_is_read_no_further_than_the_bound() -> None:
    limit = 3 * MIB + 17
    before = _proc_rchar()
    with pytest.raises(InputError) as caught:
        read_input_file("/dev/zero", limit)
    consumed = _proc_rchar() - before
    assert limit < consumed <= limit + 1 + 64 * 1024  # the /proc/self/io reads themselves
    assert "larger than 3145745 bytes" in one_line(caught.value)


@pytest.mark.parametrize("kind", ["regular", "fifo", "proc"])
def test_the_bound_itself_is_read_and_one_byte_more_is_refused(tmp_path: Path,
                                                              kind: str) -> None:
    if kind == "proc":
        if not Path("/proc/self/cmdline").exists():
            pytest.skip("no /proc")
        size = len(Path("/proc/self/cmdline").read_bytes())
        assert read_input_file("/proc/self/cmdline", size).encode() == Path(
            "/proc/self/cmdline").read_bytes()
        with pytest.raises(InputError, match="larger than"):
            read_input_file("/proc/self/cmdline", size - 1)
        return
    for size, limit in ((4096, 4096), (4097, 4096)):
        path = tmp_path / f"{kind}-{size}"
        writer = None
        if kind == "regular":
            path.write_bytes(b"x" * size)
        else:
            os.mkfifo(path)
            writer = subprocess.Popen(
                [sys.executable, "-c",
                 "import sys; open(sys.argv[1], 'wb').write(b'x' * int(sys.argv[2]))",
                 str(path), str(size)])
        try:
            if size <= limit:
                assert read_input_file(path, limit) == "x" * size
            else:
                with pytest.raises(InputError, match="larger than 4096 bytes"):
                    read_input_file(path, limit)
        finally:
            if writer is not None:
                writer.kill()
                writer.wait()


def test_a_real_profile_and_record_fit_the_bound_with_room(tmp_path: Path) -> None:
    """The bound leaves room for long runs: a record of 20 runs of a profile
    with 2000 processes (what a 2000-process shell loop gives) loads."""
    profile = Profile(command=["sh", "-c", "loop"], collector="ebpf", exit_status=0)
    for index in range(2000):
        profile.processes.append(ProcessStats(pid=10000 + index, ppid=9999, comm="true",
                                              exit_status=0))
    profile.syscall("execve").record(1000)
    path = tmp_path / "record.json"
    Record(["sh", "-c", "loop"], "ebpf", Settings(repeat=20, warmup=0), [profile] * 20).save(path)
    size = path.stat().st_size
    assert size * 5 < INPUT_LIMIT, f"a 20-run record is {size} bytes"
    assert len(Record.load(path).runs) == 20


# ------------------------------------------------------------------ fuzzing the loaders
def _sample_profile() -> Profile:
    profile = Profile(command=["dd", "if=/dev/zero"], collector="ebpf", exit_status=0,
                      wall_ns=123456, attached_pid=None)
    profile.syscall("read").record(1500)
    profile.syscall("openat").record(2500, "ENOENT")
    profile.rusage = Rusage(user_ns=1, sys_ns=2, minflt=3, majflt=0)
    profile.faults = Faults(count=5, minor=5, major=0, total_ns=100)
    profile.processes = [ProcessStats(pid=10, ppid=1, comm="dd", exit_status=0)]
    profile.irqs = Irqs(count=2, total_ns=40)
    profile.budget = Budget(lifetime_ns=1000, user_ns=500, syscall_cpu_ns=300)
    profile.stacks = Stacks(folded={"a;b": 3}, samples=3)
    profile.notes = ["a note"]
    profile.timing = {"probe": "raw tracepoints"}
    return profile


SAMPLE_PROFILE = json.loads(_sample_profile().to_json())
SAMPLE_RECORD = Record(["dd"], "ebpf", Settings(repeat=2, warmup=1),
                       [_sample_profile(), _sample_profile()]).to_dict()

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(min_value=10**20)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a JSON document: dict keys and list indexes, nested."""
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found.extend(_paths(item, (*prefix, key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.extend(_paths(item, (*prefix, index)))
    return found


@st.composite
def broken_documents(draw: st.DrawFn, sample: dict[str, Any]) -> Any:
    """``sample`` with one to three places replaced by any JSON value or removed."""
    document: Any = copy.deepcopy(sample)
    for _ in range(draw(st.integers(1, 3))):
        paths = [path for path in _paths(document) if path]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = document
        for step in path[:-1]:
            parent = parent[step]
        if draw(st.booleans()):
            parent[path[-1]] = draw(json_values)
        elif isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent.pop(path[-1])
    return document


@st.composite
def damaged_texts(draw: st.DrawFn, text: str) -> str:
    """``text`` with a few characters replaced, inserted or deleted, or cut short."""
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        how = draw(st.sampled_from(["replace", "insert", "delete", "cut"]))
        piece = draw(st.text(min_size=1, max_size=3))
        if how == "replace":
            text = text[:at] + piece + text[at + 1:]
        elif how == "insert":
            text = text[:at] + piece + text[at:]
        elif how == "delete":
            text = text[:at] + text[at + 1:]
        else:
            text = text[:at]
    return text


FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def _loads_or_refuses_profile(document: Any) -> None:
    try:
        profile = Profile.from_dict(document, "fuzzed")
    except InputError as exc:
        one_line(exc)
        return
    # what it loaded has the types the renderers rely on, and reads back
    assert all(isinstance(word, str) for word in profile.command)
    assert profile.exit_status is None or isinstance(profile.exit_status, int)
    assert all(isinstance(note, str) for note in profile.notes)
    assert all(isinstance(value, str) for value in profile.host.values())
    assert isinstance(profile.syscalls, dict) and isinstance(profile.timing, dict)
    Profile.from_json(profile.to_json())


def _loads_or_refuses_record(document: Any) -> None:
    try:
        record = Record.from_dict(document, "fuzzed")
    except InputError as exc:
        one_line(exc)
        return
    assert record.runs and all(isinstance(run, Profile) for run in record.runs)
    assert all(isinstance(word, str) for word in record.command)
    assert isinstance(record.collector, str) and record.settings.repeat >= 1


@FUZZ
@given(broken_documents(SAMPLE_PROFILE))
@example({**SAMPLE_PROFILE, "wall_ns": float("inf")})
@example({**SAMPLE_PROFILE, "command": "dd"})
@example({**SAMPLE_PROFILE, "exit_status": "0"})
@example({**SAMPLE_PROFILE, "notes": "a note"})
@example({**SAMPLE_PROFILE, "host": [["kernel", "6.1"]]})
def test_fuzzed_profile_documents_load_or_are_refused_in_one_line(document: Any) -> None:
    _loads_or_refuses_profile(document)


@FUZZ
@given(json_values)
def test_any_json_value_as_a_profile_or_record_loads_or_is_refused(document: Any) -> None:
    _loads_or_refuses_profile(document)
    _loads_or_refuses_record(document)


@FUZZ
@given(damaged_texts(json.dumps(SAMPLE_PROFILE, indent=1)))
def test_damaged_profile_text_loads_or_is_refused_in_one_line(text: str) -> None:
    try:
        Profile.from_json(text, "fuzzed")
    except InputError as exc:
        one_line(exc)


@FUZZ
@given(broken_documents(SAMPLE_RECORD))
@example({**SAMPLE_RECORD, "settings": {"repeat": float("inf")}})
@example({**SAMPLE_RECORD, "command": "dd"})
def test_fuzzed_records_load_or_are_refused_in_one_line(document: Any) -> None:
    _loads_or_refuses_record(document)


@FUZZ
@given(st.binary(max_size=300) | st.sampled_from([
    b"[" * 100000, b'{"a":' * 50000, b"1" * 5000, b"\xff\xfe{}", b"\xef\xbb\xbf{}",
    b"-Infinity", b'{"schema": "stprof/1", "wall_ns": Infinity}',
    b'{"schema": "stprof-record/1", "settings": {"repeat": 1e999}}',
    b"[max]\nread.calls = 1e999", b"a = [" * 50000, b"[max]\nread.calls = " + b"9" * 5000,
    b'[tolerance]\ntime_floor = "' + b"9" * 400 + b's"',
]))
def test_any_file_loads_or_is_refused_in_one_line(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "input"
    path.write_bytes(content)
    for load in (Profile.load, Record.load, load_budget):
        try:
            load(path)
        except InputError as exc:
            one_line(exc)


METRICS = ["read.calls", "read.errors", "read.total_ns", "total.syscall_ns", "total.wall_ns",
           "faults.count", "budget.user_ns", "nosuch.metric", "read", "a.b.c", "\"a\\nb\""]
toml_values = (st.integers() | st.integers(min_value=10**19)
               | st.floats(allow_nan=True, allow_infinity=True) | st.booleans()
               | st.from_regex(r"[+-]?[0-9]{0,400}(\.[0-9]*)?(%|ns|us|ms|s|x)?", fullmatch=True)
               | st.text(max_size=10))


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return {"inf": "inf", "-inf": "-inf", "nan": "nan"}.get(repr(value), repr(value))
    if isinstance(value, str):
        return json.dumps(value)
    return str(value)


@st.composite
def budget_texts(draw: st.DrawFn) -> str:
    lines = []
    for _ in range(draw(st.integers(0, 6))):
        if draw(st.integers(0, 3)) == 0:
            lines.append(draw(st.sampled_from(["[max]", "[min]", "[tolerance]", "[other]",
                                               "[max.read]", "[[max]]"])))
        elif draw(st.booleans()):
            key = draw(st.sampled_from(["counts", "count_slack", "times", "time_floor",
                                        "alpha", "fail_on_times", "nosuch"]))
            lines.append(f"{key} = {_toml_value(draw(toml_values))}")
        else:
            lines.append(f"{draw(st.sampled_from(METRICS))} = {_toml_value(draw(toml_values))}")
    text = "\n".join(lines)
    if draw(st.booleans()):
        text = draw(damaged_texts(text))
    return text


@FUZZ
@given(budget_texts())
@example("[max]\nread.calls = inf")
@example("[max]\nread.calls = nan")
@example("[max]\nread.calls = " + "9" * 400)
@example('[max]\ntotal.wall_ns = "+' + "9" * 400 + 's"')
@example("[tolerance]\ncounts = inf")
@example('[tolerance]\ntime_floor = "' + "9" * 400 + 's"')
def test_fuzzed_budgets_load_or_are_refused_in_one_line(text: str) -> None:
    try:
        budget = parse_budget(text, "fuzzed")
    except InputError as exc:
        one_line(exc)
        return
    for limit in budget.limits:
        assert limit.amount == limit.amount and abs(limit.amount) != float("inf")
    for value in budget.tolerance.values():
        assert value == value and abs(value) != float("inf")


# ------------------------------------------------------------------ messages (item 7)
@pytest.mark.skipif(not LINUX, reason="attaching is tested on Linux")
@pytest.mark.parametrize("collector", ["ptrace", "ebpf"])
def test_attaching_to_stprof_itself_is_refused(collector: str) -> None:
    # the shell's pid is stprof's once the shell execs it; the shell says it first
    ran = run_stprof("run", "-c", collector, timeout=30,
                     prefix=("sh", "-c", 'echo "$$" >&2; exec "$@" -p $$', "sh"))
    assert ran.returncode == 2, ran.stderr
    pid, *message = ran.lines()
    assert message == [f"stprof: -p {pid}: that is stprof itself, and no process can "
                       "trace itself"]


def _ptrace_or_skip() -> None:
    reason = unavailable_reason("ptrace")
    if reason:
        pytest.skip(f"ptrace collector unavailable here: {reason}")


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(["sleep", "30"])
    try:
        yield process
    finally:
        process.kill()
        process.wait()


# Seizes the process given (which goes on running) and holds it until killed.
TRACER = """
import ctypes, sys, time
libc = ctypes.CDLL(None, use_errno=True)
if libc.ptrace(0x4206, int(sys.argv[1]), 0, 0) != 0:  # PTRACE_SEIZE
    sys.exit(f"seize failed: errno {ctypes.get_errno()}")
print("seized", flush=True)
time.sleep(60)
"""


@pytest.mark.skipif(not LINUX, reason="ptrace as on Linux")
def test_attaching_to_a_traced_process_names_its_tracer(
        sleeper: subprocess.Popen[bytes]) -> None:
    _ptrace_or_skip()
    tracer = subprocess.Popen([sys.executable, "-c", TRACER, str(sleeper.pid)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert tracer.stdout is not None and tracer.stdout.readline() == "seized\n"
        name = Path(f"/proc/{tracer.pid}/comm").read_text().strip()
        ran = run_stprof("run", "-c", "ptrace", "-p", str(sleeper.pid), timeout=30)
        assert ran.returncode == 125, ran.stderr
        assert ran.lines() == [
            f"stprof: cannot attach to pid {sleeper.pid}: it is traced already, by pid "
            f"{tracer.pid} ({name}), and a process has one tracer at a time (the ebpf "
            "collector needs no ptrace: -c ebpf)"]
    finally:
        tracer.kill()
        tracer.wait()


AS_NOBODY = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")


@pytest.mark.skipif(not ROOT or shutil.which("setpriv") is None,
                    reason="needs root and setpriv to run stprof as another user")
@pytest.mark.parametrize("owner,reason", [
    ((), "it runs as uid 0, stprof as uid 65534"),
    (("setpriv", "--reuid=65534", "--regid=100", "--clear-groups"),
     "it runs as group 100 (set-gid, say), stprof as group 65534"),
])
def test_attaching_to_another_users_process_says_so(owner: tuple[str, ...],
                                                    reason: str) -> None:
    _ptrace_or_skip()
    target = subprocess.Popen([*owner, "sleep", "30"])
    try:
        deadline = time.monotonic() + 10
        while Path(f"/proc/{target.pid}/comm").read_text().strip() != "sleep":
            assert time.monotonic() < deadline, "sleep did not start"
            time.sleep(0.02)
        ran = run_stprof("run", "-c", "ptrace", "-p", str(target.pid), timeout=30,
                         prefix=AS_NOBODY)
    finally:
        target.kill()
        target.wait()
    assert ran.returncode == 125, ran.stderr
    assert ran.lines() == [f"stprof: cannot attach to pid {target.pid}: {reason} "
                           "(run stprof as root)"]


# Runs the rest of its arguments inside a new Landlock layer that handles
# only the making of block devices, so that nothing stprof does is refused.
LANDLOCKED = """
import ctypes, os, struct, sys
libc = ctypes.CDLL(None, use_errno=True)
ruleset = ctypes.create_string_buffer(struct.pack("Q", 1 << 11))  # LANDLOCK_ACCESS_FS_MAKE_BLOCK
fd = libc.syscall(444, ruleset, 8, 0)
if fd < 0 or libc.prctl(38, 1, 0, 0, 0) != 0 or libc.syscall(446, fd, 0) != 0:
    sys.exit(f"landlock: {os.strerror(ctypes.get_errno())}")
os.execv(sys.argv[1], sys.argv[1:])
"""


def _landlock_available() -> bool:
    if not LINUX or os.uname().machine not in ("x86_64", "aarch64"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    return int(libc.syscall(444, None, 0, 1)) >= 1  # LANDLOCK_CREATE_RULESET_VERSION


@pytest.mark.skipif(not _landlock_available(), reason="needs Landlock (Linux 5.13+)")
def test_attaching_from_a_landlock_sandbox_says_so(sleeper: subprocess.Popen[bytes]) -> None:
    _ptrace_or_skip()
    ran = run_stprof("run", "-c", "ptrace", "-p", str(sleeper.pid), timeout=30,
                     prefix=(sys.executable, "-c", LANDLOCKED))
    assert ran.returncode == 125, ran.stderr
    assert ran.lines() == [
        f"stprof: cannot attach to pid {sleeper.pid}: stprof runs in a Landlock sandbox "
        "(1 layer), and a sandboxed process may trace only processes inside its sandbox "
        "(run stprof outside the sandbox)"]


def _sysctl(name: str) -> str | None:
    try:
        return Path("/proc/sys", name).read_text().strip()
    except OSError:
        return None


@pytest.mark.skipif(_sysctl("kernel/init_private") in (None, "0"),
                    reason="this kernel does not keep init private (kernel.init_private)")
def test_attaching_to_a_private_init_says_why() -> None:
    _ptrace_or_skip()
    ran = run_stprof("run", "-c", "ptrace", "-p", "1", timeout=30)
    assert ran.returncode == 125, ran.stderr
    assert ran.lines() == [
        "stprof: cannot attach to pid 1: this kernel keeps init private "
        "(kernel.init_private = 1): no process may trace or inspect pid 1 "
        "(the ebpf collector needs no ptrace: -c ebpf)"]


PROC_OUTPUT = "/proc/version"
OUTPUT_CASES = {
    "run -o": ["run", "-c", "ptrace", "-o", PROC_OUTPUT, "--", "touch", "{marker}"],
    "run --json": ["run", "-c", "ptrace", "--json", PROC_OUTPUT, "--", "touch", "{marker}"],
    "run --stacks": ["run", "-c", "ptrace", "--stacks", PROC_OUTPUT, "--", "touch", "{marker}"],
    "record -o": ["record", "-c", "ptrace", "--repeat", "1", "-o", PROC_OUTPUT, "--", "touch",
                  "{marker}"],
    "check --junit": ["check", "-c", "ptrace", "--baseline", "{record}", "--junit",
                      PROC_OUTPUT, "--", "touch", "{marker}"],
    "compare --json": ["compare", "{record}", "{record}", "--json", PROC_OUTPUT],
    "report -o": ["report", "{profile}", "-o", PROC_OUTPUT],
}


@pytest.mark.skipif(not Path(PROC_OUTPUT).exists(), reason="needs /proc/version")
@pytest.mark.parametrize("case", sorted(OUTPUT_CASES))
def test_an_output_that_cannot_be_written_is_refused_before_anything_runs(
        case: str, tmp_path: Path, good_record: Path) -> None:
    profile = tmp_path / "profile.json"
    _sample_profile().save(profile)
    marker = tmp_path / "ran"
    arguments = [word.format(marker=marker, record=good_record, profile=profile)
                 for word in OUTPUT_CASES[case]]
    version = Path(PROC_OUTPUT).read_text()
    ran = run_stprof(*arguments, timeout=60)
    assert ran.returncode == 2, ran.stderr
    assert ran.lines() == [f"stprof: {PROC_OUTPUT}: cannot write (no new file can be made "
                           "in /proc: No such file or directory)"]
    assert not marker.exists(), "the command ran"
    assert Path(PROC_OUTPUT).read_text() == version


@pytest.mark.skipif(not LINUX, reason="/dev/full and /proc as on Linux")
@pytest.mark.parametrize("target,reason", [("/dev/full", "No space left on device"),
                                           (PROC_OUTPUT, "Input/output error")])
def test_a_device_or_link_that_refuses_writes_is_refused_before_the_command_runs(
        tmp_path: Path, target: str, reason: str) -> None:
    """Opened for writing, such a file refuses the first write, even of nothing."""
    link = tmp_path / "report.txt"
    link.symlink_to(target)
    marker = tmp_path / "ran"
    ran = run_stprof("run", "-c", "ptrace", "-o", str(link), "--", "touch", str(marker),
                     timeout=60)
    assert ran.returncode == 2, ran.stderr
    assert ran.lines() == [f"stprof: {link}: cannot write ({reason})"]
    assert not marker.exists(), "the command ran"


def test_checking_an_output_leaves_nothing_behind(tmp_path: Path) -> None:
    _ptrace_or_skip()
    existing = tmp_path / "existing.txt"
    existing.write_text("kept until replaced\n")
    ran = run_stprof("run", "-c", "ptrace", "-o", str(tmp_path / "report.txt"), "--json",
                     str(existing), "--", "true", timeout=60)
    assert ran.returncode == 0, ran.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == ["existing.txt", "report.txt"]
    assert json.loads(existing.read_text())["command"] == ["true"]


def test_a_fifo_with_no_reader_yet_is_a_valid_output(tmp_path: Path) -> None:
    """Checking opens it without waiting; the report waits for its reader."""
    _ptrace_or_skip()
    fifo = tmp_path / "report.fifo"
    os.mkfifo(fifo)
    process = subprocess.Popen([*STPROF, "run", "-c", "ptrace", "-o", str(fifo), "--", "true"],
                               stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        time.sleep(1)
        report = fifo.read_text()
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == 0, stderr
    assert "syscalls" in report


@pytest.mark.parametrize("arguments,status,message", [
    (["run", "--", "no\nsuch"], 127, "stprof: 'no\\nsuch': command not found"),
    (["run", "--", "/no/such\ndir/x"], 127, "stprof: '/no/such\\ndir/x': command not found"),
    (["report", "missing\nfile.json"], 2, "stprof: 'missing\\nfile.json': no such file"),
    (["run", "-o", "/no/such\ndir/out", "--", "true"], 2,
     "stprof: '/no/such\\ndir/out': cannot write (No such file or directory)"),
    (["compare", "--budget", "a\rb", "x", "y"], 2, "stprof: 'a\\rb': no such file"),
    (["run", "--bo\ngus"], 2,
     "stprof: unrecognized arguments: --bo\\ngus (see 'stprof --help')"),
    pytest.param(["run", "-e", "re\nad", "--", "true"], 2,
                 f"stprof: -e: no syscall named re\\nad on {os.uname().machine} Linux",
                 marks=pytest.mark.skipif(not syscall_table(), reason="no syscall table here"),
                 id="syscall-name"),
])
def test_names_in_messages_are_quoted_on_one_line(arguments: list[str], status: int,
                                                  message: str) -> None:
    ran = run_stprof(*arguments, timeout=60)
    assert ran.returncode == status, ran.stderr
    assert ran.stderr.splitlines() == [message]


# ------------------------------------------------------------------ set-up (item 8)
FAKE_APT_GET = """#!/bin/sh
# apt-get as the set-up sees it while another apt-get holds the lists lock
# for the first two tries; it notes how it was called.
echo "$*" >> "$FAKE_DIR/calls"
echo "WARNING: apt's noise that must stay in the log"
case "$*" in
    *" update"*)
        tries=$(cat "$FAKE_DIR/tries" 2>/dev/null || echo 0)
        echo $((tries + 1)) > "$FAKE_DIR/tries"
        if [ "$tries" -lt 2 ]; then
            echo "E: Could not get lock /var/lib/apt/lists/lock." >&2
            exit 100
        fi ;;
esac
exit 0
"""


@pytest.mark.skipif(not ROOT or not LINUX or shutil.which("apt-get") is None,
                    reason="the system set-up runs as root on Debian/Ubuntu only")
def test_system_setup_waits_for_the_apt_lock_and_keeps_apt_quiet(tmp_path: Path) -> None:
    kernel_build = Path(f"/lib/modules/{os.uname().release}/build/include")
    tracing = Path("/sys/kernel/tracing/events").is_dir() or Path(
        "/sys/kernel/debug/tracing/events").is_dir()
    if not kernel_build.exists() or not tracing:
        pytest.skip("the set-up would link kernel headers or mount tracefs here")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "apt-get").write_text(FAKE_APT_GET)
    (bin_dir / "dpkg-query").write_text("#!/bin/sh\nexit 1\n")  # nothing is installed
    for tool in ("apt-get", "dpkg-query"):
        (bin_dir / tool).chmod(0o755)
    log = tmp_path / "apt.log"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_DIR": str(tmp_path),
           "STPROF_LOCK_WAIT": "30"}
    started = time.monotonic()
    result = subprocess.run(["sh", str(REPO / "tools/setup-system.sh"), str(log)], env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    said = result.stdout.splitlines()
    assert len(said) == 3, said
    assert said[0] == "setup: apt-get update"
    # the fake's lock is a pretence: no process holds the real one (or a real apt-get does)
    assert said[1].startswith("setup: waiting for ") and said[1].endswith(
        " to release the apt lists lock"), said
    assert said[2] == ("setup: installing python3-bpfcc strace linux-perf gcc libc6-dev "
                       "python3-venv util-linux chromium")
    assert result.stderr == ""
    calls = (tmp_path / "calls").read_text().splitlines()
    assert len(calls) == 4 and all("-o DPkg::Lock::Timeout=30" in call for call in calls)
    assert calls[-1].endswith("util-linux chromium") and " install " in calls[-1]
    assert "WARNING: apt's noise" in log.read_text()
    assert time.monotonic() - started < 30


@pytest.mark.skipif(not (REPO / ".stamps/venv").exists() or shutil.which("make") is None,
                    reason="needs a set-up worktree (make setup) and make")
def test_a_second_setup_is_quick_and_quiet() -> None:
    if (REPO / "pyproject.toml").stat().st_mtime > (REPO / ".stamps/venv").stat().st_mtime:
        pytest.skip("pyproject.toml changed since the last set-up: pip would run")
    started = time.monotonic()
    result = subprocess.run(["make", "-s", "setup"], cwd=REPO, capture_output=True, text=True,
                            timeout=120, check=False)
    seconds = time.monotonic() - started
    assert result.returncode == 0, result.stdout + result.stderr
    output = (result.stdout + result.stderr).splitlines()
    assert not [line for line in output if "WARNING" in line], output
    assert len(output) <= 2, output
    assert seconds < 5, f"a set-up with nothing to do took {seconds:.1f} s"


def test_pip_success_is_one_line_and_its_warnings_stay_in_the_log(tmp_path: Path) -> None:
    venv_bin = tmp_path / "venv" / "bin"
    venv_bin.mkdir(parents=True)
    fake_python = venv_bin / "python"
    fake_python.write_text(
        "#!/bin/sh\n"
        "echo \"WARNING: Location 'file:///opt/nowhere/simple/x/' is ignored: it is neither "
        "a file nor a directory.\" >&2\n"
        "case \"$*\" in *-e*) echo 'Successfully installed jinja2-3.1 stprof-0.1.0';; esac\n")
    fake_python.chmod(0o755)
    log = tmp_path / "stamps" / "pip.log"
    result = subprocess.run(["sh", str(REPO / "tools/setup-python.sh"), str(fake_python),
                             str(log)], cwd=REPO, capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.splitlines() == [
        f"setup: pip installed or upgraded 2 Python packages in {tmp_path / 'venv'} "
        f"(log: {log})"]
    assert log.read_text().count("WARNING: Location") == 2


def test_pip_failure_shows_its_output_and_fails(tmp_path: Path) -> None:
    fake_python = tmp_path / "python"
    fake_python.write_text("#!/bin/sh\necho 'WARNING: Location x is ignored'\n"
                           "echo 'ERROR: no matching distribution' >&2\nexit 1\n")
    fake_python.chmod(0o755)
    log = tmp_path / "stamps" / "pip.log"
    result = subprocess.run(["sh", str(REPO / "tools/setup-python.sh"), str(fake_python),
                             str(log)], cwd=REPO, capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "ERROR: no matching distribution",
        f"setup: pip failed (its output above; all of it in {log})"]
    assert "WARNING: Location x is ignored" in log.read_text()

