"""stprof run --timeline: Chrome Trace Event files from both Linux collectors, on the
real kernel, checked against the aggregates of the same run and against the rules of
the viewers that open them (docs/timeline.md)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from collector_guard import unavailable_reason
from workloads import build

from profiler.errors import InputError
from profiler.timeline import TimelineWriter, micros

STPROF = [sys.executable, "-m", "stprof"]
SPEEDSCOPE = "1.25.0"  # the speedscope release the real-importer test loads files in
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]
SLICE_KINDS = {"fault", "irq", "softirq"}  # every other X event is a syscall
GETPPID, ENOENT, CHILD, THREAD, PAGES = 5, 3, 4, 6, 10



def need(name: str) -> None:
    reason = unavailable_reason(name)
    if reason:
        pytest.skip(f"{name} collector unavailable here: {reason}")


def stprof(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*STPROF, *args], text=True, capture_output=True, check=False,
                          timeout=600)


@contextlib.contextmanager
def clock_bounds() -> Iterator[list[int]]:
    """CLOCK_MONOTONIC before and after the block (the clock of every timestamp)."""
    bounds = [time.monotonic_ns()]
    yield bounds
    bounds.append(time.monotonic_ns())


def timed_run(tmp_path: Path, collector: str, command: list[str], *options: str,
              status: int = 0) -> tuple[dict[str, Any], dict[str, Any],
                                        subprocess.CompletedProcess[str], list[int]]:
    trace, profile = tmp_path / "trace.json", tmp_path / "profile.json"
    with clock_bounds() as bounds:
        result = stprof("run", "-c", collector, "--kernel-stacks", "off", "--timeline",
                        str(trace), *options, "--json", str(profile), "--", *command)
    assert result.returncode == status, result.stderr
    return json.loads(trace.read_text()), json.loads(profile.read_text()), result, bounds


# ------------------------------------------------------------ the validators
def ns(value: float) -> int:
    """A ts/dur in microseconds with 3 decimals, back to whole nanoseconds."""
    return round(value * 1000)


def validate(doc: Any) -> None:
    """The documented shape (docs/timeline.md), key by key."""
    assert isinstance(doc, dict)
    assert isinstance(doc["traceEvents"], list)
    assert doc["displayTimeUnit"] == "ns"
    meta = doc["metadata"]["stprof"]
    for key in ("collector", "command", "clock", "origin_ns", "events", "not_recorded", "lost",
                "limit", "limit_reached", "threads", "fault_slices"):
        assert key in meta, key
    for kind in ("syscall", "fault", "interrupt"):
        assert isinstance(meta["events"][kind], int)
        assert isinstance(meta["not_recorded"][kind], int)
    for life in meta["threads"]:
        assert set(life) == {"tid", "pid", "start", "end"} and life["start"] <= life["end"]
    for event in doc["traceEvents"]:
        assert event["ph"] in ("X", "M", "C"), event
        assert isinstance(event["pid"], int) and isinstance(event["tid"], int)
        assert isinstance(event["ts"], (int, float)) and event["ts"] >= 0
        assert isinstance(event["name"], str) and isinstance(event["args"], dict)
        if event["ph"] == "X":
            assert isinstance(event["dur"], (int, float)) and event["dur"] >= 0
            assert isinstance(event["cat"], str) and event["cat"]
            if event["cat"] == "fault":
                assert set(event["args"]) in ({"minor", "in_syscall"}, {"major", "in_syscall"})
            elif event["cat"] in ("irq", "softirq"):
                assert isinstance(event["args"]["kind"], str)
            else:
                assert ("ret" in event["args"]) or event["args"] == {"returned": False}
                if "errno" in event["args"]:
                    assert event["args"]["errno"].startswith("E") and event["args"]["ret"] < 0
        elif event["ph"] == "M":
            assert event["name"] in ("process_name", "thread_name")
            assert isinstance(event["args"]["name"], str)
        else:
            assert all(isinstance(v, int) for v in event["args"].values())


def speedscope_opens(doc: dict[str, Any]) -> None:
    """What speedscope's trace-event importer needs: every event has ph and ts,
    every X a dur; X events become B/E pairs sorted by ts (B first at a tie), and
    each thread's E must close the frame its latest open B opened."""
    events = doc["traceEvents"]
    assert events and all("ph" in e and "ts" in e for e in events)
    pairs: list[tuple[int, int, int, int, str]] = []
    for order, e in enumerate(events):
        if e["ph"] != "X":
            continue
        assert e.get("dur") is not None
        key = f"{e['name']} {json.dumps(e['args'])}#{order}"
        pairs.append((ns(e["ts"]), 0, order, e["tid"], key))
        pairs.append((ns(e["ts"]) + ns(e["dur"]), 1, -order, e["tid"], key))
    stacks: dict[int, list[str]] = {}
    for _, phase, _, tid, key in sorted(pairs):
        stack = stacks.setdefault(tid, [])
        if phase == 0:
            stack.append(key)
        else:
            assert stack and stack[-1] == key, f"tid {tid}: {key} closes out of order"
            stack.pop()


