"""-e trace=SET: strace's syntax for the syscalls to trace, resolved against the table."""

from __future__ import annotations

import pytest

from collectors.trace_set import parse_trace_set
from profiler.errors import UsageError
from profiler.syscall_classes import X86_64_CLASSES, classes_of

KNOWN = frozenset({"read", "write", "openat", "close", "getppid", "clone", "execve", "mmap",
                   "newfstatat", "socket", "kill", "futex"})


@pytest.mark.parametrize(("spec", "expected"), [
    ("openat", {"openat"}),
    ("read,write", {"read", "write"}),
    ("%file", {"openat", "execve", "newfstatat"}),
    ("%desc", {"read", "write", "openat", "close", "mmap", "newfstatat"}),
    ("%net", {"socket"}),
    ("%network", {"socket"}),
    ("%process", {"clone", "execve", "kill"}),
    ("%memory", {"mmap"}),
    ("%signal", {"kill"}),
    ("%%stat", {"newfstatat"}),
    ("/^get", {"getppid"}),
    ("/read|write", {"read", "write"}),
    ("!read", KNOWN - {"read"}),
    ("!%desc,getppid", KNOWN - {"read", "write", "openat", "close", "mmap", "newfstatat",
                                "getppid"}),
    ("all", KNOWN),
    ("none", set()),
    ("?nosuchcall,read", {"read"}),
])
def test_sets_resolve_as_strace_does(spec: str, expected: set[str]) -> None:
    assert parse_trace_set(spec, KNOWN).names == expected


@pytest.mark.parametrize(("spec", "word"), [
    ("x", "'x'"), ("%nosuchclass", "'%nosuchclass'"), ("read,bogus", "'bogus'"),
])
def test_unknown_names_and_classes_are_refused(spec: str, word: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_trace_set(spec, KNOWN)
    assert caught.value.one_line() == f"unknown syscall or class {word} in -e trace="


@pytest.mark.parametrize("spec", ["/(", "/zzz", "read,,write", ""])
def test_bad_regexes_and_empty_items_are_refused(spec: str) -> None:
    with pytest.raises(UsageError):
        parse_trace_set(spec, KNOWN)


def test_classes_hold_strace_s_well_known_members() -> None:
    # spot checks against strace's documented classes (strace(1), -e trace=%CLASS)
    assert {"open", "openat", "stat", "execve", "chdir"} <= X86_64_CLASSES["file"]
    assert {"read", "write", "close", "dup2", "openat"} <= X86_64_CLASSES["desc"]
    assert {"clone", "fork", "vfork", "execve", "exit_group", "wait4"} <= X86_64_CLASSES["process"]
    assert "getppid" not in set().union(*(X86_64_CLASSES[c] for c in (
        "file", "desc", "network", "process", "memory", "signal", "ipc", "creds", "clock")))
    assert classes_of("openat") == ("file", "desc") and classes_of("read") == ("desc",)
    assert classes_of("clone") == ("process",) and classes_of("getppid") == ("other",)


def _strace_seen(trace: str | None) -> set[str]:
    """The syscalls strace -c -f reports for a small shell pipeline."""
    import shutil
    import subprocess

    if shutil.which("strace") is None:
        pytest.skip("strace is not installed (make setup installs it)")
    argv = ["strace", "-f", "-c", "-o", "/dev/stdout", "-U", "name"]
    if trace is not None:
        argv += ["-e", f"trace={trace}"]
    result = subprocess.run([*argv, "sh", "-c", "cat /etc/hostname >/dev/null; ls / >/dev/null"],
                            capture_output=True, text=True, check=True, timeout=60)
    lines = result.stdout.splitlines()
    rows = [line for line in lines[2:] if line.strip()]
    return {row.split()[0] for row in rows if not row.startswith(("-", "total"))}


@pytest.mark.parametrize("cls", ["file", "desc", "process", "memory", "signal"])
def test_classes_select_what_the_real_strace_selects(cls: str) -> None:
    everything = _strace_seen(None)
    assert parse_trace_set(f"%{cls}", everything).names == _strace_seen(f"%{cls}")
