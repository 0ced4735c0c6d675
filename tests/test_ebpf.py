"""The eBPF collector against the real kernel: known workloads, exact counts.

Needs root, bcc and kernel headers (EbpfCollector.availability() says which
is missing); the CI machines have them, so these tests run there.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from collector_guard import unavailable_reason
from workloads import build

from collectors import ebpf_plan
from collectors.base import Options
from collectors.ebpf import EbpfCollector
from collectors.ebpf_plan import FAULT_SAMPLING, FAULT_SW_PAIR
from profiler.model import Profile
from profiler.target import Credentials

_UNAVAILABLE = unavailable_reason("ebpf")
pytestmark = [
    pytest.mark.root,
    pytest.mark.bcc,
    pytest.mark.skipif(bool(_UNAVAILABLE), reason=f"ebpf collector: {_UNAVAILABLE}"),
]

DD_10M = ["dd", "if=/dev/zero", "of=/dev/null", "bs=10M", "count=1", "status=none"]
DD_100M = ["dd", "if=/dev/zero", "of=/dev/null", "bs=100M", "count=1", "status=none"]
PAGE_SIZE = os.sysconf("SC_PAGESIZE")


# ----------------------------------------------------------------- helpers
@pytest.fixture(scope="module")
def collector() -> Iterator[EbpfCollector]:
    """One prepared collector (default options) shared by the tests that allow it."""
    with EbpfCollector(Options(command=["true"])) as prepared:
        yield prepared


def run(collector: EbpfCollector, command: list[str]) -> Profile:
    collector.options.command = command
    return collector.run()


def profile_of(command: list[str], **options: object) -> Profile:
    fault_method = options.pop("fault_method", None)
    raw_syscalls = options.pop("raw_syscalls", None)
    raw_events = options.pop("raw_events", None)
    with EbpfCollector(Options(command=command, **options),  # type: ignore[arg-type]
                       fault_method=fault_method,  # type: ignore[arg-type]
                       raw_syscalls=raw_syscalls,  # type: ignore[arg-type]
                       raw_events=raw_events) as fresh:  # type: ignore[arg-type]
        return fresh.run()


def calls(profile: Profile, name: str) -> int:
    stats = profile.syscalls.get(name)
    return stats.calls if stats else 0


def perf_stat_page_faults(command: list[str]) -> int:
    result = subprocess.run(["perf", "stat", "-x,", "-e", "page-faults", "--", *command],
                            capture_output=True, text=True, check=True)
    for line in result.stderr.splitlines():
        fields = line.split(",")
        if len(fields) > 2 and fields[2].startswith("page-faults"):
            return int(fields[0])
    raise AssertionError(f"no page-faults line in perf stat output: {result.stderr!r}")


def assert_budget_adds_up(profile: Profile, max_unexplained: float = 0.05) -> None:
    budget = profile.budget
    assert budget is not None
    assert budget.lifetime_ns > 0
    assert sum(budget.parts().values()) == budget.lifetime_ns
    assert all(value >= 0 for value in budget.parts().values()), budget
    assert budget.unexplained_ns <= max_unexplained * budget.lifetime_ns, budget


# ------------------------------------------------------------ ground truth
GETPPID, ENOENT, CHILD, THREAD, PAGES, EXIT = 2000, 300, 700, 500, 1000, 3


@pytest.fixture(scope="module")
def groundtruth(collector: EbpfCollector) -> Profile:
    binary = build("groundtruth")
    return run(collector, [str(binary), str(GETPPID), str(ENOENT), str(CHILD), str(THREAD),
                           str(PAGES), str(EXIT)])


def test_groundtruth_counts_are_exact(groundtruth: Profile) -> None:
    assert groundtruth.collector == "ebpf"
    assert groundtruth.exit_status == EXIT
    assert calls(groundtruth, "getppid") == GETPPID + CHILD + THREAD
    chdir = groundtruth.syscalls["chdir"]
    assert (chdir.calls, chdir.errors, chdir.errnos) == (ENOENT, ENOENT, {"ENOENT": ENOENT})
    assert calls(groundtruth, "execve") == 1  # stprof's own pre-exec calls are not counted
    assert groundtruth.syscalls["getppid"].hist
    assert sum(groundtruth.syscalls["getppid"].hist) == GETPPID + CHILD + THREAD


def test_groundtruth_per_process_split(groundtruth: Profile) -> None:
    root, *children = groundtruth.processes
    assert len(children) == 1
    child = children[0]
    assert root.ppid == os.getpid() and child.ppid == root.pid
    assert root.threads == 2 and child.threads == 1
    assert root.exit_status == EXIT and child.exit_status == 0
    assert CHILD <= child.syscalls <= CHILD + 20
    assert root.syscalls >= GETPPID + THREAD + ENOENT
    assert root.syscall_errors == ENOENT
    assert root.syscalls + child.syscalls == groundtruth.total_calls
    assert root.minflt >= PAGES


def test_groundtruth_agrees_with_ptrace(groundtruth: Profile) -> None:
    try:
        from collectors import collector_class

        ptrace_cls = collector_class("ptrace")
    except Exception as exc:  # not written or not importable here
        pytest.skip(f"ptrace collector not available: {exc}")
    if not ptrace_cls.availability().ok:
        pytest.skip(f"ptrace collector: {ptrace_cls.availability().reason}")
    command = groundtruth.command
    with ptrace_cls(Options(command=command)) as tracer:
        traced = tracer.run()
    for name in ("getppid", "chdir", "execve", "clone"):
        assert calls(traced, name) == calls(groundtruth, name), name
    assert traced.syscalls["chdir"].errnos == groundtruth.syscalls["chdir"].errnos
    assert sorted(p.threads for p in traced.processes) == sorted(
        p.threads for p in groundtruth.processes)


def test_groundtruth_budget_adds_up(groundtruth: Profile) -> None:
    assert_budget_adds_up(groundtruth)


def test_syscalls_use_raw_tracepoints_where_the_kernel_has_them(groundtruth: Profile) -> None:
    raw, regular = (m for m in EbpfCollector.methods() if m.what == "syscalls")
    expected = ebpf_plan.SYSCALLS_RAW if raw.availability.ok else ebpf_plan.SYSCALLS_TRACEPOINTS
    assert groundtruth.timing["syscall_probe"] == expected
    assert regular.availability.ok


def test_regular_tracepoints_count_the_same(groundtruth: Profile) -> None:
    profile = profile_of(groundtruth.command, raw_syscalls=False)
    assert profile.timing["syscall_probe"] == ebpf_plan.SYSCALLS_TRACEPOINTS
    assert any("raw tracepoints" in note for note in profile.notes)
    for name in ("getppid", "chdir", "execve", "clone", "exit_group"):
        assert calls(profile, name) == calls(groundtruth, name), name
    assert profile.syscalls["chdir"].errnos == {"ENOENT": ENOENT}
    assert [p.exit_status for p in profile.processes] == [EXIT, 0]
    assert_budget_adds_up(profile)


# ------------------------------------------------------- faults, interrupts
BUSY = "dd if=/dev/zero of=/dev/null bs=1 count=300000 status=none"


def test_faults_and_interrupts_use_raw_tracepoints(collector: EbpfCollector) -> None:
    """Only the sched/task probes (task_struct fields) stay regular tracepoints,
    which take ~75 ms each to detach; raw ones detach at once."""
    plan = collector.plan
    assert plan is not None
    regular = {tp.decode().split(":")[0] for tp in collector._bpf.tracepoint_fds}
    if plan.raw_events:
        assert regular <= {"sched", "task"}, regular
        raw = {tp.decode() for tp in collector._bpf.raw_tracepoint_fds}
        assert {"page_fault_user", "page_fault_kernel", "softirq_entry", "softirq_exit",
                "irq_handler_entry", "irq_handler_exit", "local_timer_entry"} <= raw
    else:
        assert {"exceptions", "irq", "irq_vectors"} <= regular


def test_softirqs_and_timer_interrupts_are_counted(collector: EbpfCollector) -> None:
    """A busy command takes timer ticks and their softirqs: the raw probes read
    the softirq vector from TP_PROTO's first argument (a wrong one is >= 10)."""
    profile = run(collector, ["sh", "-c", BUSY])
    assert profile.irqs is not None
    kinds = profile.irqs.by_kind
    assert kinds.get("local_timer", {}).get("count", 0) > 0, kinds
    softirqs = {kind for kind in kinds if kind.startswith("softirq:")}
    assert softirqs & {"softirq:TIMER", "softirq:RCU", "softirq:SCHED"}, kinds
    assert profile.irqs.count == sum(k["count"] for k in kinds.values())
    assert_budget_adds_up(profile)