def check_nesting(doc: dict[str, Any]) -> None:
    """A slice never outlasts the slice it starts in; in-syscall faults sit inside a
    syscall (or in a new thread's return from clone, before its first call), user
    faults inside none; interrupts inside whatever they interrupted."""
    by_tid: dict[int, list[dict[str, Any]]] = {}
    for e in doc["traceEvents"]:
        if e["ph"] == "X":
            by_tid.setdefault(e["tid"], []).append(e)
    for tid, slices in by_tid.items():
        slices.sort(key=lambda e: (ns(e["ts"]), -ns(e["dur"])))
        open_: list[tuple[int, dict[str, Any]]] = []
        first_call = min((ns(e["ts"]) for e in slices if e["cat"] not in SLICE_KINDS),
                         default=None)
        for e in slices:
            start, end = ns(e["ts"]), ns(e["ts"]) + ns(e["dur"])
            while open_ and (open_[-1][0] < start
                             or (open_[-1][0] == start and ns(e["dur"]) > 0)):
                open_.pop()
            if open_:
                assert end <= open_[-1][0], f"tid {tid}: {e} outlasts {open_[-1][1]}"
            if e["cat"] == "fault":
                parents = [p for _, p in open_ if p["cat"] not in SLICE_KINDS]
                # a new thread or child starts life returning from clone/fork, whose
                # slice is its parent's: its faults there have no syscall slice above
                in_clone_return = first_call is None or start < first_call
                assert bool(parents) == e["args"]["in_syscall"] or (
                    e["args"]["in_syscall"] and in_clone_return), (e, parents)
            open_.append((end, e))


def check_lives(doc: dict[str, Any], bounds: list[int]) -> None:
    """Every slice inside its thread's life; every life inside the test's own clock."""
    meta = doc["metadata"]["stprof"]
    origin = meta["origin_ns"]
    lives = {life["tid"]: life for life in meta["threads"]}
    for life in lives.values():
        assert bounds[0] <= origin + ns(life["start"]) <= origin + ns(life["end"]) <= bounds[1]
    for e in doc["traceEvents"]:
        if e["ph"] != "X":
            continue
        life = lives[e["tid"]]
        assert ns(life["start"]) <= ns(e["ts"]), (e, life)
        assert ns(e["ts"]) + ns(e["dur"]) <= ns(life["end"]), (e, life)


def syscalls_of(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in doc["traceEvents"] if e["ph"] == "X" and e["cat"] not in SLICE_KINDS]


