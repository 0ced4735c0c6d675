"""The DTrace collector: dtrace(1) as a subprocess, on FreeBSD (and illumos, macOS).

How a run goes:

1. ``prepare()`` finds dtrace, checks it can trace (privileges, providers),
   looks up which probes exist (``fbt::trap``, the fault functions), asks
   whether this dtrace accepts ``-x oformat=json``, generates the D program
   (:mod:`collectors.dtrace_program`) and compiles it once with ``dtrace -e``.
2. ``run()`` starts the command paused (``profiler.target.spawn_paused``),
   starts ``dtrace -q -o FILE -s PROG -p PID`` in its own session (a Ctrl-C
   at the terminal is for the command, not for dtrace), waits for the ready
   line the program's BEGIN prints, and only then releases the command.
   dtrace exits when the command does; the command's exit status and rusage
   come from stprof's own ``wait4()`` of its child, because dtrace does not
   pass the status on.  dtrace's data goes to a private file (never the
   command's stdout), its messages to another; both are parsed by
   :mod:`collectors.dtrace_output`.

``-c`` is not used: it splits the command on whitespace with no quoting.

Nothing here is imported at module level that FreeBSD lacks.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, ClassVar

from collectors.base import Availability, Collector, Options, ProbeMethod
from collectors.dtrace_output import failure_error, fill_profile, parse_output
from collectors.dtrace_program import (
    FAULT_PROBES,
    READY_MARKER,
    FaultProbe,
    ProgramSpec,
    generate,
)
from profiler.errors import CollectorUnavailable, StprofError, TracingError
from profiler.model import Profile, Rusage
from profiler.target import (
    Interrupted,
    PausedChild,
    command_needs_own_group,
    decode_wait_status,
    raise_exec_error,
    relay_signals,
    spawn_paused,
)

NOT_HERE = "DTrace is a FreeBSD/illumos/macOS facility"
NOT_FOUND_FIX = "on FreeBSD dtrace(1) is in the base system; load its modules: kldload dtraceall"
SYSCALL_PROBE = "syscall::read:entry"


# ------------------------------------------------------------ dtrace(1)
@dataclass
class DtraceTool:
    """dtrace(1) at ``path``, for the short questions asked before a run."""

    path: str
    timeout_s: float = 60.0

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                [self.path, *args], stdin=subprocess.DEVNULL, capture_output=True,
                text=True, timeout=self.timeout_s, check=False,
            )
        except subprocess.TimeoutExpired:
            raise TracingError(f"{self.path} {' '.join(args)}: no answer in "
                               f"{self.timeout_s:.0f} s") from None
        except OSError as exc:
            raise CollectorUnavailable(f"cannot run {self.path}: {exc.strerror}") from None

    def check_usable(self) -> None:
        """Raise the one-line error (with its fix) if dtrace cannot list syscall probes."""
        result = self.run("-l", "-n", SYSCALL_PROBE)
        if result.returncode != 0 or not _lists_a_probe(result.stdout):
            raise failure_error(result.stderr, "dtrace cannot list the syscall provider")

    def has_probe(self, description: str) -> bool:
        result = self.run("-l", "-n", description)
        return result.returncode == 0 and _lists_a_probe(result.stdout)

    def accepts_json(self) -> bool:
        """Whether this dtrace has structured output (FreeBSD 14.1 and later)."""
        result = self.run("-q", "-x", "oformat=json", "-n", "BEGIN { exit(0); }")
        return result.returncode == 0

    def compile(self, program: Path, json_output: bool) -> None:
        """Compile (and match the probes of) ``program`` without enabling it."""
        result = self.run(*_format_args(json_output), "-e", "-s", str(program))
        if result.returncode != 0:
            raise failure_error(result.stderr, "dtrace could not compile stprof's D program")


def _lists_a_probe(listing: str) -> bool:
    """dtrace -l prints a header line, then one line per probe."""
    return len([line for line in listing.splitlines() if line.strip()]) > 1


def _format_args(json_output: bool) -> list[str]:
    return ["-x", "oformat=json"] if json_output else []


def find_dtrace() -> str | None:
    return shutil.which("dtrace") or next(
        (path for path in ("/usr/sbin/dtrace", "/usr/bin/dtrace") if os.access(path, os.X_OK)),
        None,
    )


def _native_platform() -> bool:
    return sys.platform.startswith(DtraceCollector.platforms)


# ------------------------------------------------------------ collector
@dataclass
class _Running:
    """One dtrace process of a run and the files it writes."""

    process: subprocess.Popen[bytes]
    output: Path
    errors: Path
    stderr_file: IO[bytes]

    def stderr_text(self) -> str:
        return self.errors.read_text(errors="replace") if self.errors.exists() else ""

    def output_text(self) -> str:
        return self.output.read_text(errors="replace") if self.output.exists() else ""


class DtraceCollector(Collector):
    name: ClassVar[str] = "dtrace"
    description: ClassVar[str] = "DTrace via dtrace(1): syscalls, trap and fault time, stacks"
    platforms: ClassVar[tuple[str, ...]] = ("freebsd", "darwin", "sunos", "illumos")

    ready_timeout_s: ClassVar[float] = 15.0
    exit_timeout_s: ClassVar[float] = 30.0
    poll_interval_s: ClassVar[float] = 0.02

    def __init__(self, options: Options, dtrace_path: str | None = None) -> None:
        super().__init__(options)
        self._dtrace_path = dtrace_path
        self._tool: DtraceTool | None = None
        self._spec: ProgramSpec | None = None
        self._workdir: Path | None = None
        self._program: Path | None = None
        self._prepare_notes: list[str] = []

    # ---- availability, for choose() and doctor
    @classmethod
    def availability(cls) -> Availability:
        if not _native_platform():
            found = find_dtrace()
            reason = (f"{found} is not a supported dtrace on {sys.platform}"
                      if found else f"dtrace(1) not found; {NOT_HERE}")
            return Availability.no(reason)
        path = find_dtrace()
        if path is None:
            return Availability.no("dtrace(1) not found", NOT_FOUND_FIX)
        if os.geteuid() != 0:
            return Availability.no("DTrace needs root", "run stprof as root, e.g. with sudo")
        try:
            DtraceTool(path, timeout_s=20).check_usable()
        except StprofError as exc:
            return Availability.no(exc.message, exc.fix)
        return Availability.yes(f"{path}")

    @classmethod
    def methods(cls) -> list[ProbeMethod]:
        overall = cls.availability()
        if not overall.ok:
            return [ProbeMethod(what, how, overall) for what, how in _METHOD_NAMES]
        tool = DtraceTool(find_dtrace() or "dtrace", timeout_s=20)
        return _probe_methods(tool)

    # ---- lifecycle
    def prepare(self) -> None:
        if self._spec is not None:
            return
        tool = self._find_tool()
        tool.check_usable()
        trap_function = "trap" if tool.has_probe("fbt::trap:entry") else None
        fault_probe = next((p for p in FAULT_PROBES if tool.has_probe(p.entry)), None)
        output = "json" if tool.accepts_json() else "text"
        spec = self._spec_for(trap_function, fault_probe, output)
        self._prepare_notes = _missing_probe_notes(spec)
        self._workdir = Path(tempfile.mkdtemp(prefix="stprof-dtrace-"))
        self._program = self._workdir / "stprof.d"
        try:
            self._program.write_text(generate(spec))
            tool.compile(self._program, spec.output == "json")
        except BaseException:
            self.close()  # __exit__ does not run when __enter__ raises
            raise
        self._tool, self._spec = tool, spec

    def run(self) -> Profile:
        self.prepare()
        if self.options.attach_pid is not None:
            return self._run_attached(self.options.attach_pid)
        return self._run_command(self.options.command)

    def close(self) -> None:
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
        self._workdir = self._program = None
        self._spec = self._tool = None

    # ---- preparing
    def _find_tool(self) -> DtraceTool:
        path = self._dtrace_path or find_dtrace()
        if path is None:
            raise CollectorUnavailable(f"dtrace(1) not found; {NOT_HERE}", NOT_FOUND_FIX)
        return DtraceTool(path)

    def _spec_for(self, trap_function: str | None, fault_probe: FaultProbe | None,
                  output: str) -> ProgramSpec:
        options = self.options
        stacks = options.kernel_stacks
        spec = ProgramSpec(
            follow=options.follow, attach=options.attach_pid is not None, stacks=stacks,
            stack_hz=options.stack_frequency_hz, output=output,
            trap_function=trap_function, fault_probe=fault_probe,
        )
        return spec

    # ---- running
    def _run_command(self, argv: list[str]) -> Profile:
        spec = self._prepared_spec()
        profile = Profile(command=list(argv), collector=self.name)
        child = spawn_paused(argv, self.options.credentials,
                             own_group=command_needs_own_group())
        running: _Running | None = None
        reaped = False
        try:
            running = self._start_dtrace(child.pid)
            self._wait_until_ready(running, profile)
            status, usage, exec_errno = _release_and_wait(child)
            reaped = True
            if exec_errno is not None:
                raise_exec_error(child.argv[0], exec_errno)
            profile.exit_status = decode_wait_status(status)
            profile.rusage = Rusage.from_struct(usage)
            profile.wall_ns = time.monotonic_ns() - (child.released_ns or child.started_ns)
            self._finish(running, profile)
        finally:
            _cleanup(child, reaped, running)
        return self._fill(profile, running, spec)

    def _run_attached(self, pid: int) -> Profile:
        spec = self._prepared_spec()
        profile = Profile(collector=self.name, attached_pid=pid)
        running = self._start_dtrace(pid)
        try:
            self._wait_until_ready(running, profile)
            started = time.monotonic_ns()
            try:
                with relay_signals(None):
                    running.process.wait()
            except Interrupted as stop:
                profile.note(f"detached on {stop}: the process was still running")
                _interrupt(running.process)
            profile.wall_ns = time.monotonic_ns() - started
            self._finish(running, profile)
        finally:
            _stop(running)
        return self._fill(profile, running, spec)

    def _prepared_spec(self) -> ProgramSpec:
        if self._spec is None:
            raise TracingError("dtrace collector used before prepare()")
        return self._spec

    def _start_dtrace(self, pid: int) -> _Running:
        assert self._tool is not None and self._program is not None and self._workdir
        output = self._workdir / "output"
        errors = self._workdir / "stderr"
        output.unlink(missing_ok=True)  # -o appends
        json_output = self._prepared_spec().output == "json"
        argv = [self._tool.path, "-q", *_format_args(json_output), "-o", str(output),
                "-s", str(self._program), "-p", str(pid)]
        stderr_file = errors.open("wb")
        try:
            process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                       stderr=stderr_file, start_new_session=True)
        except OSError as exc:
            stderr_file.close()
            raise CollectorUnavailable(f"cannot run {self._tool.path}: {exc.strerror}") from None
        return _Running(process, output, errors, stderr_file)

    def _wait_until_ready(self, running: _Running, profile: Profile) -> None:
        """Wait for the program's BEGIN line: dtrace has attached and enabled its probes.

        If dtrace dies first, its message becomes the error.  If it stays
        silent (some structured-output writers buffer), go ahead after
        ``ready_timeout_s`` and say that the start may be missing.
        """
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            if READY_MARKER in running.output_text():
                return
            if running.process.poll() is not None:
                raise failure_error(running.stderr_text(), "dtrace exited before tracing")
            time.sleep(self.poll_interval_s)
        profile.note(f"dtrace did not confirm it was tracing within {self.ready_timeout_s:.0f} s;"
                     " went ahead anyway: the first events may be missing")

    def _finish(self, running: _Running, profile: Profile) -> None:
        """dtrace ends by itself when its target exits; make sure it does, gently."""
        try:
            running.process.wait(timeout=self.exit_timeout_s)
        except subprocess.TimeoutExpired:
            profile.note(f"dtrace had not exited {self.exit_timeout_s:.0f} s after the command;"
                         " stopped it with SIGINT")
            _interrupt(running.process)

    def _fill(self, profile: Profile, running: _Running | None, spec: ProgramSpec) -> Profile:
        if running is None:
            return profile
        stderr = running.stderr_text()
        text = running.output_text()
        returncode = running.process.returncode
        if returncode not in (0, None):
            if not text.strip():
                raise failure_error(stderr, f"dtrace exited with status {returncode}")
            profile.note(f"dtrace exited with status {returncode}")
        for note in self._prepare_notes:
            profile.note(note)
        return fill_profile(profile, parse_output(text, spec.output), spec, stderr)


# ------------------------------------------------------------ helpers
def _release_and_wait(child: PausedChild) -> tuple[int, Any, int | None]:
    """Let the command exec, then wait4 for it (our child): status, rusage, exec errno."""
    with relay_signals(child.pid, child.group):
        child.release()
        exec_errno = child.exec_error()
        _, status, usage = os.wait4(child.pid, 0)
    return status, usage, exec_errno


def _interrupt(process: subprocess.Popen[bytes], grace_s: float = 10.0) -> None:
    """SIGINT makes dtrace run END and print; SIGKILL only if it will not stop."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _stop(running: _Running | None) -> None:
    if running is None:
        return
    _interrupt(running.process)
    running.stderr_file.close()


