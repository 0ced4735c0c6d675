"""collectors.ebpf_cache: compiled probes kept between runs.

The pure parts (key, entry format, relocation, the directory's safety) run
anywhere; the rest compiles and loads for real (root, bcc) and checks that a
run from the cache counts exactly what a compiled run counts.
"""

from __future__ import annotations

import contextlib
import os
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from collector_guard import unavailable_reason
from workloads import build

from collectors import ebpf_cache
from collectors.base import Options
from profiler.model import Profile

# ----------------------------------------------------------------- pure parts
MAP_FD_LOAD = bytes([0x18, 0x11, 0, 0]) + struct.pack("<i", 7) + bytes(8)  # r1 = map fd 7
CONSTANT_LOAD = bytes([0x18, 0x02, 0, 0]) + struct.pack("<i", 7) + bytes(8)  # r2 = 7 (64-bit)
EXIT = bytes([0x95]) + bytes(7)


@pytest.fixture()
def cache_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "cache"
    directory.mkdir(mode=0o700)
    monkeypatch.setenv(ebpf_cache.ENV_DIR, str(directory))
    return directory


def sample_entry(key: str = "k") -> ebpf_cache.Entry:
    table = ebpf_cache.Table(name="counts", map_id=0, old_fd=7, map_type=2, flags=0,
                             key_size=4, leaf_size=8, max_entries=1,
                             key_desc='"unsigned int"', leaf_desc='"unsigned long long"')
    return ebpf_cache.Entry(key=key, license="GPL", kern_version=1,
                            functions={"f": MAP_FD_LOAD + CONSTANT_LOAD + EXIT}, tables=[table])


def test_relocate_rewrites_map_fds_only() -> None:
    moved = ebpf_cache.relocate(MAP_FD_LOAD + CONSTANT_LOAD + EXIT, {7: 42})
    assert moved is not None
    assert struct.unpack_from("<i", moved, 4) == (42,)          # the map reference
    assert struct.unpack_from("<i", moved, 20) == (7,)          # the constant stays
    assert moved[32:] == EXIT


def test_relocate_refuses_what_it_cannot_rewrite() -> None:
    assert ebpf_cache.relocate(MAP_FD_LOAD, {8: 42}) is None    # an fd it does not know
    map_value = bytes([0x18, 0x21, 0, 0]) + struct.pack("<i", 7) + bytes(8)  # BPF_PSEUDO_MAP_VALUE
    assert ebpf_cache.relocate(map_value, {7: 42}) is None
    assert ebpf_cache.relocate(EXIT[:5], {}) is None            # not whole instructions


def test_key_changes_with_every_input() -> None:
    base = ebpf_cache.cache_key("int x;", ["-DA=1"], bcc_identity="0.26.0")
    assert base == ebpf_cache.cache_key("int x;", ["-DA=1"], bcc_identity="0.26.0")
    assert base != ebpf_cache.cache_key("int y;", ["-DA=1"], bcc_identity="0.26.0")
    assert base != ebpf_cache.cache_key("int x;", ["-DA=2"], bcc_identity="0.26.0")
    assert base != ebpf_cache.cache_key("int x;", ["-DA=1"], bcc_identity="0.27.0")


