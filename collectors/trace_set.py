"""`-e trace=SET`: which syscalls to trace, in strace's syntax.

SET is a comma-separated list of syscall names, `%CLASS` (strace's classes:
`%file`, `%desc`, `%network` or `%net`, `%process`, `%memory`, `%signal`,
`%ipc`, `%creds`, `%clock`, `%stat`, `%lstat`, `%fstat`, `%%stat`,
`%statfs`, `%fstatfs`, `%%statfs`, `%pure`), `/REGEX` (names it matches,
anywhere), `all` and `none`.  A `!` before the whole list traces everything
but it; a `?` before an item makes it optional (no error when this machine
lacks it), as in strace.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass

from profiler.errors import UsageError
from profiler.syscall_classes import X86_64_CLASSES

CLASS_ALIASES = {"net": "network"}


@dataclass(frozen=True)
class TraceSet:
    """The syscalls a run traces (by name), and the user's words for them."""

    names: frozenset[str]
    spec: str

    def __contains__(self, name: object) -> bool:
        return name in self.names


def parse_trace_set(spec: str, known: Collection[str]) -> TraceSet:
    """The syscalls of ``known`` (this machine's table) that ``spec`` selects.

    An unknown name, class or a bad regex is a UsageError naming it.
    """
    all_names = frozenset(known)
    text = spec.strip()
    negate = text.startswith("!")
    if negate:
        text = text[1:]
    chosen: set[str] = set()
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            raise UsageError(f"empty item in -e trace={spec}")
        optional = item.startswith("?")
        if optional:
            item = item[1:]
        chosen |= _expand(item, all_names, optional)
    names = all_names - chosen if negate else frozenset(chosen)
    return TraceSet(names=frozenset(names), spec=spec)


def _expand(item: str, all_names: frozenset[str], optional: bool) -> set[str]:
    if item == "all":
        return set(all_names)
    if item == "none":
        return set()
    if item.startswith("%"):
        cls = CLASS_ALIASES.get(item[1:], item[1:])
        if cls not in X86_64_CLASSES:
            raise UsageError(f"unknown syscall or class {item!r} in -e trace=")
        return set(X86_64_CLASSES[cls] & all_names)
    if item.startswith("/"):
        try:
            pattern = re.compile(item[1:])
        except re.error as exc:
            raise UsageError(f"bad regular expression {item!r} in -e trace= ({exc})") from None
        matched = {name for name in all_names if pattern.search(name)}
        if not matched and not optional:
            raise UsageError(f"no syscall matches {item!r} in -e trace=")
        return matched
    if item in all_names:
        return {item}
    if optional:
        return set()
    raise UsageError(f"unknown syscall or class {item!r} in -e trace=")


def trace_set_section(spec: str, names: Collection[str], method: str) -> dict[str, object]:
    """The profile's ``trace_set`` key (docs/schema.md): what was traced, and how."""
    return {"spec": spec, "syscalls": sorted(names), "method": method}