def _cleanup(child: PausedChild, reaped: bool, running: _Running | None) -> None:
    """Leave no process behind: the unreleased or unreaped child, and dtrace."""
    if not reaped:
        child.kill()
        with contextlib.suppress(ChildProcessError):
            os.waitpid(child.pid, 0)
    child.close()
    _stop(running)


def _missing_probe_notes(spec: ProgramSpec) -> list[str]:
    notes = []
    if spec.trap_function is None:
        notes.append("no fbt::trap:entry probe here: trap time not measured")
    if spec.fault_probe is None:
        notes.append("no fault probe here (fbt vm_fault_trap/vm_fault, vminfo as_fault): "
                     "page faults come from rusage only")
    elif not spec.fault_probe.timed:
        notes.append(f"page faults counted with {spec.fault_probe.entry}: no fault time")
    if spec.stacks != "off" and spec.stack_condition is None:
        notes.append(f"kernel stacks in {spec.stacks} mode need a fault or trap probe; "
                     "none sampled")
    return notes


_METHOD_NAMES = (
    ("syscalls", "syscall provider entry/return"),
    ("trap time", "fbt::trap entry/return"),
    ("fault counts and time", "fbt::vm_fault_trap (or vm_fault) entry/return"),
    ("kernel stacks", "profile-N with stack()"),
    ("structured output", "-x oformat=json"),
)