def test_entry_round_trip_and_refusals(cache_in: Path) -> None:
    entry = sample_entry()
    path = ebpf_cache.write_entry(entry)
    assert path is not None and path.parent == cache_in / "ebpf"
    assert path.stat().st_mode & 0o777 == 0o600
    assert ebpf_cache.read_entry("k") == entry
    assert ebpf_cache.read_entry("other") is None               # no entry for that key
    text = path.read_text()
    path.write_text(text.replace('"GPL"', '"MIT"'))             # checksum no longer holds
    assert ebpf_cache.read_entry("k") is None
    path.write_text(text[: len(text) // 2])                     # truncated
    assert ebpf_cache.read_entry("k") is None
    path.write_bytes(b"\xff\xfe garbage")
    assert ebpf_cache.read_entry("k") is None
    assert ebpf_cache.write_entry(entry) == path                # rebuilt over it
    assert ebpf_cache.read_entry("k") == entry


def test_entry_made_for_another_key_is_refused(cache_in: Path) -> None:
    path = ebpf_cache.write_entry(sample_entry("k"))
    assert path is not None
    path.rename(path.with_name("j.json"))
    assert ebpf_cache.read_entry("j") is None


def test_directory_others_may_write_is_not_used(cache_in: Path) -> None:
    assert ebpf_cache.write_entry(sample_entry()) is not None
    (cache_in / "ebpf").chmod(0o777)
    try:
        assert ebpf_cache.read_entry("k") is None
        assert ebpf_cache.write_entry(sample_entry()) is None
    finally:
        (cache_in / "ebpf").chmod(0o700)
    path = cache_in / "ebpf" / "k.json"
    path.chmod(0o666)
    assert ebpf_cache.read_entry("k") is None


def test_cache_off(monkeypatch: pytest.MonkeyPatch) -> None:
    for value in ("", "off"):
        monkeypatch.setenv(ebpf_cache.ENV_DIR, value)
        assert ebpf_cache.cache_dir() is None
        assert ebpf_cache.write_entry(sample_entry()) is None
        assert ebpf_cache.read_entry("k") is None


def test_racing_writers_leave_a_whole_entry(cache_in: Path) -> None:
    entries = [sample_entry() for _ in range(8)]
    for number, entry in enumerate(entries):
        entry.kern_version = number
    workers = [threading.Thread(target=ebpf_cache.write_entry, args=(entry,))
               for entry in entries for _ in range(5)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert ebpf_cache.read_entry("k") in entries
    assert [p.name for p in (cache_in / "ebpf").iterdir()] == ["k.json"]  # no temporaries


# ----------------------------------------------------------------- for real
_UNAVAILABLE = unavailable_reason("ebpf")
needs_ebpf = pytest.mark.skipif(bool(_UNAVAILABLE), reason=f"ebpf collector: {_UNAVAILABLE}")
GETPPID, ENOENT, CHILD, THREAD, PAGES, EXIT_CODE = 2000, 300, 700, 500, 1000, 3


def profile_of(options: Options) -> tuple[Profile, bool]:
    from collectors.ebpf import EbpfCollector

    with EbpfCollector(options) as collector:
        profile = collector.run()
        return profile, collector.from_cache


def groundtruth_options(**extra: object) -> Options:
    binary = build("groundtruth")
    return Options(command=[str(binary), str(GETPPID), str(ENOENT), str(CHILD), str(THREAD),
                            str(PAGES), str(EXIT_CODE)], **extra)  # type: ignore[arg-type]


def exact_part(profile: Profile) -> tuple[object, ...]:
    return (profile.exit_status, profile.syscalls["getppid"].calls,
            profile.syscalls["chdir"].errnos, profile.syscalls["execve"].calls,
            sorted(p.threads for p in profile.processes))


@pytest.fixture()
def entries(cache_in: Path) -> Iterator[Path]:
    yield cache_in / "ebpf"


@pytest.mark.root
@pytest.mark.bcc
@needs_ebpf
def test_cached_run_counts_what_a_compiled_run_counts(entries: Path) -> None:
    compiled, from_cache = profile_of(groundtruth_options())
    assert not from_cache
    assert len(list(entries.iterdir())) == 1
    cached, from_cache = profile_of(groundtruth_options())
    assert from_cache
    assert exact_part(cached) == exact_part(compiled) == (
        EXIT_CODE, GETPPID + CHILD + THREAD, {"ENOENT": ENOENT}, 1, [1, 2])
    budget = cached.budget
    assert budget is not None and sum(budget.parts().values()) == budget.lifetime_ns
    assert cached.faults.count >= PAGES and cached.irqs is not None


@pytest.mark.root
@pytest.mark.bcc
@needs_ebpf
def test_each_plan_has_its_own_entry(entries: Path, tmp_path: Path) -> None:
    timeline = tmp_path / "timeline.json"
    for _ in range(2):
        profile, _ = profile_of(groundtruth_options(timeline=str(timeline), per_thread=True))
        assert profile.syscalls["getppid"].calls == GETPPID + CHILD + THREAD
        assert profile.per_thread
        assert timeline.stat().st_size > 0
    profile_of(groundtruth_options(trace_set=frozenset({"getppid"})))
    names = {p.name for p in entries.iterdir()}
    assert len(names) == 2
    _, from_cache = profile_of(groundtruth_options(timeline=str(timeline), per_thread=True))
    assert from_cache


@pytest.mark.root
@pytest.mark.bcc
@needs_ebpf
def test_corrupt_entry_is_compiled_again(entries: Path) -> None:
    profile_of(groundtruth_options())
    (entry,) = entries.iterdir()
    entry.write_text("{not json")
    profile, from_cache = profile_of(groundtruth_options())
    assert not from_cache
    assert profile.syscalls["getppid"].calls == GETPPID + CHILD + THREAD
    assert ebpf_cache.read_entry(entry.stem) is not None
    assert os.stat(entry).st_mode & 0o777 == 0o600


def bpf_fds() -> int:
    """This process's descriptors of BPF programs, maps and links."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if "bpf" in os.readlink(f"/proc/self/fd/{fd}"):
                count += 1
    return count


@pytest.mark.root
@pytest.mark.bcc
@needs_ebpf
def test_entry_the_kernel_refuses_is_undone_and_compiled(entries: Path) -> None:
    profile_of(groundtruth_options())
    (path,) = entries.iterdir()
    entry = ebpf_cache.read_entry(path.stem)
    assert entry is not None and "raw_tracepoint__sys_exit" in entry.functions
    entry.functions["raw_tracepoint__sys_exit"] = EXIT  # r0 never set: the verifier refuses
    assert ebpf_cache.write_entry(entry) == path
    before = bpf_fds()
    profile, from_cache = profile_of(groundtruth_options())
    assert not from_cache
    assert profile.syscalls["getppid"].calls == GETPPID + CHILD + THREAD
    assert bpf_fds() == before  # nothing of the refused entry is left attached or open


def test_doctor_says_where_the_cache_is(cache_in: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert ebpf_cache.describe() == (True, f"{cache_in / 'ebpf'} (made at the first compile)")
    assert ebpf_cache.write_entry(sample_entry()) is not None
    assert ebpf_cache.describe() == (True, f"{cache_in / 'ebpf'}: 1 compiled plan(s)")
    (cache_in / "ebpf").chmod(0o777)
    try:
        usable, what = ebpf_cache.describe()
        assert not usable and "not used" in what
    finally:
        (cache_in / "ebpf").chmod(0o700)
    monkeypatch.setenv(ebpf_cache.ENV_DIR, "off")
    assert not ebpf_cache.describe()[0]
