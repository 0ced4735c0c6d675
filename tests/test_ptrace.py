"""The ptrace collector against the real kernel: exact counts where the truth is known.

The workload is tests/workloads/groundtruth.c, linked statically: its
arguments fix how many getppid and failing chdir calls each process and
thread makes, how many pages it touches, and how it ends.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from collectors import ptrace_abi as abi
from collectors.base import Options
from collectors.ptrace_loop import Tracer
from collectors.ptracer import PtraceCollector, _cmdline, _seize_process, overhead_floor
from profiler.errors import CommandNotExecutable, CommandNotFound
from profiler.model import Profile

pytestmark = pytest.mark.usefixtures("time_limit")

# groundtruth GETPPID ENOENT CHILD THREAD PAGES [EXIT]
N_MAIN, N_ENOENT, N_CHILD, N_THREAD, N_PAGES = 37, 5, 11, 13, 300


def trace(*argv: object, follow: bool = True, entry_info: bool = False) -> Profile:
    collector = PtraceCollector(Options(command=[str(a) for a in argv], follow=follow))
    collector.entry_info = entry_info
    with collector:
        return collector.run()


def groundtruth_args(binary: Path, exit_how: str = "3") -> list[object]:
    return [binary, N_MAIN, N_ENOENT, N_CHILD, N_THREAD, N_PAGES, exit_how]


def no_children_left() -> bool:
    return not psutil.Process().children(recursive=True)


# ------------------------------------------------------------ exact counts
@pytest.fixture(scope="module", params=["compiled", "Python"])
def full_profile(request: pytest.FixtureRequest, groundtruth: Path) -> Iterator[Profile]:
    """The ground truth traced by each loop: the compiled one (collectors/ptrace_fast.c,
    which `make setup` builds) and the Python one; every test below holds for both."""
    saved = os.environ.get("STPROF_PTRACE_LOOP")
    if request.param == "Python":
        os.environ["STPROF_PTRACE_LOOP"] = "python"
    try:
        profile = trace(*groundtruth_args(groundtruth))
    finally:
        os.environ.pop("STPROF_PTRACE_LOOP", None)
        if saved is not None:
            os.environ["STPROF_PTRACE_LOOP"] = saved
    assert profile.timing["loop"].startswith(request.param), profile.timing["loop"]
    yield profile


def test_counts_every_getppid_of_the_tree(full_profile: Profile) -> None:
    getppid = full_profile.syscalls["getppid"]
    assert getppid.calls == N_MAIN + N_CHILD + N_THREAD
    assert getppid.errors == 0
    assert sum(getppid.hist) == getppid.calls


def test_counts_errors_by_errno(full_profile: Profile) -> None:
    chdir = full_profile.syscalls["chdir"]
    assert chdir.calls == N_ENOENT
    assert chdir.errors == N_ENOENT
    assert chdir.errnos == {"ENOENT": N_ENOENT}


def test_counting_starts_at_the_commands_execve(full_profile: Profile) -> None:
    # stprof's own child code (gate read, close, execve) is not counted: the
    # static workload itself never calls read or close.
    assert full_profile.syscalls["execve"].calls == 1
    assert "read" not in full_profile.syscalls
    assert "close" not in full_profile.syscalls


def test_calls_that_never_return_are_counted_without_time(full_profile: Profile) -> None:
    exit_group = full_profile.syscalls["exit_group"]  # main and the forked child
    assert exit_group.calls == 2
    assert exit_group.total_ns == 0 and exit_group.hist == [] and exit_group.min_ns is None
    assert full_profile.syscalls["exit"].calls == 1  # the thread


def test_per_process_breakdown(full_profile: Profile) -> None:
    assert len(full_profile.processes) == 2
    main, child = full_profile.processes
    assert main.threads == 2  # the pthread is counted in its process
    assert child.threads == 1
    assert child.ppid == main.pid
    assert main.ppid == os.getpid()
    assert main.exit_status == 3 and child.exit_status == 0
    assert main.comm == child.comm == "groundtruth"
    # main: its own getppid, the thread's, the failing chdirs, exit_group...
    assert main.syscalls >= N_MAIN + N_THREAD + N_ENOENT + 1
    assert main.syscall_errors == N_ENOENT
    assert child.syscalls >= N_CHILD + 1
    assert sum(p.syscalls for p in full_profile.processes) == full_profile.total_calls
    assert sum(p.syscall_errors for p in full_profile.processes) == full_profile.total_errors
    assert sum(p.syscall_ns for p in full_profile.processes) == full_profile.total_syscall_ns


def test_exit_status_and_wall_time(full_profile: Profile) -> None:
    assert full_profile.exit_status == 3
    assert full_profile.collector == "ptrace"
    assert full_profile.attached_pid is None
    assert 0 < full_profile.wall_ns < 30 * 10**9


def test_faults_count_the_touched_pages(full_profile: Profile) -> None:
    faults = full_profile.faults
    main = full_profile.processes[0]
    assert main.minflt >= N_PAGES
    assert faults.minor >= N_PAGES
    assert faults.count == faults.minor + faults.major
    assert faults.minor == sum(p.minflt for p in full_profile.processes)
    assert faults.total_ns is None and faults.method == "rusage"
    assert full_profile.rusage.minflt >= N_PAGES


def test_overhead_correction(full_profile: Profile) -> None:
    timing = full_profile.timing
    overhead = timing["overhead_ns_per_call"]
    assert timing["method"] == "ptrace syscall-stops" and timing["shown"] == "corrected"
    assert overhead > 0
    for name, stats in full_profile.syscalls.items():
        timed = sum(stats.hist)
        assert stats.raw_total_ns is not None
        assert 0 <= stats.total_ns <= stats.raw_total_ns, name
        # each timed call lost min(its raw time, the overhead)
        assert stats.raw_total_ns - stats.total_ns <= overhead * timed, name
        if timed:
            assert stats.raw_total_ns - stats.total_ns > 0, name
    assert any(f"{overhead} ns per call" in note for note in full_profile.notes)
    assert timing["overhead_ns_median"] >= overhead


def test_overhead_floor_takes_the_cheaper_regime() -> None:
    """Stop costs switch between regimes; the floor is the cheap regime's median."""
    slow, fast = [33_000 + i for i in range(200)], [7_500 + i for i in range(200)]
    assert overhead_floor(slow + fast + slow + slow) == 7_599
    assert overhead_floor([7_000] * 799 + [10**9]) == 7_000  # one outlier changes nothing
    assert overhead_floor([]) == 0