def _probe_methods(tool: DtraceTool) -> list[ProbeMethod]:
    """What this host's dtrace offers, probe by probe (dtrace -l answers)."""
    def listed(description: str, missing: str) -> Availability:
        return Availability.yes(description) if tool.has_probe(description) \
            else Availability.no(missing, "kldload dtraceall")

    fault = next((p for p in FAULT_PROBES if tool.has_probe(p.entry)), None)
    fault_state = (Availability.yes(fault.describe()) if fault is not None
                   else Availability.no("no vm_fault_trap, vm_fault or vminfo probe",
                                        "kldload dtraceall"))
    json_state = (Availability.yes("JSON") if tool.accepts_json()
                  else Availability.no("this dtrace has no oformat; labelled text is used"))
    return [
        ProbeMethod("syscalls", "syscall provider entry/return",
                    listed(SYSCALL_PROBE, "no syscall provider")),
        ProbeMethod("trap time", "fbt::trap entry/return",
                    listed("fbt::trap:entry", "no fbt::trap probe")),
        ProbeMethod("fault counts and time", "fbt/vminfo", fault_state),
        ProbeMethod("kernel stacks", "profile-N with stack()",
                    listed("profile:::profile-997", "no profile provider")),
        ProbeMethod("structured output", "-x oformat=json", json_state),
    ]
