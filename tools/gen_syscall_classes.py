"""Write profiler/syscall_classes.py: strace's syscall classes for x86-64.

strace sorts syscalls into classes (`-e trace=%file`, `%desc`, ...) by flags
in its per-architecture tables.  This reads those tables from a strace source
tree (src/linux/x86_64/syscallent.h and src/linux/generic/syscallent-common.h)
and writes the classes as data, so that stprof's `-e trace=%CLASS` and the
timeline's categories (`cat`) mean what they mean to strace.

    python3 tools/gen_syscall_classes.py STRACE_SOURCE_DIR [COMMIT] > profiler/syscall_classes.py
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

# strace's flag shorthand -> the class name `-e trace=%NAME` takes
FLAG_CLASSES = {
    "TD": "desc", "TF": "file", "TI": "ipc", "TN": "network", "TP": "process",
    "TS": "signal", "TM": "memory", "TC": "creds", "TCL": "clock",
    "TST": "stat", "TLST": "lstat", "TFST": "fstat", "TSTA": "%stat",
    "TSF": "statfs", "TFSF": "fstatfs", "TSFA": "%statfs", "PU": "pure",
}
ENTRY = re.compile(r'^\[\s*(?:BASE_NR \+ )?(\d+)\]\s*=\s*\{\s*\d+,\s*([A-Z|0-9]+),.*"(\w+)"')


def classes_of(tables: list[Path]) -> dict[str, set[str]]:
    classes: dict[str, set[str]] = {name: set() for name in FLAG_CLASSES.values()}
    for table in tables:
        for line in table.read_text().splitlines():
            match = ENTRY.match(line)
            if not match:
                continue
            for flag in match[2].split("|"):
                if flag in FLAG_CLASSES:
                    classes[FLAG_CLASSES[flag]].add(match[3])
    return classes


def main() -> None:
    source = Path(sys.argv[1])
    commit = sys.argv[2] if len(sys.argv) > 2 else "unknown"
    tables = [source / "src/linux/x86_64/syscallent.h",
              source / "src/linux/generic/syscallent-common.h"]
    classes = classes_of(tables)
    print('"""strace\'s syscall classes on x86-64 (generated: do not edit).\n')
    print("Made by tools/gen_syscall_classes.py from strace's src/linux/x86_64/syscallent.h")
    print(f"and src/linux/generic/syscallent-common.h at strace commit {commit}.")
    print('Each class is what `strace -e trace=%CLASS` selects."""\n')
    print("X86_64_CLASSES: dict[str, frozenset[str]] = {")
    for name in sorted(classes):
        members = sorted(classes[name])
        print(f"    {name!r}: frozenset({{")
        line = "       "
        for member in members:
            item = f" {member!r},"
            if len(line) + len(item) > 99:
                print(line)
                line = "       "
            line += item
        print(line)
        print("    }),")
    print("}")
    print(CLASSES_OF)


# The lookup the timeline uses, written out with the data.
CLASSES_OF = '''
# the classes a timeline slice's `cat` names, in strace(1)'s order
MAIN_CLASSES = ("file", "process", "network", "signal", "ipc", "desc", "memory", "creds",
                "clock")


def classes_of(name: str) -> tuple[str, ...]:
    """strace's main classes of syscall ``name``, in strace(1)'s order; ("other",) if none."""
    found = tuple(cls for cls in MAIN_CLASSES if name in X86_64_CLASSES[cls])
    return found or ("other",)'''


if __name__ == "__main__":
    main()