def test_json_round_trip(full_profile: Profile, tmp_path: Path) -> None:
    path = tmp_path / "profile.json"
    full_profile.save(path)
    assert Profile.load(path) == full_profile


def test_get_syscall_info_at_every_stop_counts_the_same(groundtruth: Path) -> None:
    """The method used where registers cannot tell entry from exit (not x86-64)."""
    profile = trace(*groundtruth_args(groundtruth), entry_info=True)
    assert profile.timing["stops"] == "PTRACE_GET_SYSCALL_INFO at entry and exit"
    assert profile.syscalls["getppid"].calls == N_MAIN + N_CHILD + N_THREAD
    assert profile.syscalls["chdir"].errnos == {"ENOENT": N_ENOENT}
    assert profile.syscalls["exit_group"].calls == 2
    assert profile.exit_status == 3


def test_each_run_starts_from_zero(groundtruth: Path) -> None:
    collector = PtraceCollector(Options(command=[str(groundtruth), "4", "1", "0", "0", "0"]))
    with collector:
        first = collector.run()
        second = collector.run()
    assert first.syscalls["getppid"].calls == second.syscalls["getppid"].calls == 4
    assert first.timing["overhead_ns_per_call"] == second.timing["overhead_ns_per_call"]


def test_no_follow_traces_only_the_first_thread(groundtruth: Path) -> None:
    profile = trace(*groundtruth_args(groundtruth), follow=False)
    assert profile.syscalls["getppid"].calls == N_MAIN
    assert profile.syscalls["chdir"].calls == N_ENOENT
    assert "exit" not in profile.syscalls  # the thread's exit is not seen
    assert len(profile.processes) == 1
    assert profile.exit_status == 3


def test_exec_from_a_second_thread(groundtruth: Path) -> None:
    """The exec'ing thread takes the leader's tid; counting goes on in the new image."""
    profile = trace(groundtruth, "--thread-exec", 6, 4, 2, 0, 0, 0, 5)
    assert profile.syscalls["getppid"].calls == 6 + 4
    assert profile.syscalls["chdir"].calls == 2
    assert profile.syscalls["execve"].calls == 2
    assert profile.syscalls["execve"].errors == 0
    assert profile.exit_status == 5
    assert len(profile.processes) == 1


