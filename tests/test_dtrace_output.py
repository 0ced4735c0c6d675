"""The parser of dtrace's output, against fixtures in dtrace's documented formats.

Fixtures: tests/fixtures/dtrace/ (README.md there says where each format comes
from: FreeBSD's dt_consume.c, dt_handle.c, dtrace(1)'s STRUCTURED OUTPUT and
its test suite's .out files). Their figures are known truth: the tests check
exact values.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from collectors.dtrace_output import (
    DtraceRecords,
    failure_error,
    fill_profile,
    fold_stack,
    frame_function,
    parse_json,
    parse_output,
    parse_quantize_row,
    parse_text,
    quantize_bucket,
    stderr_notes,
)
from collectors.dtrace_program import FAULT_PROBES, ProgramSpec
from profiler.errors import CollectorUnavailable, TracingError
from profiler.model import Profile, bucket_bounds

FIXTURES = Path(__file__).parent / "fixtures" / "dtrace"
DD_SPEC = ProgramSpec(stacks="faults", trap_function="trap", fault_probe=FAULT_PROBES[0])
KILLED_SPEC = ProgramSpec(stacks="off", trap_function="trap", fault_probe=None)
SMALL_SPEC = ProgramSpec(stacks="off", trap_function=None, fault_probe=None)
FREEBSD_ERRNOS = {2: "ENOENT", 25: "ENOTTY"}


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def profile_from(name: str, spec: ProgramSpec, stderr: str = "") -> Profile:
    output_format = "json" if name.endswith(".json") else "text"
    spec = ProgramSpec(**{**spec.__dict__, "output": output_format})
    records = parse_output(fixture(name), output_format)
    return fill_profile(Profile(collector="dtrace"), records, spec, stderr,
                        errno_name=lambda n: FREEBSD_ERRNOS.get(n, f"E{n}"))


# ------------------------------------------------------------- histograms
@pytest.mark.parametrize(("row", "bucket"), [(0, 0), (1, 1), (2, 2), (4, 3), (1024, 11),
                                             (268435456, 29), (-1, 0), (-64, 0)])
def test_quantize_rows_map_onto_model_buckets(row: int, bucket: int) -> None:
    assert quantize_bucket(row) == bucket


@pytest.mark.parametrize("power", range(0, 40))
def test_a_quantize_row_covers_the_same_range_as_its_model_bucket(power: int) -> None:
    value = 1 << power  # dtrace's row v counts [v, 2v)
    assert bucket_bounds(quantize_bucket(value)) == (value, 2 * value)


def test_quantize_rows_parse_and_headers_do_not() -> None:
    bar, blank = "@" * 20 + " " * 20, " " * 40
    assert parse_quantize_row(f"            1024 |{bar} 1        ") == (1024, 1)
    assert parse_quantize_row(f"               0 |{blank} 0        ") == (0, 0)
    header = "           value  ------------- Distribution ------------- count    "
    assert parse_quantize_row(header) is None
    assert parse_quantize_row("") is None


# ---------------------------------------------------------------- stacks
@pytest.mark.parametrize(("frame", "function"), [
    ("kernel`pagezero+0x10", "pagezero"),
    ("              kernel`trap+0x4ea", "trap"),
    ("kernel`0xffffffff80e018e2", "0xffffffff80e018e2"),
    ("0xffffffff80e018e2", "0xffffffff80e018e2"),
    ("zfs.ko`zio_execute", "zio_execute"),
])
def test_frames_lose_module_and_offset(frame: str, function: str) -> None:
    assert frame_function(frame) == function


def test_stacks_fold_root_first() -> None:
    frames = ("kernel`pagezero+0x10", "kernel`trap+0x4ea", "kernel`0xffffffff80e018e2")
    assert fold_stack(frames) == "0xffffffff80e018e2;trap;pagezero"


# ------------------------------------------------------- a full text run
def test_text_run_gives_exact_syscall_figures() -> None:
    profile = profile_from("text-dd.out", DD_SPEC)
    assert profile.total_calls == 23
    assert profile.total_errors == 3
    assert profile.total_syscall_ns == 397310780
    read = profile.syscalls["read"]
    assert (read.calls, read.total_ns, read.min_ns, read.max_ns) == (2, 395812000, 1500, 395810500)
    assert read.hist[11] == 1 and read.hist[29] == 1 and sum(read.hist) == 2
    assert len(read.hist) == 31  # dtrace's empty row after the last used one
    assert (read.faults, read.fault_ns) == (2560, 198000000)
    openat = profile.syscalls["openat"]
    assert (openat.calls, openat.errors, openat.errnos) == (4, 2, {"ENOENT": 2})
    assert [i for i, n in enumerate(openat.hist) for _ in range(n)] == [14, 15, 15, 16]
    assert profile.syscalls["ioctl"].errnos == {"ENOTTY": 1}
    assert profile.syscalls["mmap"].total_ns == 770581
    assert profile.syscalls["mmap"].faults == 0 and profile.syscalls["mmap"].fault_ns == 0
    assert profile.syscalls["execve"].min_ns == profile.syscalls["execve"].max_ns == 412000


def test_text_run_gives_faults_traps_processes_and_stacks() -> None:
    profile = profile_from("text-dd.out", DD_SPEC)
    faults = profile.faults
    assert (faults.count, faults.user, faults.in_syscall) == (7740, 5180, 2560)
    assert (faults.total_ns, faults.user_ns, faults.in_syscall_ns) == (570000000, 372000000,
                                                                       198000000)
    assert faults.hist[14:17] == [3000, 4000, 740] and sum(faults.hist) == 7740
    assert faults.method == "dtrace fbt vm_fault_trap entry/return"
    assert profile.timing["traps_user"] == 5185
    assert profile.timing["trap_user_ns"] == 380762894
    assert profile.timing["traps_in_syscall"] == 2560
    assert profile.timing["trap_in_syscall_ns"] == 201234567
    [process] = profile.processes
    assert (process.pid, process.ppid, process.comm) == (4242, 4241, "dd")
    assert (process.syscalls, process.syscall_errors, process.syscall_ns) == (23, 3, 397310780)
    assert profile.stacks is not None
    assert profile.stacks.samples == 356
    assert profile.stacks.folded == {
        "0xffffffff80e018e2;trap;pagezero": 346,
        "0xffffffff80e018e2;trap;PHYS_TO_VM_PAGE": 5,
        "0xffffffff80e018e2;trap;vm_map_lookup_done": 5,
    }
    assert profile.stacks.top_functions(1) == [("pagezero", 346)]
    assert profile.notes == []


def test_the_json_run_gives_the_same_profile_as_the_text_run() -> None:
    from_text = profile_from("text-dd.out", DD_SPEC).to_dict()
    from_json = profile_from("json-dd.json", DD_SPEC).to_dict()
    assert from_json["timing"].pop("dtrace_output") == "json"
    assert from_text["timing"].pop("dtrace_output") == "text"
    assert from_json == from_text
    assert from_json["syscalls"]["read"]["calls"] == 2  # not two empty profiles


def test_default_errno_names_come_from_this_host() -> None:
    records = parse_text(fixture("text-dd.out"))
    profile = fill_profile(Profile(), records, DD_SPEC)
    assert profile.syscalls["openat"].errnos == {"ENOENT": 2}  # 2 is ENOENT everywhere


# ---------------------------------------------------------- edge cases
def test_an_empty_run_is_complete_and_empty() -> None:
    for name in ("text-empty.out", "json-empty.json"):
        profile = profile_from(name, SMALL_SPEC)
        assert profile.syscalls == {} and profile.processes == []
        assert profile.notes == [], name


def test_a_run_cut_before_end_says_so() -> None:
    records = parse_text(fixture("text-cut.out"))
    assert records.ready and not records.complete
    profile = profile_from("text-cut.out", SMALL_SPEC)
    assert profile.syscalls == {}
    assert any("end marker" in note for note in profile.notes)


def test_a_killed_target_misses_only_its_unfinished_call() -> None:
    profile = profile_from("text-killed.out", KILLED_SPEC, fixture("text-killed.stderr"))
    assert sorted(profile.syscalls) == ["close", "execve", "mmap"]
    assert profile.total_calls == 4 and profile.total_syscall_ns == 431000
    assert profile.timing["traps_user"] == 41 and profile.timing["traps_in_syscall"] == 0
    assert profile.faults.method == "none" and profile.faults.total_ns is None
    assert profile.notes == []  # "pid N terminated by 9" is stprof's to report, not a note


def test_unknown_lines_are_reported_not_dropped() -> None:
    records = parse_text("stprof:ready\nsomething else\nstprof:sc_calls read x\nstprof:end\n")
    assert records.unparsed == ["something else", "stprof:sc_calls read x"]
    profile = fill_profile(Profile(), records, SMALL_SPEC)
    assert any("2 line(s) of dtrace output not understood" in note for note in profile.notes)


def test_a_quantize_table_without_its_end_is_unparsed() -> None:
    records = parse_text("stprof:sc_hist read\n\n           value  ---- count\n")
    assert records.hists == {} and records.unparsed == ["stprof:sc_hist read"]


def test_process_names_spaces_and_execs() -> None:
    records = parse_text("stprof:proc_calls 10 1 sh 2\nstprof:proc_calls 10 1 my prog 5\n"
                         "stprof:proc_ns 10 1 my prog 700\nstprof:proc_ns 10 1 sh 50\n")
    profile = fill_profile(Profile(), records, SMALL_SPEC)
    [process] = profile.processes
    assert (process.comm, process.syscalls, process.syscall_ns) == ("my prog", 7, 750)


# ---------------------------------------------------------------- JSON
def test_json_keys_may_be_bare_values() -> None:
    document = {"dtrace": {"probes": [{"name": "END", "output": [
        {"aggregation-name": "@sc_calls", "aggregation-data": [{"keys": ["read"], "count": 7}]},
        {"aggregation-name": "sc_errno",
         "aggregation-data": [{"keys": ["read", 9], "count": 2}]},
        {"message": "stprof:end\n"},
    ]}]}}
    records = parse_json(json.dumps(document))
    assert records.scalars["sc_calls"] == {("read",): 7}
    assert records.scalars["sc_errno"] == {("read", 9): 2}
    assert records.complete


def test_json_drop_records_become_notes() -> None:
    profile = profile_from("json-drops.json", SMALL_SPEC)
    assert profile.syscalls["getpid"].calls == 1000
    assert profile.notes == [
        "dtrace: 12 drops on CPU 0 (principal buffer full; records were lost)",
        "dtrace: 7 dynamic variable drops (dynamic variable space full; some call and fault "
        "times were lost)",
    ]


def test_unreadable_json_is_a_note_not_a_crash() -> None:
    records = parse_json('{"dtrace": {"probes": [{"name": "BEGIN"')
    assert records.unparsed and not records.complete
    assert parse_json("").unparsed == []


# --------------------------------------------------------------- stderr
def test_drops_and_errors_become_summarised_notes() -> None:
    notes = stderr_notes(fixture("text-drops.stderr"))
    assert notes == [
        "dtrace: 15 drops on CPU 0, 1 (principal buffer full; records were lost)",
        "dtrace: 7 dynamic variable drops with non-empty dirty list (dynamic variable space "
        "full; some call and fault times were lost)",
        "dtrace: 2 aggregation drops on CPU 1 (aggregation buffer full; figures undercount)",
        "dtrace: 3 errors on enabled probes (the affected events were not counted), e.g. "
        "error on enabled probe ID 7 (ID 86012: fbt::vm_fault_trap:return): invalid address "
        "(0x0) in action #3 at DIF offset 28; error on enabled probe ID 3 (ID 512: "
        "syscall::read:return): out of scratch space in action #2 at DIF offset 40",
        "dtrace: buffer size lowered to 2m",
    ]


def test_drops_reach_the_profile() -> None:
    profile = profile_from("text-drops.out", SMALL_SPEC, fixture("text-drops.stderr"))
    assert profile.syscalls["getpid"].total_ns == 512000
    assert len(profile.notes) == 5 and profile.notes[0].startswith("dtrace: 15 drops")


def test_one_error_is_kept_verbatim_and_tagged_drops_are_read() -> None:
    notes = stderr_notes("dtrace: error on enabled probe ID 2 (ID 50: syscall::open:entry): "
                         "invalid address (0x9af1b) in action #1 at DIF offset 52\n"
                         "dtrace: [DTRACEDROP_DYNAMIC] 1 dynamic variable drop\n")
    assert notes == [
        "dtrace: 1 dynamic variable drops (dynamic variable space full; some call and fault "
        "times were lost)",
        "dtrace: error on enabled probe ID 2 (ID 50: syscall::open:entry): invalid address "
        "(0x9af1b) in action #1 at DIF offset 52",
    ]


# --------------------------------------------------------- fatal errors
@pytest.mark.parametrize(("stderr", "kind", "message", "fix"), [
    ("dtrace: failed to initialize dtrace: DTrace requires additional privileges\n",
     CollectorUnavailable, "DTrace requires additional privileges", "root"),
    ("dtrace: failed to initialize dtrace: DTrace device not available on system\n",
     CollectorUnavailable, "the DTrace device is not available", "kldload dtraceall"),
    ("dtrace: failed to compile script x.d: line 3: probe description fbt::trap:entry does "
     "not match any probes\n", CollectorUnavailable, "DTrace providers are not loaded",
     "kldload dtraceall"),
    ("dtrace: invalid probe specifier syscall:::entry: probe description syscall:::entry does "
     "not match any probes. System Integrity Protection is on\n", CollectorUnavailable,
     "System Integrity Protection blocks DTrace probes", "csrutil"),
    ("dtrace: failed to grab pid 99999: No such process\n", TracingError,
     "dtrace failed: dtrace: failed to grab pid 99999: No such process", ""),
    ("", TracingError, "dtrace failed: no message", ""),
])
def test_fatal_messages_map_to_one_line_errors(stderr: str, kind: type, message: str,
                                               fix: str) -> None:
    error = failure_error(stderr)
    assert type(error) is kind
    assert error.message.startswith(message)
    assert fix in error.fix
    assert "\n" not in error.one_line()


def test_records_helpers_accumulate() -> None:
    records = DtraceRecords()
    records.add_scalar("sc_calls", ("read",), 2)
    records.add_scalar("sc_calls", ("read",), 3)
    records.add_hist("sc_hist", ("read",), [0, 1])
    records.add_hist("sc_hist", ("read",), [0, 0, 2])
    assert records.scalar("sc_calls") == {("read",): 5}
    assert records.hists["sc_hist"][("read",)] == [0, 1, 2]