def test_device_irqs_are_named_by_their_number(collector: EbpfCollector,
                                               tmp_path: Path) -> None:
    """Direct writes from an untraced process raise block-device interrupts
    while traced busy loops hold the CPUs: the raw irq_handler_exit probe's irq
    number (TP_PROTO's first argument) names a real irq."""
    from collectors.ebpf_read import irq_names

    writer = subprocess.Popen(["dd", "if=/dev/zero", f"of={tmp_path / 'io'}", "bs=4k",
                               "count=20000", "oflag=direct", "status=none"],
                              stderr=subprocess.DEVNULL)
    try:
        profile = run(collector, ["sh", "-c", f"{BUSY} & {BUSY} & wait"])
    finally:
        writer.kill()
        writer.wait()
    assert profile.irqs is not None
    devices = [kind for kind in profile.irqs.by_kind if kind.startswith("irq:")]
    if not devices:
        pytest.skip("no device interrupt hit a traced thread here")
    names = set(irq_names().values())
    assert all(kind[len("irq:"):] in names for kind in devices), devices


def test_vectors_are_told_apart_by_their_number(collector: EbpfCollector) -> None:
    """The x86 vectors share one pair of programs, which tell the vector by the
    number its tracepoint passes (raw: TP_PROTO's argument; regular: the
    record's field): a busy command takes timer ticks either way, and none
    reads as an unknown number (those count as spurious_apic)."""
    for profile in (run(collector, ["sh", "-c", BUSY]),
                    profile_of(["sh", "-c", BUSY], raw_events=False)):
        assert profile.irqs is not None
        kinds = profile.irqs.by_kind
        assert kinds.get("local_timer", {}).get("count", 0) > 0, kinds
        assert "spurious_apic" not in kinds, kinds