# ------------------------------------------------------------ acceptance
def test_groundtruth_timeline_matches_the_aggregates(tmp_path: Path, collector: str) -> None:
    program = str(build("groundtruth"))
    doc, profile, _, bounds = timed_run(
        tmp_path, collector, [program, *map(str, (GETPPID, ENOENT, CHILD, THREAD, PAGES))])
    validate(doc)
    speedscope_opens(doc)
    check_nesting(doc)
    check_lives(doc, bounds)
    calls = syscalls_of(doc)
    assert Counter(e["name"] for e in calls) == {
        name: s["calls"] for name, s in profile["syscalls"].items() if s["calls"]}
    assert Counter(e["pid"] for e in calls) == {
        p["pid"]: p["syscalls"] for p in profile["processes"]}
    root = profile["processes"][0]["pid"]
    lives = doc["metadata"]["stprof"]["threads"]
    child = next(life["tid"] for life in lives if life["pid"] != root)
    thread = next(life["tid"] for life in lives if life["pid"] == root and life["tid"] != root)
    getppid = Counter(e["tid"] for e in calls if e["name"] == "getppid")
    assert getppid == {root: GETPPID, child: CHILD, thread: THREAD}
    chdirs = [e for e in calls if e["name"] == "chdir"]
    assert [(e["args"]["errno"], e["args"]["ret"]) for e in chdirs] == [("ENOENT", -2)] * ENOENT
    assert all(e["cat"] == "file" for e in chdirs)
    assert all(e["cat"] == "other" for e in calls if e["name"] == "getppid")
    names = {(e["name"], e["tid"]): e["args"]["name"] for e in doc["traceEvents"]
             if e["ph"] == "M"}
    assert names[("process_name", root)] == "groundtruth"
    assert names[("thread_name", thread)].startswith("groundtruth")
    counters = [e for e in doc["traceEvents"] if e["ph"] == "C" and e["pid"] == root]
    assert counters and sum(counters[-1]["args"].values()) >= PAGES
    if collector == "ebpf":  # one slice per timed fault (the fault histogram's count)
        assert doc["metadata"]["stprof"]["events"]["fault"] == sum(profile["faults"]["hist"])
        assert sum(profile["faults"]["hist"]) >= PAGES
    else:
        assert not [e for e in doc["traceEvents"] if e.get("cat") in SLICE_KINDS]
        assert doc["metadata"]["stprof"]["fault_slices"].startswith("none")


def test_a_call_cut_short_by_death_ends_with_its_thread(tmp_path: Path,
                                                         collector: str) -> None:
    """raise(SIGKILL): the call in progress when the thread dies is counted and its
    slice ends by the thread's end."""
    program = str(build("groundtruth"))
    doc, profile, _, bounds = timed_run(tmp_path, collector,
                                        [program, "2", "0", "0", "0", "0", "SIGKILL"],
                                        status=128 + 9)
    validate(doc)
    check_nesting(doc)
    check_lives(doc, bounds)
    calls = syscalls_of(doc)
    assert Counter(e["name"] for e in calls) == {
        name: s["calls"] for name, s in profile["syscalls"].items() if s["calls"]}
    # the kernel returns from it (eBPF sees the exit) and kills at the return to user
    # mode; ptrace gets no exit stop with SIGKILL pending: a call that never returned
    tgkill = [e["args"] for e in calls if e["name"] == "tgkill"]
    assert tgkill == ([{"ret": 0}] if collector == "ebpf" else [{"returned": False}])