@pytest.mark.parametrize("entry_info", [False, True])
def test_signal_handlers_run_and_sigreturn_is_named(groundtruth: Path, entry_info: bool) -> None:
    """Each SIGUSR1 is delivered (its handler's getppid is seen) and returns via rt_sigreturn."""
    profile = trace(groundtruth, "--signals", 9, entry_info=entry_info)
    assert profile.syscalls["getppid"].calls == 9
    assert profile.syscalls["rt_sigreturn"].calls == 9
    assert profile.syscalls["rt_sigreturn"].errors == 0
    assert profile.syscalls["tgkill"].calls == 9
    assert not [name for name in profile.syscalls if name.startswith("syscall_")]
    assert profile.exit_status == 0


# ----------------------------------------------------------------- endings
def test_death_by_signal(groundtruth: Path) -> None:
    profile = trace(*groundtruth_args(groundtruth, "SIGTERM"))
    assert profile.exit_status == 128 + signal.SIGTERM
    assert profile.processes[0].exit_status == 128 + signal.SIGTERM
    assert profile.syscalls["getppid"].calls == N_MAIN + N_CHILD + N_THREAD


def test_missing_command() -> None:
    with pytest.raises(CommandNotFound) as caught:
        trace("/nonexistent/stprof-command")
    assert caught.value.exit_status == 127
    assert no_children_left()


def test_exec_failure_is_reported_not_profiled(tmp_path: Path) -> None:
    """The command exists but its exec fails: the error comes from the exec itself."""
    orphan = tmp_path / "script"
    orphan.write_text("#!/nonexistent/interpreter\n")
    orphan.chmod(0o755)
    with pytest.raises(CommandNotFound) as not_found:
        trace(orphan)
    assert not_found.value.exit_status == 127
    junk = tmp_path / "junk"
    junk.write_bytes(b"\x00\x01not a program\n")
    junk.chmod(0o755)
    with pytest.raises(CommandNotExecutable) as not_executable:
        trace(junk)
    assert not_executable.value.exit_status == 126
    assert no_children_left()


def after(seconds: float, action: Callable[[], object]) -> threading.Timer:
    timer = threading.Timer(seconds, action)
    timer.start()
    return timer


class Boom(Exception):
    pass


def marked_processes(marker: str, binary: Path) -> list[psutil.Process]:
    """Live processes of ``binary`` (this checkout's build) with ``marker`` in their argv."""
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        cmdline = process.info["cmdline"] or []
        if (cmdline[:1] == [str(binary)] and marker in cmdline
                and process.info["status"] != "zombie"):
            found.append(process)
    return found


def test_an_exception_in_the_loop_kills_the_traced_tree(groundtruth: Path) -> None:
    """Whatever goes wrong while tracing, no traced process is left behind, stopped or not."""
    marker = "17"  # `groundtruth --loop 17`: how we find the tree's processes
    script = f"{groundtruth} --loop {marker} & {groundtruth} --loop {marker}; wait"

    def boom(_signum: int, _frame: object) -> None:
        raise Boom

    previous = signal.signal(signal.SIGALRM, boom)
    signal.setitimer(signal.ITIMER_REAL, 0.8)
    try:
        with pytest.raises(Boom):
            trace("sh", "-c", script)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    deadline = time.monotonic() + 5
    while marked_processes(marker, groundtruth) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marked_processes(marker, groundtruth) == []
    assert no_children_left()


def test_signals_to_stprof_reach_the_command(groundtruth: Path) -> None:
    """SIGTERM to stprof goes on to the command; stprof reports when it has exited."""
    timer = after(0.5, lambda: os.kill(os.getpid(), signal.SIGTERM))
    try:
        profile = trace(groundtruth, "--loop", 2)
    finally:
        timer.cancel()
    assert profile.exit_status == 128 + signal.SIGTERM
    assert profile.syscalls["getppid"].calls > 0
    assert profile.syscalls["clock_nanosleep"].calls > 0


def proc_state(pid: int) -> str:
    data = Path(f"/proc/{pid}/stat").read_text()
    return data[data.rindex(")") + 2]