def test_regular_fault_and_irq_tracepoints_count_the_same(collector: EbpfCollector) -> None:
    command = [str(build("touch_pages")), "20000"]
    raw = run(collector, command)
    regular = profile_of(command, raw_events=False)
    assert regular.timing["fault_irq_probes"] == "tracepoints"
    assert abs(regular.faults.count - raw.faults.count) <= 0.01 * raw.faults.count
    assert regular.faults.user >= 20000 and raw.faults.user >= 20000
    assert regular.faults.minor + regular.faults.major == regular.faults.count
    assert_budget_adds_up(regular)


def test_unknown_syscall_table_means_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    from collectors import ebpf

    monkeypatch.setattr(ebpf, "syscall_table", lambda: {})
    available = EbpfCollector.availability()
    assert not available.ok
    assert "syscall table" in available.reason


# --------------------------------------------------------------- page faults
def test_fault_count_matches_pages_and_perf_stat(collector: EbpfCollector) -> None:
    pages = 20000
    command = [str(build("touch_pages")), str(pages)]
    profile = run(collector, command)
    by_perf = perf_stat_page_faults(command)
    faults = profile.faults
    assert pages <= faults.count <= pages * 1.01
    assert abs(faults.count - by_perf) <= 0.01 * by_perf
    assert faults.user >= pages
    assert faults.minor + faults.major == faults.count
    assert faults.method == "perf sw-event pair"
    assert_budget_adds_up(profile)


def test_fault_time_is_positive_and_below_cpu_time(collector: EbpfCollector) -> None:
    profile = run(collector, [str(build("touch_pages")), "50000"])
    faults = profile.faults
    assert faults.total_ns is not None and faults.total_ns > 0
    assert faults.total_ns == (faults.user_ns or 0) + (faults.in_syscall_ns or 0)
    assert sum(faults.hist) == faults.minor + faults.major
    cpu_by_kernel = profile.rusage.user_ns + profile.rusage.sys_ns
    tick_ns = 2 * 4_000_000  # rusage is sampled at the tick
    assert faults.total_ns < cpu_by_kernel + tick_ns
    root = profile.processes[0]
    assert root.fault_ns == faults.total_ns
    assert root.user_ns is not None and root.sys_ns is not None
    assert faults.total_ns < root.user_ns + root.sys_ns + profile.budget.irq_ns  # type: ignore[union-attr]


