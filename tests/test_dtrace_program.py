"""The generated D programs, as text: their probes, predicates and aggregations.

Where a real dtrace(1) is present (FreeBSD, illumos, macOS, as root) each
program is also compiled with ``dtrace -e``; elsewhere that test is skipped.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

from collectors.dtrace_program import (
    AGGREGATIONS,
    END_MARKER,
    FAULT_PROBES,
    READY_MARKER,
    ProgramSpec,
    aggregations_for,
    generate,
    traced_predicate,
)

OPTION_SETS = {
    "default": ProgramSpec(),
    "faults-stacks": ProgramSpec(stacks="faults"),
    "all-stacks-497": ProgramSpec(stacks="all", stack_hz=497),
    "no-follow": ProgramSpec(follow=False),
    "attach": ProgramSpec(attach=True),
    "json": ProgramSpec(output="json", stacks="faults"),
    "old-freebsd": ProgramSpec(fault_probe=FAULT_PROBES[1], stacks="faults"),
    "vminfo": ProgramSpec(fault_probe=FAULT_PROBES[2], trap_function=None, stacks="faults"),
    "bare": ProgramSpec(fault_probe=None, trap_function=None, stacks="all"),
}


def clauses(program: str) -> list[tuple[str, str | None, str]]:
    """(probe description, predicate, body) of each clause, in program order."""
    pattern = re.compile(r"^(\S[^\n]*)\n(?:/([^\n]*)/\n)?\{\n(.*?)\n\}", re.M | re.S)
    return [(m[1], m[2], m[3]) for m in pattern.finditer(program)]


def clause_for(program: str, probe: str) -> list[tuple[str | None, str]]:
    return [(pred, body) for desc, pred, body in clauses(program) if desc == probe]


def end_body(program: str) -> str:
    [(_, body)] = clause_for(program, "dtrace:::END")
    return body


# ------------------------------------------------------------ predicates
def test_follow_traces_the_target_and_its_descendants() -> None:
    program = generate(ProgramSpec(follow=True))
    [(predicate, body)] = clause_for(program, "syscall:::entry")
    assert predicate == "stprof_started && (pid == $target || progenyof($target))"
    assert body.strip() == "self->sc_ts = timestamp;"


def test_without_follow_only_the_target_is_traced() -> None:
    program = generate(ProgramSpec(follow=False))
    assert "progenyof" not in program
    [(predicate, _)] = clause_for(program, "syscall:::entry")
    assert predicate == "stprof_started && pid == $target"
    assert traced_predicate(ProgramSpec(follow=False)) in clause_for(program, "fbt::trap:entry")[0]


def test_counting_starts_at_the_targets_execve_which_is_itself_timed() -> None:
    program = generate(ProgramSpec())
    order = [desc for desc, _, _ in clauses(program)]
    assert order.index("syscall::execve:entry") < order.index("syscall:::entry")
    [(predicate, body)] = clause_for(program, "syscall::execve:entry")
    assert predicate == "pid == $target && !stprof_started"
    assert "stprof_started = 1;" in body
    [(_, begin)] = clause_for(program, "dtrace:::BEGIN")
    assert "stprof_started = 0;" in begin


def test_attached_counting_starts_at_once() -> None:
    program = generate(ProgramSpec(attach=True))
    assert "syscall::execve:entry" not in program
    [(_, begin)] = clause_for(program, "dtrace:::BEGIN")
    assert "stprof_started = 1;" in begin


# ----------------------------------------------------------- measurements
def test_syscall_returns_fill_time_histogram_and_errno() -> None:
    program = generate(ProgramSpec())
    returns = clause_for(program, "syscall:::return")
    predicates = [pred for pred, _ in returns]
    assert predicates[0] == "self->sc_ts"
    assert "self->sc_ts && errno > 0" in predicates
    assert predicates[-1] == "self->sc_ts"  # the clause clearing the timestamp comes last
    timing = returns[0][1]
    for statement in ("this->ns = timestamp - self->sc_ts;", "@sc_calls[probefunc] = count();",
                      "@sc_ns[probefunc] = sum(this->ns);", "@sc_hist[probefunc] = quantize("
                      "this->ns);", "@sc_min[probefunc] = min(this->ns);",
                      "@sc_max[probefunc] = max(this->ns);"):
        assert statement in timing
    assert "@sc_errno[probefunc, errno] = count();" in program
    assert returns[-1][1].strip() == "self->sc_ts = 0;"


def test_traps_are_split_by_whether_a_syscall_is_under_way() -> None:
    program = generate(ProgramSpec())
    assert len(clause_for(program, "fbt::trap:entry")) == 2
    returns = clause_for(program, "fbt::trap:return")
    assert returns[0][0] == "self->trap_depth == 1 && self->trap_ts"
    assert '@trap_count[self->sc_ts ? "syscall" : "user"] = count();' in returns[0][1]
    assert '@trap_ns[self->sc_ts ? "syscall" : "user"] = sum(this->ns);' in returns[0][1]
    assert returns[1] == ("self->trap_depth > 0", "\tself->trap_depth--;")


def test_faults_use_fbt_not_vminfo_on_freebsd() -> None:
    program = generate(ProgramSpec())
    assert "vminfo" not in program
    assert clause_for(program, "fbt::vm_fault_trap:entry")
    [charged, counted] = clause_for(program, "fbt::vm_fault_trap:return")
    assert charged[0] == "self->pf_ts && self->sc_ts"
    assert "@fault_hist = quantize(this->ns);" in counted[1]
    assert "@sc_fault_ns[probefunc] = sum(self->sc_pf_ns);" in program


def test_older_freebsd_counts_faults_at_vm_fault() -> None:
    program = generate(OPTION_SETS["old-freebsd"])
    assert "fbt::vm_fault:entry" in program and "vm_fault_trap" not in program


def test_vminfo_counts_faults_without_time() -> None:
    spec = OPTION_SETS["vminfo"]
    program = generate(spec)
    assert clause_for(program, "vminfo:::as_fault")
    assert "fault_ns" not in program and "fault_hist" not in program and "fbt::" not in program
    # with no timed fault and no trap probe, "faults" stacks cannot be sampled
    assert "profile-" not in program and spec.stack_condition is None


@pytest.mark.parametrize(("spec", "condition"), [
    (ProgramSpec(stacks="faults"), " && self->pf_ts != 0"),
    (ProgramSpec(stacks="faults", fault_probe=FAULT_PROBES[2]), " && self->trap_depth > 0"),
    (ProgramSpec(stacks="all"), ""),
])
def test_stacks_are_sampled_in_kernel_mode_of_traced_threads(spec: ProgramSpec,
                                                             condition: str) -> None:
    program = generate(spec)
    [(predicate, body)] = clause_for(program, "profile-999")
    assert predicate == f"arg0 != 0 && {traced_predicate(spec)}{condition}"
    assert body.strip() == "@stacks[stack()] = count();"


def test_stack_frequency_and_off() -> None:
    assert clause_for(generate(ProgramSpec(stacks="all", stack_hz=497)), "profile-497")
    program = generate(ProgramSpec(stacks="off"))
    assert "profile-" not in program and "@stacks" not in program


# ------------------------------------------------------------------ output
@pytest.mark.parametrize("name", sorted(OPTION_SETS))
def test_every_aggregation_filled_is_printed_and_every_printed_one_filled(name: str) -> None:
    spec = OPTION_SETS[name]
    program = generate(spec)
    filled = set(re.findall(r"@(\w+)(?:\[[^\n]*\])? = ", program))
    printed = set(re.findall(r"printa\((?:\"[^\"]*\", )?@(\w+)\);", end_body(program)))
    assert filled == printed == {agg.name for agg in aggregations_for(spec)}


@pytest.mark.parametrize("name", sorted(OPTION_SETS))
def test_markers_frame_the_output(name: str) -> None:
    program = generate(OPTION_SETS[name])
    [(_, begin)] = clause_for(program, "dtrace:::BEGIN")
    assert f'printf("%s\\n", "{READY_MARKER}");' in begin
    assert end_body(program).splitlines()[-1].strip() == f'printf("%s\\n", "{END_MARKER}");'
    assert program.count("{") == program.count("}")
    assert "#pragma D option quiet" in program


def test_text_output_labels_every_record() -> None:
    body = end_body(generate(ProgramSpec(stacks="all")))
    assert 'printa("stprof:sc_calls %s %@d\\n", @sc_calls);' in body
    assert 'printa("stprof:sc_errno %s %d %@d\\n", @sc_errno);' in body
    assert 'printa("stprof:proc_calls %d %d %s %@d\\n", @proc_calls);' in body
    assert 'printa("stprof:sc_hist %s%@d\\nstprof:hist-end\\n", @sc_hist);' in body
    assert 'printa("stprof:fault_hist%@d\\nstprof:hist-end\\n", @fault_hist);' in body
    assert 'printa("stprof:stacks%k\\nstprof:stack-count %@d\\n", @stacks);' in body


def test_json_output_lets_dtrace_label_the_aggregations() -> None:
    body = end_body(generate(ProgramSpec(output="json")))
    assert "printa(@sc_calls);" in body and "stprof:sc_calls" not in body


def test_only_a_last_key_may_hold_spaces() -> None:
    """The text parser gives the last key the rest of the line: execname may hold spaces."""
    for agg in AGGREGATIONS.values():
        if agg.name.startswith("proc_"):
            assert agg.keys[-1] == "str"


@pytest.mark.parametrize("bad", [{"stacks": "some"}, {"output": "xml"}, {"stack_hz": 0}])
def test_nonsense_specs_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        ProgramSpec(**bad)  # type: ignore[arg-type]


# ------------------------------------------------------- real compilation
def _real_dtrace() -> str | None:
    native = sys.platform.startswith(("freebsd", "darwin", "sunos", "illumos"))
    return shutil.which("dtrace") if native and os.geteuid() == 0 else None


@pytest.mark.freebsd
@pytest.mark.skipif(_real_dtrace() is None,
                    reason="needs dtrace(1) on FreeBSD/illumos/macOS as root; "
                           "this host has none (Linux's dtrace, if any, is not DTrace)")
@pytest.mark.parametrize("name", sorted(OPTION_SETS))
def test_programs_compile_with_dtrace_e(name: str, tmp_path: object) -> None:
    from pathlib import Path

    spec = OPTION_SETS[name]
    script = Path(str(tmp_path)) / f"{name}.d"
    script.write_text(generate(spec))
    argv = [str(_real_dtrace()), "-e", "-s", str(script)]
    if spec.output == "json":
        argv[1:1] = ["-x", "oformat=json"]
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0 and "does not match any probes" in result.stderr:
        pytest.skip(f"a probe of this option set is absent here: {result.stderr.strip()}")
    assert result.returncode == 0, result.stderr