def test_job_control_stop_and_continue(groundtruth: Path) -> None:
    """SIGSTOP stops the traced command (a group-stop), SIGCONT resumes it."""
    seen: dict[str, object] = {}

    def driver() -> None:
        pid = None
        deadline = time.monotonic() + 20  # the tracer's start-up on a loaded machine
        while pid is None and time.monotonic() < deadline:
            pid = next((c.pid for c in psutil.Process().children()
                        if c.name() == "groundtruth"), None)
            time.sleep(0.05)
        assert pid is not None, "the traced command did not start"
        os.kill(pid, signal.SIGSTOP)
        time.sleep(0.3)
        seen["stopped"] = proc_state(pid)
        calls_before = voluntary_switches(pid)
        time.sleep(0.3)
        seen["still"] = voluntary_switches(pid) == calls_before
        os.kill(pid, signal.SIGCONT)
        time.sleep(0.3)
        seen["resumed"] = voluntary_switches(pid) > calls_before
        os.kill(pid, signal.SIGTERM)

    timer = after(0.4, driver)
    try:
        profile = trace(groundtruth, "--loop", 2)
    finally:
        timer.join()
    assert seen == {"stopped": "t", "still": True, "resumed": True}
    assert profile.exit_status == 128 + signal.SIGTERM


def status_field(pid: int, name: str) -> int:
    """A number from /proc/PID/status, e.g. TracerPid."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {name} in /proc/{pid}/status")


def voluntary_switches(pid: int) -> int:
    """Voluntary context switches: each of the loop's sleeps adds one."""
    return status_field(pid, "voluntary_ctxt_switches")


def test_background_descendants_are_left_running(tmp_path: Path) -> None:
    """The run ends with the command; a background child is detached, not waited for."""
    pid_file = tmp_path / "sleeper"
    started = time.monotonic()
    profile = trace("sh", "-c", f"sleep 20 & echo $! >{pid_file}; exit 4")
    elapsed = time.monotonic() - started
    sleeper = int(pid_file.read_text())
    try:
        assert elapsed < 10
        assert profile.exit_status == 4
        assert tracer_pid(sleeper) == 0
        time.sleep(0.05)
        assert proc_state(sleeper) not in ("t", "T", "Z", "X")
        assert any(
            "processes still running when the command exited: 1;" in note for note in profile.notes
        )
        assert sleeper in {p.pid for p in profile.processes}
    finally:
        os.kill(sleeper, signal.SIGKILL)
    assert no_children_left()


def test_background_descendants_from_the_command_line(tmp_path: Path) -> None:
    pid_file = tmp_path / "sleeper"
    started = time.monotonic()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "stprof",
            "run",
            "--collector",
            "ptrace",
            "-o",
            os.devnull,
            "--",
            "sh",
            "-c",
            f"sleep 20 & echo $! >{pid_file}",
        ],
        timeout=30,
    )
    elapsed = time.monotonic() - started
    sleeper = int(pid_file.read_text())
    try:
        assert result.returncode == 0
        assert elapsed < 10
        assert tracer_pid(sleeper) == 0
        time.sleep(0.05)
        assert proc_state(sleeper) not in ("t", "T", "Z", "X")
    finally:
        os.kill(sleeper, signal.SIGKILL)


# ------------------------------------------------------------------ attach
@pytest.fixture
def looping(groundtruth: Path) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen([str(groundtruth), "--loop", "2"])
    time.sleep(0.1)
    try:
        yield process
    finally:
        process.kill()
        process.wait()


def tracer_pid(pid: int) -> int:
    return status_field(pid, "TracerPid")


def assert_left_running(pid: int) -> None:
    assert tracer_pid(pid) == 0
    time.sleep(0.05)
    assert proc_state(pid) not in ("t", "T")
    before = voluntary_switches(pid)
    time.sleep(0.2)
    assert voluntary_switches(pid) > before  # it still runs its loop


def test_attach_until_interrupted(looping: subprocess.Popen[bytes]) -> None:
    timer = after(0.6, lambda: os.kill(os.getpid(), signal.SIGINT))
    try:
        collector = PtraceCollector(Options(attach_pid=looping.pid))
        with collector:
            profile = collector.run()
    finally:
        timer.cancel()
    assert profile.attached_pid == looping.pid
    assert profile.command[1:] == ["--loop", "2"]
    assert profile.exit_status is None
    assert profile.syscalls["getppid"].calls > 0
    assert profile.syscalls["clock_nanosleep"].calls > 0
    assert profile.processes[0].pid == looping.pid
    assert looping.poll() is None
    assert_left_running(looping.pid)