def test_dd_read_holds_its_fault_slices(tmp_path: Path) -> None:
    need("ebpf")
    doc, profile, _, bounds = timed_run(
        tmp_path, "ebpf", ["dd", "if=/dev/zero", "of=/dev/null", "bs=10M", "count=1",
                           "status=none"])
    validate(doc)
    check_nesting(doc)
    check_lives(doc, bounds)
    speedscope_opens(doc)
    reads = [e for e in syscalls_of(doc) if e["name"] == "read"]
    big = max(reads, key=lambda e: e["dur"])
    assert big["args"]["ret"] == 10 * 1024 * 1024
    start, end = ns(big["ts"]), ns(big["ts"]) + ns(big["dur"])
    inside = [e for e in doc["traceEvents"] if e["ph"] == "X" and e["cat"] == "fault"
              and e["tid"] == big["tid"] and start <= ns(e["ts"]) and
              ns(e["ts"]) + ns(e["dur"]) <= end]
    pages = 10 * 1024 * 1024 // os.sysconf("SC_PAGESIZE")
    assert pages * 0.98 <= len(inside) <= pages * 1.02
    in_reads = sum(ns(e["dur"]) for e in doc["traceEvents"] if e["ph"] == "X"
                   and e["cat"] == "fault" and any(
                       ns(r["ts"]) <= ns(e["ts"]) <= ns(r["ts"]) + ns(r["dur"])
                       and r["tid"] == e["tid"] for r in reads))
    fault_ns = profile["syscalls"]["read"]["fault_ns"]
    assert abs(in_reads - fault_ns) <= fault_ns * 0.01


def test_limit_keeps_the_first_events_and_says_how_many_were_not_recorded(
        tmp_path: Path) -> None:
    need("ebpf")
    doc, profile, result, _ = timed_run(
        tmp_path, "ebpf", ["dd", "if=/dev/zero", "of=/dev/null", "bs=1", "count=200000",
                           "status=none"], "--timeline-limit", "100000")
    validate(doc)
    meta = doc["metadata"]["stprof"]
    total = sum(s["calls"] for s in profile["syscalls"].values())
    assert profile["syscalls"]["read"]["calls"] >= 200_000
    assert profile["syscalls"]["write"]["calls"] >= 200_000
    assert len(syscalls_of(doc)) == 100_000 == meta["events"]["syscall"]
    assert meta["limit_reached"] is True
    assert meta["not_recorded"]["syscall"] == total - 100_000
    note = next(n for n in profile["notes"] if "not recorded" in n)
    assert f"{total - 100_000} syscall" in note and "--timeline-limit 100000" in note
    assert f"{total - 100_000} syscall" in result.stderr


def test_ptrace_limit(tmp_path: Path) -> None:
    need("ptrace")
    program = str(build("groundtruth"))
    doc, profile, _, _ = timed_run(tmp_path, "ptrace", [program, "100", "0", "0", "0", "0"],
                                   "--timeline-limit", "50")
    validate(doc)
    total = sum(s["calls"] for s in profile["syscalls"].values())
    assert len(syscalls_of(doc)) == 50
    assert doc["metadata"]["stprof"]["not_recorded"]["syscall"] == total - 50


def test_perf_buffer_gives_the_same_timeline(tmp_path: Path) -> None:
    """The fallback for kernels without the BPF ring buffer, forced here."""
    need("ebpf")
    from collectors.base import Options
    from collectors.ebpf import EbpfCollector
    from collectors.ebpf_plan import TIMELINE_PERF

    trace = tmp_path / "trace.json"
    command = [str(build("groundtruth")), *map(str, (GETPPID, ENOENT, CHILD, THREAD, PAGES))]
    with clock_bounds() as bounds, EbpfCollector(
            Options(command=command, kernel_stacks="off", timeline=str(trace)),
            timeline_buffer=TIMELINE_PERF) as collector:
        profile = collector.run()
    doc = json.loads(trace.read_text())
    validate(doc)
    check_nesting(doc)
    check_lives(doc, bounds)
    meta = doc["metadata"]["stprof"]
    assert meta["buffer"] == "perf buffer" and sum(meta["not_recorded"].values()) == 0
    assert Counter(e["name"] for e in syscalls_of(doc)) == {
        name: s.calls for name, s in profile.syscalls.items() if s.calls}
    assert meta["events"]["fault"] == sum(profile.faults.hist) >= PAGES