def test_dd_read_faults_are_attributed_to_read(collector: EbpfCollector) -> None:
    profile = run(collector, DD_10M)
    read = profile.syscalls["read"]
    buffer_pages = 10 * 1024 * 1024 // PAGE_SIZE
    assert buffer_pages <= read.faults <= buffer_pages * 1.05
    assert read.fault_ns is not None and 0 < read.fault_ns < read.total_ns
    assert profile.faults.in_syscall >= buffer_pages
    assert profile.faults.in_syscall_ns is not None
    assert read.fault_ns <= profile.faults.in_syscall_ns
    assert_budget_adds_up(profile)
    budget = profile.budget
    assert budget is not None
    # a fault's duration includes the interrupts and preemptions inside it,
    # which the budget charges as irq and runqueue time
    assert budget.fault_in_syscall_ns + budget.irq_ns + budget.runqueue_ns >= read.fault_ns


def test_sampling_fallback_estimates_fault_time() -> None:
    profile = profile_of(DD_100M, fault_method=FAULT_SAMPLING, stack_frequency_hz=4999)
    faults = profile.faults
    assert faults.method == "kernel stack sampling"
    assert faults.count >= 100 * 1024 * 1024 // PAGE_SIZE
    assert faults.total_ns is not None and faults.total_ns > 0
    assert "estimate" in faults.precision
    assert_budget_adds_up(profile)


# ------------------------------------------------------------------ stacks
def test_dd_stacks_show_clear_page_under_the_fault() -> None:
    # clear_page is as little as 2% of the fault samples on some runs here:
    # 400 MB of fresh pages give it tens of samples even then (100 MB gave ~5,
    # and now and then none).
    dd_400m = ["dd", "if=/dev/zero", "of=/dev/null", "bs=400M", "count=1", "status=none"]
    profile = profile_of(dd_400m, stack_frequency_hz=4999, fault_method=FAULT_SW_PAIR)
    stacks = profile.stacks
    assert stacks is not None and stacks.mode == "faults" and stacks.frequency_hz == 4999
    assert stacks.samples == sum(stacks.folded.values()) > 0
    clearing = [line for line in stacks.folded if re.search(r";clear_page\w*", line)]
    assert clearing, stacks.top_functions()
    assert any("do_anonymous_page" in line for line in clearing)
    assert all(line.startswith(("entry_SYSCALL", "asm_exc_page_fault", "ret_from_fork"))
               or ";" not in line for line in stacks.folded)


def test_stacks_off_means_no_stacks() -> None:
    profile = profile_of(DD_10M, kernel_stacks="off")
    assert profile.stacks is None


# ------------------------------------------------------- processes, threads
def test_short_lived_children_are_all_seen(collector: EbpfCollector) -> None:
    profile = run(collector, ["sh", "-c", "for i in 1 2 3 4 5; do /bin/true; done; exit 7"])
    assert profile.exit_status == 7
    assert calls(profile, "execve") == 6
    assert len(profile.processes) == 6
    assert [p.exit_status for p in profile.processes] == [7, 0, 0, 0, 0, 0]
    assert {p.comm for p in profile.processes[1:]} == {"true"}
    assert_budget_adds_up(profile)


def test_no_follow_traces_only_the_first_process() -> None:
    profile = profile_of(["sh", "-c", "for i in 1 2 3; do /bin/true; done"], follow=False)
    assert calls(profile, "execve") == 1
    assert len(profile.processes) == 1