def test_attach_until_the_process_exits() -> None:
    """Attach to a process that is not our child; it ends on its own."""
    shell = subprocess.Popen(["sh", "-c", "sleep 0.8 & wait $!; exit $?"])
    try:
        deadline = time.monotonic() + 10
        while not psutil.Process(shell.pid).children() and time.monotonic() < deadline:
            time.sleep(0.01)
        sleeper = psutil.Process(shell.pid).children()[0].pid
        time.sleep(0.1)
        collector = PtraceCollector(Options(attach_pid=sleeper))
        with collector:
            profile = collector.run()
    finally:
        shell.wait()
    assert profile.attached_pid == sleeper
    assert profile.processes[0].pid == sleeper
    assert profile.processes[0].exit_status == 0
    assert profile.syscalls["exit_group"].calls == 1
    # attached mid-sleep: the interrupted sleep is restarted under our eyes
    assert {"restart_syscall", "clock_nanosleep"} & set(profile.syscalls)
    assert shell.returncode == 0  # its real parent still got its status


def test_attach_from_the_command_line(looping: subprocess.Popen[bytes], tmp_path: Path) -> None:
    out = tmp_path / "attach.json"
    stprof = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stprof",
            "run",
            "--collector",
            "ptrace",
            "-p",
            str(looping.pid),
            "--json",
            str(out),
            "-o",
            os.devnull,
        ],
    )
    try:
        deadline = time.monotonic() + 20
        while tracer_pid(looping.pid) != stprof.pid and time.monotonic() < deadline:
            time.sleep(0.05)
        assert tracer_pid(looping.pid) == stprof.pid
        time.sleep(0.3)
        stprof.send_signal(signal.SIGINT)
        assert stprof.wait(timeout=20) == 0
    finally:
        if stprof.poll() is None:
            stprof.kill()
            stprof.wait()
    assert looping.poll() is None
    assert_left_running(looping.pid)
    profile = Profile.load(out)
    assert profile.attached_pid == looping.pid
    assert profile.syscalls["getppid"].calls > 0


def test_attached_command_line_is_a_list_of_strings() -> None:
    """-p keeps the target's /proc cmdline; [] where there is none to read."""
    argv = ["sh", "-c", "sleep 10; :", "", "x"]
    process = subprocess.Popen(argv, start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while _cmdline(process.pid) != argv and time.monotonic() < deadline:
            time.sleep(0.01)  # until its exec
        assert _cmdline(process.pid) == argv
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # sh and its sleep
        process.wait()
    assert _cmdline(process.pid) == []  # gone
    assert _cmdline(2) == []  # kthreadd: a kernel thread has no command line


def test_detach_lets_go_of_a_child_auto_attached_meanwhile() -> None:
    """A fork in progress at the detach: its child is ours too, and must not stay stopped.

    The parent's fork event is taken but never handled, as when Ctrl-C lands
    in the loop right after a waitpid: the tracer has never heard of the child.
    """
    gate_r, gate_w = os.pipe()
    parent = os.fork()
    if parent == 0:  # pragma: no cover - the traced process
        try:
            os.close(gate_w)
            os.read(gate_r, 1)
            if os.fork() == 0:
                time.sleep(30)
                os._exit(0)
            time.sleep(30)
        finally:
            os._exit(0)
    os.close(gate_r)
    tracer = Tracer(exit_kill=False)
    child = None
    try:
        _seize_process(tracer, parent)
        os.write(gate_w, b"g")
        while True:
            tid, status = os.waitpid(parent, abi.WALL)
            event = status >> 16
            if os.WIFSTOPPED(status) and event == abi.PTRACE_EVENT_FORK:
                child = abi.geteventmsg(parent)
                break
            tracer.handle_stop(tid, status, time.monotonic_ns())
            assert parent in tracer.threads
        assert child and child not in tracer.threads
        left = tracer.detach_all()
        assert left == {parent, child}
        for pid in (parent, child):
            assert tracer_pid(pid) == 0
        time.sleep(0.05)
        for pid in (parent, child):
            assert proc_state(pid) not in ("t", "T")
    finally:
        os.close(gate_w)
        if child:
            os.kill(child, signal.SIGKILL)
        os.kill(parent, signal.SIGKILL)
        os.waitpid(parent, 0)