def test_events_lost_in_the_kernel_are_counted_and_said(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A ring buffer of one page cannot hold a syscall storm's backlog: what the
    kernel could not reserve is counted, in the file and in the notes."""
    need("ebpf")
    from collectors import ebpf_plan
    from collectors.base import Options
    from collectors.ebpf import EbpfCollector

    monkeypatch.setattr(ebpf_plan, "TIMELINE_PAGES", 1)
    trace = tmp_path / "trace.json"
    command = ["dd", "if=/dev/zero", "of=/dev/null", "bs=1", "count=50000", "status=none"]
    with EbpfCollector(Options(command=command, kernel_stacks="off",
                               timeline=str(trace))) as collector:
        profile = collector.run()
    doc = json.loads(trace.read_text())
    validate(doc)
    meta = doc["metadata"]["stprof"]
    lost = meta["lost"]["syscall"]
    assert lost > 0 and meta["not_recorded"]["syscall"] == lost
    assert meta["events"]["syscall"] + lost == profile.total_calls
    assert len(syscalls_of(doc)) == meta["events"]["syscall"]
    note = next(n for n in profile.notes if "not recorded" in n)
    assert f"{lost} syscall" in note and "lost in the kernel's ring buffer" in note


def test_without_timeline_no_event_code_is_loaded() -> None:
    need("ebpf")
    from collectors.base import Options
    from collectors.ebpf import EbpfCollector

    with EbpfCollector(Options(command=["true"], kernel_stacks="off")) as plain:
        assert plain.plan is not None and "-DTIMELINE=0" in plain.plan.cflags()
        with pytest.raises(KeyError):
            plain._bpf[b"tl_events"]


# ------------------------------------------------------------ a real viewer
@pytest.fixture(scope="module")
def speedscope() -> Path:
    """speedscope's released app (npm package ``speedscope``), fetched once into
    tests/.build/ with npm."""
    where = Path(__file__).resolve().parent / ".build" / f"speedscope-{SPEEDSCOPE}"
    index = where / "package" / "dist" / "release" / "index.html"
    if index.is_file():
        return index
    npm = shutil.which("npm")
    if npm is None or not CHROMIUM.exists():
        pytest.skip("needs npm (to fetch speedscope) and /usr/bin/chromium")
    where.mkdir(parents=True, exist_ok=True)
    packed = subprocess.run([npm, "pack", f"speedscope@{SPEEDSCOPE}", "--pack-destination",
                             str(where)], capture_output=True, text=True, timeout=300,
                            check=False)
    if packed.returncode != 0:
        pytest.skip(f"cannot fetch speedscope with npm: {packed.stderr.strip()[-200:]}")
    with tarfile.open(where / f"speedscope-{SPEEDSCOPE}.tgz") as archive:
        archive.extractall(where, filter="data")
    return index


def test_speedscope_opens_the_file(tmp_path: Path, collector: str, speedscope: Path) -> None:
    """The file given to speedscope's own page, in headless Chromium: it is imported
    as a Trace Event Format profile, one profile a thread, with no error and none of
    the warnings it gives for slices that do not nest ("Tried to end ...")."""
    from playwright.sync_api import sync_playwright

    program = str(build("groundtruth"))
    doc, _, _, _ = timed_run(tmp_path, collector,
                             [program, *map(str, (GETPPID, ENOENT, CHILD, THREAD, PAGES))])
    threads = len(doc["metadata"]["stprof"]["threads"])
    trace = tmp_path / "trace.json"
    problems: list[str] = []  # errors, and the warnings speedscope gives for bad nesting
    logs: list[str] = []

    def console(message: Any) -> None:
        graphics = "GL Driver" in message.text or "WebGL" in message.text
        if message.type in ("error", "warning") and not graphics:
            problems.append(message.text)
        else:
            logs.append(message.text)

    def dialog(box: Any) -> None:  # "Unrecognized format!" comes as an alert
        problems.append(box.message)
        box.dismiss()

    with sync_playwright() as play:
        browser = play.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.on("console", console)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.on("dialog", dialog)
            page.goto(speedscope.as_uri())
            page.set_input_files("input[type=file]", str(trace))
            page.wait_for_function("document.title.endsWith('trace.json - speedscope')",
                                   timeout=30_000)
            shown = page.evaluate("document.body.innerText")
        finally:
            browser.close()
    assert not problems
    assert "Importing as Trace Event Format profile" in logs
    assert f"(1/{threads})" in shown and "groundtruth (pid" in shown


# ------------------------------------------------------------ refusals
@contextlib.contextmanager
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory nobody may write to, root included (a read-only tmpfs)."""
    where = tmp_path / "ro"
    where.mkdir()
    if os.geteuid() != 0:
        where.chmod(0o500)
        yield where
        return
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro", "none", str(where)],
                      capture_output=True, check=False).returncode != 0:
        pytest.skip("cannot mount a read-only tmpfs here")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=False)