def test_threads_sharing_a_cpu_with_an_untraced_caller_count_exactly(
        collector: EbpfCollector) -> None:
    """The syscall probes know the running thread by the CPU's slot (checked by
    its pt_regs): two traced threads and an untraced process that makes the
    same syscall, all on one CPU, switch many times; no call may be lost or
    taken from the stranger."""
    binary = str(build("groundtruth"))
    per_thread = 200_000
    cpu = str(min(os.sched_getaffinity(0)))
    # the stranger calls getppid (and sleeps 0 ms) until it is killed
    stranger = subprocess.Popen(["taskset", "-c", cpu, binary, "--loop", "0"])
    try:
        profile = run(collector, ["taskset", "-c", cpu, binary, str(per_thread), "0", "0",
                                  str(per_thread), "0"])
    finally:
        stranger.kill()
        stranger.wait()
    assert calls(profile, "getppid") == 2 * per_thread
    assert sum(profile.syscalls["getppid"].hist) == 2 * per_thread
    assert profile.budget is not None and profile.budget.runqueue_ns > 0
    assert_budget_adds_up(profile)


def test_sleeping_is_blocked_time(collector: EbpfCollector) -> None:
    profile = run(collector, ["sleep", "0.3"])
    budget = profile.budget
    assert budget is not None
    assert 0.28e9 <= budget.syscall_blocked_ns <= budget.lifetime_ns
    assert profile.syscalls["clock_nanosleep"].total_ns >= 0.28e9
    assert_budget_adds_up(profile)


def test_dd_budget_adds_up(collector: EbpfCollector) -> None:
    profile = run(collector, DD_10M)
    assert_budget_adds_up(profile)
    budget = profile.budget
    assert budget is not None
    assert budget.lifetime_ns <= profile.wall_ns


def test_a_process_running_at_the_end_is_counted_up_to_it(collector: EbpfCollector,
                                                         tmp_path: Path) -> None:
    """A busy survivor is on a CPU at the end (its state in that CPU's slot):
    its counts agree with the totals, and the next run does not count it."""
    pid_file = tmp_path / "pid"
    busy = "dd if=/dev/zero of=/dev/null bs=1 count=100000000 status=none"
    try:
        profile = run(collector, ["sh", "-c", f"{busy} & echo $! > {pid_file}; sleep 0.3"])
        after = run(collector, ["true"])
    finally:
        with contextlib.suppress(ValueError, OSError):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
    survivors = [p for p in profile.processes if p.comm == "dd"]
    assert len(survivors) == 1 and survivors[0].syscalls > 1000
    assert sum(p.syscalls for p in profile.processes) == profile.total_calls
    assert any("still running" in note for note in profile.notes)
    assert_budget_adds_up(profile)
    assert calls(after, "read") + calls(after, "write") < 100
    assert len(after.processes) == 1


def test_runs_start_from_zero(collector: EbpfCollector) -> None:
    command = ["sh", "-c", "/bin/true; /bin/true; /bin/true"]
    first, second = run(collector, command), run(collector, command)
    assert calls(first, "execve") == calls(second, "execve") == 4
    assert len(first.processes) == len(second.processes) >= 3
    assert first.total_calls == second.total_calls


# ----------------------------------------------------------------- privilege
def test_command_runs_as_the_given_user(collector: EbpfCollector) -> None:
    nobody = pwd.getpwnam("nobody")
    shared = Path(tempfile.mkdtemp(prefix="stprof-uid-", dir="/tmp"))
    shared.chmod(0o777)  # pytest's own tmp_path is private to root
    out = shared / "uid"
    collector.options.credentials = Credentials.for_user("nobody")
    try:
        profile = run(collector, ["sh", "-c", f"id -u > {out}"])
        written = out.read_text().strip(), out.stat().st_uid
    finally:
        collector.options.credentials = None
        shutil.rmtree(shared)
    assert profile.exit_status == 0
    assert written == (str(nobody.pw_uid), nobody.pw_uid)
    assert calls(profile, "execve") == 2


# -------------------------------------------------------------- attach (-p)
def test_attach_until_the_process_exits() -> None:
    script = "sleep 0.5; for i in 1 2 3 4; do /bin/true; done"
    with EbpfCollector(Options()) as attached:
        target = subprocess.Popen(["sh", "-c", script])
        attached.options.attach_pid = target.pid
        try:
            profile = attached.run()
        finally:
            target.wait()
    assert profile.attached_pid == target.pid and profile.exit_status is None
    assert calls(profile, "execve") == 4
    assert calls(profile, "clock_nanosleep") + calls(profile, "wait4") >= 1
    assert any("exited" in note for note in profile.notes)
    assert_budget_adds_up(profile, max_unexplained=0.5)


