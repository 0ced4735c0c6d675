"""The ptrace collector's compiled fast path (collectors/ptrace_fast.c) through ctypes.

``make setup`` builds ``collectors/_ptrace_fast.so`` with the system's C
compiler.  Where it is missing (not built, or not x86-64, whose exit stop
alone tells a syscall's number and result) the Python loop does all the work,
as it did before; ``stprof doctor`` says which loop a run uses, and
``STPROF_PTRACE_LOOP=python`` chooses the Python loop (the tests run both).
"""

from __future__ import annotations

import array
import ctypes
import os
import platform
from pathlib import Path

from collectors.ptrace_abi import PTRACE_SYSCALL

LIBRARY = Path(__file__).with_name("_ptrace_fast.so")
SOURCE = Path(__file__).with_name("ptrace_fast.c")
BATCH = 512  # calls counted by Python at a time (at most)
# how long the tracer polls for the next stop before it sleeps (see ptrace_fast.c)
SPIN_NS = 200_000
RECORD_FIELDS = 6  # a call: tid, nr, rax, entry_ns, exit_ns, 0; or an event (below)
EVENT_BASE = 1 << 41  # a record's nr at or above it: an event, nr - EVENT_BASE its kind
EVENT_CHILD, EVENT_DEATH = 1, 2

# what fast_run returns
FULL, OTHER, IDLE, FAILED = range(4)


class Loop(ctypes.Structure):
    """struct fast_loop (field for field)."""

    _fields_ = [
        ("records", ctypes.c_void_p),
        ("capacity", ctypes.c_int64),
        ("count", ctypes.c_int64),
        ("spin_ns", ctypes.c_int64),
        ("spin_max_ns", ctypes.c_int64),
        ("idle_since", ctypes.c_int64),
        ("cont_exit", ctypes.c_int64),
        ("resume_outside", ctypes.c_int64),
        ("other_tid", ctypes.c_int64),
        ("other_status", ctypes.c_int64),
        ("other_ns", ctypes.c_int64),
        ("error", ctypes.c_int64),
        ("polls", ctypes.c_int64),
        ("idles", ctypes.c_int64),
        ("table", ctypes.c_void_p),
        ("slots", ctypes.c_int64),
        ("used", ctypes.c_int64),
    ]


def unavailable_reason() -> str | None:
    """Why the fast path cannot be used here, or None if it can."""
    if os.environ.get("STPROF_PTRACE_LOOP") == "python":
        return "STPROF_PTRACE_LOOP=python asks for the Python loop"
    if platform.machine() != "x86_64":
        return f"the compiled loop reads x86-64 registers; this is {platform.machine()}"
    if not LIBRARY.exists():
        return f"{LIBRARY.name} is not built (make setup builds it)"
    if LIBRARY.stat().st_mtime < SOURCE.stat().st_mtime:
        return f"{LIBRARY.name} is older than {SOURCE.name} (make setup rebuilds it)"
    return None


_library: ctypes.CDLL | None = None


def _load() -> ctypes.CDLL:
    global _library
    if _library is None:
        library = ctypes.CDLL(str(LIBRARY), use_errno=True)
        i64, i32, ptr = ctypes.c_int64, ctypes.c_int32, ctypes.c_void_p
        for name, args in (("fast_init", [ptr]), ("fast_free", [ptr]),
                           ("fast_set", [ptr, i32, i64, i64]),
                           ("fast_get", [ptr, i32, ptr, ptr]),
                           ("fast_remove", [ptr, i32]),
                           ("fast_handle", [ptr, i32, i32, i64]),
                           ("fast_woken", [ptr, i32, i32, i64]),
                           ("fast_run", [ptr])):
            function = getattr(library, name)
            function.argtypes = args
            function.restype = ctypes.c_int
        _library = library
    return _library


class FastPath:
    """One tracer's compiled loop: its thread table and its batch of calls."""

    def __init__(self, cont_exit: int, spin_ns: int = SPIN_NS) -> None:
        self._lib = _load()
        self.values = array.array("Q", bytes(8 * RECORD_FIELDS * BATCH))
        self.loop = Loop(records=self.values.buffer_info()[0], capacity=BATCH,
                         spin_ns=spin_ns, spin_max_ns=spin_ns, cont_exit=cont_exit,
                         resume_outside=PTRACE_SYSCALL)
        self._ref = ctypes.byref(self.loop)
        if self._lib.fast_init(self._ref) != 0:
            raise MemoryError("ptrace fast path: no memory for its thread table")
        self._pending = ctypes.c_int64()
        self._entry = ctypes.c_int64()
        self._pending_ref = ctypes.byref(self._pending)
        self._entry_ref = ctypes.byref(self._entry)

    def close(self) -> None:
        """Free the thread table (also when the tracer is dropped)."""
        if self.loop.table:
            self._lib.fast_free(self._ref)

    __del__ = close

    def step(self) -> int:
        """Handle stops until the batch is full, one is Python's, or all is quiet."""
        result: int = self._lib.fast_run(self._ref)
        return result

    def woken(self, tid: int, status: int, t: int) -> bool:
        """Offer the stop that ended Python's sleep after IDLE to the fast path."""
        return bool(self._lib.fast_woken(self._ref, tid, status, t))

    def take_batch(self) -> list[int]:
        """The batch's records as flat values, and an empty batch."""
        count = self.loop.count
        self.loop.count = 0
        return self.values[: count * RECORD_FIELDS].tolist()

    def put_states(self, threads: dict[int, list[int]]) -> None:
        """Python's thread states become the fast path's (after Python handled a stop)."""
        lib, ref = self._lib, self._ref
        lib.fast_free(ref)
        if lib.fast_init(ref) != 0:
            raise MemoryError("ptrace fast path: no memory for its thread table")
        for tid, st in threads.items():
            if lib.fast_set(ref, tid, st[0], st[1]) != 0:
                raise MemoryError("ptrace fast path: no memory for its thread table")

    def get_state(self, tid: int, st: list[int]) -> None:
        """One thread's state from the fast path into ``st`` (if it knows it)."""
        if self._lib.fast_get(self._ref, tid, self._pending_ref, self._entry_ref):
            st[0] = self._pending.value
            st[1] = self._entry.value

    def set(self, tid: int, st: list[int]) -> None:
        """One thread's state (``st[0]``, ``st[1]``) into the fast path."""
        if self._lib.fast_set(self._ref, tid, st[0], st[1]) != 0:
            raise MemoryError("ptrace fast path: no memory for its thread table")

    def remove(self, tid: int) -> None:
        """Forget a thread that is gone."""
        self._lib.fast_remove(self._ref, tid)

    def get_states(self, threads: dict[int, list[int]]) -> None:
        """The fast path's thread states become Python's (before Python handles a stop)."""
        lib, ref = self._lib, self._ref
        for tid, st in threads.items():
            if lib.fast_get(ref, tid, self._pending_ref, self._entry_ref):
                st[0] = self._pending.value
                st[1] = self._entry.value