@pytest.mark.parametrize("where", ["a directory", "a missing directory", "a read-only one"])
def test_unwritable_timeline_is_refused_before_the_command_runs(tmp_path: Path,
                                                                where: str) -> None:
    need("ptrace")
    marker = tmp_path / "ran"
    with contextlib.ExitStack() as stack:
        if where == "a directory":
            path, reason = tmp_path, "Is a directory"
        elif where == "a missing directory":
            path, reason = tmp_path / "missing" / "t.json", "No such file or directory"
        else:
            path = stack.enter_context(read_only_dir(tmp_path)) / "t.json"
            why = "Read-only file system" if os.geteuid() == 0 else "Permission denied"
            reason = f"no new file can be made in {path.parent}: {why}"
        result = stprof("run", "-c", "ptrace", "--timeline", str(path), "--",
                        "touch", str(marker))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"stprof: {path}: cannot write ({reason})"]
    assert not marker.exists()


def test_report_cannot_make_a_timeline(tmp_path: Path) -> None:
    saved = tmp_path / "p.json"
    saved.write_text("{}")
    result = stprof("report", "--format", "timeline", str(saved))
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1
    assert "cannot be made from a saved profile" in result.stderr
    assert saved.read_text() == "{}"


# ------------------------------------------------------------ the writer alone
def test_micros_are_exact() -> None:
    assert micros(0) == "0.000"
    assert micros(1) == "0.001"
    assert micros(123_456_789_012) == "123456789.012"
    assert micros(-1500) == "-1.500"


def test_writer_limit_stops_everything_and_counts_by_kind(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    writer = TimelineWriter(path, limit=3, origin_ns=1000)
    writer.thread(7, 7, 1000)
    for i in range(5):
        writer.syscall(7, 7, "read", 2000 + 100 * i, 50, 1)
        writer.fault(7, 7, 2010 + 100 * i, 10, major=False, in_syscall=True)
    summary = writer.finish(5000, {7: "cat"}, {"collector": "test", "command": ["cat"],
                                               "fault_slices": "timed"})
    doc = json.loads(path.read_text())
    validate(doc)
    check_nesting(doc)
    speedscope_opens(doc)
    assert summary.recorded == {"syscall": 3, "fault": 2, "interrupt": 0}
    assert summary.not_recorded == {"syscall": 2, "fault": 3, "interrupt": 0}
    assert summary.notes() == [f"timeline {path}: events not recorded: 2 syscall, 3 fault "
                               "(--timeline-limit 3 reached)"]
    assert not list(tmp_path.glob(".*.tmp"))


def test_writer_refuses_an_unwritable_place(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot write"):
        TimelineWriter(tmp_path / "missing" / "t.json")


def test_only_the_collectors_that_write_a_timeline_say_so() -> None:
    """stprof run refuses --timeline (exit 2, before the command runs) for a collector
    that would ignore it: DTrace, whose program prints no per-event lines yet."""
    from collectors import collector_class

    assert collector_class("ebpf").writes_timeline
    assert collector_class("ptrace").writes_timeline
    assert not collector_class("dtrace").writes_timeline