def test_attach_stops_at_sigint_and_leaves_the_process_running() -> None:
    target = subprocess.Popen(["sleep", "5"])
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
    try:
        with EbpfCollector(Options(attach_pid=target.pid)) as attached:
            timer.start()
            profile = attached.run()
        assert profile.syscalls == {}  # asleep the whole time: no call completed
        assert target.poll() is None
        assert any("keeps running" in note for note in profile.notes)
        assert profile.budget is not None and profile.budget.lifetime_ns > 0
    finally:
        timer.cancel()
        target.kill()
        target.wait()


# ------------------------------------------------------------- losses, probes
def test_a_full_thread_map_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ebpf_plan, "MAX_THREADS", 2)
    profile = profile_of(["sh", "-c", "sleep 0.1 & sleep 0.1 & sleep 0.1 & wait"])
    assert any("thread map" in note and "full" in note for note in profile.notes)
    assert len(profile.processes) < 4


def test_methods_name_what_works_here() -> None:
    methods = EbpfCollector.methods()
    fault_methods = [m for m in methods if m.what == "fault time"]
    assert [m.method.split()[0] for m in fault_methods] == [
        "fentry/fexit", "kprobe/kretprobe", "perf", "sampled"]
    assert sum(1 for m in fault_methods if m.availability.reason.startswith("used")) == 1
    syscalls = next(m for m in methods if m.what == "syscalls")
    assert syscalls.availability.ok


def bpf_and_perf_fds() -> int:
    """Our open BPF program/map/link and perf event fds: every probe hangs on one."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        count += target.startswith(("anon_inode:bpf", "anon_inode:[perf_event]"))
    return count


def test_probes_are_gone_after_close() -> None:
    before = bpf_and_perf_fds()
    with EbpfCollector(Options(command=["true"])) as loaded:
        loaded.run()
        assert bpf_and_perf_fds() > before + 20
    assert bpf_and_perf_fds() == before


def test_probes_are_gone_after_an_exception() -> None:
    before = bpf_and_perf_fds()
    with pytest.raises(RuntimeError), EbpfCollector(Options(command=["true"])):
        raise RuntimeError("boom")
    assert bpf_and_perf_fds() == before


def our_prog_ids() -> set[int]:
    """The ids of the BPF programs this process holds an fd of."""
    ids = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            info = Path(f"/proc/self/fdinfo/{fd}").read_text()
            found = re.search(r"^prog_id:\s*(\d+)", info, re.M)
            if found:
                ids.add(int(found.group(1)))
    return ids


def prog_exists(prog_id: int) -> bool:
    import struct

    from collectors import ebpf_kernel

    attr = bytearray(16)
    struct.pack_into("I", attr, 0, prog_id)
    fd, error = ebpf_kernel._bpf(13, attr)  # BPF_PROG_GET_FD_BY_ID
    if fd >= 0:
        os.close(fd)
        return True
    assert error == errno.ENOENT, os.strerror(error)
    return False


def test_close_hands_the_slow_detach_to_a_keeper_that_leaves_nothing() -> None:
    """close() returns before the regular tracepoints' RCU waits; the keeper
    process that holds them exits by itself, and then no program of the run is
    left in the kernel; the keeper is no child of ours."""
    before = our_prog_ids()
    children = {child.pid for child in psutil.Process().children()}
    with EbpfCollector(Options(command=["true"])) as loaded:
        loaded.run()
        programs = our_prog_ids() - before
        assert len(programs) > 15  # 19 here: syscalls, faults, sched, irqs, the vectors' pair
        regular = len(loaded._bpf.tracepoint_fds)
    assert regular > 0
    assert {child.pid for child in psutil.Process().children()} <= children
    deadline = time.monotonic() + 30
    while any(prog_exists(p) for p in programs) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [p for p in programs if prog_exists(p)] == []


def test_unknown_command_is_refused_before_tracing(collector: EbpfCollector) -> None:
    from profiler.errors import CommandNotFound

    with pytest.raises(CommandNotFound):
        run(collector, ["/nonexistent/stprof-test-command"])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-v"]))
