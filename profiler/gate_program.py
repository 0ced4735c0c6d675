"""The gate program: a 625-byte x86-64 Linux executable the command waits in.

stprof (bcc and LLVM loaded, some 150 MB mapped) starts it with posix_spawn
(a vfork: stprof's image is neither copied nor torn down).  It drops
privileges, asks the kernel to SIGKILL it when stprof dies (PR_SET_PDEATHSIG,
kept across the exec), says it is ready, waits at the gate and execs the command, so
the command's execve, where counting starts, costs what it costs outside
stprof.  A shell could wait at the gate too, but its start-up (about 0.5 ms
of CPU and a hundred page faults) would land in the command's rusage, and a
failed exec could not report its errno.  The source is :data:`GATE_ASM`;
tests/test_target.py checks that :data:`GATE_CODE` is its assembly where
``as`` is installed.  Where it cannot run (not x86-64 Linux, exec from a
memfd forbidden) :func:`descriptor` says None and profiler.target forks.
"""

from __future__ import annotations

import errno
import os
import platform
import struct
import sys

GATE_ASM = """\
# stprof's gate program, x86-64 Linux: no libc, no data, position-independent.
# argv: [name, GATE_FD, ERR_FD, PARENT, N, c1..cN, PATH, ARGV0, ARGS...];
# c1..cN is empty (N=0) or UID GID GROUPS... (N>=2): setgroups, setgid, setuid.
# Signals 32 and 33 (glibc's own, which its posix_spawn leaves ignored, as
# sigaddset refuses them) are set to SIG_DFL.
# After the drop (a change of credentials clears it): PR_SET_PDEATHSIG
# SIGKILL, so the command dies with stprof; if getppid() is no longer PARENT,
# stprof died before that took effect: exit 125.
# Then: FD_CLOEXEC on ERR_FD, write "r" to ERR_FD, read 1 byte from GATE_FD;
# unless it is "g": exit 125.  Close GATE_FD, execve(PATH, &ARGV0, envp);
# on any failure write the errno in decimal to ERR_FD, exit 127 (ENOENT,
# ENOTDIR) or 126.
        .intel_syntax noprefix
        .text
        .globl _start
_start:
        mov     rbx, [rsp]                  # argc
        lea     r12, [rsp+8]                # argv
        lea     r13, [r12+rbx*8+8]          # envp
        push    0                           # a zeroed struct sigaction: SIG_DFL
        push    0
        push    0
        push    0
        mov     ebp, 32
sigdfl:                                     # glibc's posix_spawn ignores 32, 33
        mov     eax, 13                     # rt_sigaction(sig, SIG_DFL, NULL, 8)
        mov     edi, ebp
        mov     rsi, rsp
        xor     edx, edx
        mov     r10d, 8
        syscall
        inc     ebp
        cmp     ebp, 33
        jbe     sigdfl
        mov     rdi, [r12+8]
        call    atoi
        mov     r14, rax                    # gate fd
        mov     rdi, [r12+16]
        call    atoi
        mov     r15, rax                    # err fd
        mov     eax, 72                     # fcntl(err, F_SETFD, FD_CLOEXEC)
        mov     rdi, r15
        mov     esi, 2
        mov     edx, 1
        syscall
        test    rax, rax
        js      fail
        mov     rdi, [r12+32]
        call    atoi
        mov     rbp, rax                    # N
        lea     rbx, [r12+40]               # &c1
        test    rbp, rbp
        jz      ready
        lea     rax, [rbp*4+15]             # room for N-2 gid_t, 16-aligned
        and     rax, -16
        sub     rsp, rax
        xor     r8, r8                      # groups parsed
groups:
        lea     r9, [r8+2]
        cmp     r9, rbp
        jae     drop
        mov     rdi, [rbx+r9*8]
        call    atoi
        mov     [rsp+r8*4], eax
        inc     r8
        jmp     groups
drop:
        mov     eax, 116                    # setgroups(n, list)
        mov     rdi, r8
        mov     rsi, rsp
        syscall
        test    rax, rax
        js      fail
        mov     rdi, [rbx+8]
        call    atoi
        mov     rdi, rax
        mov     eax, 106                    # setgid(gid)
        syscall
        test    rax, rax
        js      fail
        mov     rdi, [rbx]
        call    atoi
        mov     rdi, rax
        mov     eax, 105                    # setuid(uid)
        syscall
        test    rax, rax
        js      fail
ready:
        mov     eax, 157                    # prctl(PR_SET_PDEATHSIG, SIGKILL)
        mov     edi, 1
        mov     esi, 9
        syscall
        test    rax, rax
        js      fail
        mov     rdi, [r12+24]
        call    atoi
        mov     r8, rax                     # stprof's pid
        mov     eax, 110                    # getppid()
        syscall
        cmp     rax, r8
        jne     closed                      # stprof is gone already
        lea     rbx, [rbx+rbp*8]            # &PATH
        push    0x72                        # "r"
        mov     eax, 1                      # write(err, "r", 1)
        mov     rdi, r15
        mov     rsi, rsp
        mov     edx, 1
        syscall
gate:
        xor     eax, eax                    # read(gate, buf, 1)
        mov     rdi, r14
        mov     rsi, rsp
        mov     edx, 1
        syscall
        cmp     rax, -4                     # EINTR
        je      gate
        cmp     rax, 1
        jne     closed
        cmp     byte ptr [rsp], 0x67        # "g"
        jne     closed
        mov     eax, 3                      # close(gate)
        mov     rdi, r14
        syscall
        mov     eax, 59                     # execve(PATH, &ARGV0, envp)
        mov     rdi, [rbx]
        lea     rsi, [rbx+8]
        mov     rdx, r13
        syscall
fail:                                       # rax = -errno
        neg     rax
        mov     r8, rax                     # errno
        sub     rsp, 32
        lea     rsi, [rsp+32]               # digits, written backwards
        mov     ecx, 10
digits:
        xor     edx, edx
        div     rcx
        add     dl, 0x30
        dec     rsi
        mov     [rsi], dl
        test    rax, rax
        jnz     digits
        lea     rdx, [rsp+32]
        sub     rdx, rsi                    # length
        mov     eax, 1                      # write(err, digits, length)
        mov     rdi, r15
        syscall
        mov     edi, 126
        cmp     r8, 2                       # ENOENT
        je      notfound
        cmp     r8, 20                      # ENOTDIR
        jne     leave
notfound:
        mov     edi, 127
        jmp     leave
closed:
        mov     edi, 125
leave:
        mov     eax, 231                    # exit_group(status)
        syscall
atoi:                                       # rdi: decimal string -> rax
        xor     eax, eax
atoi_next:
        movzx   ecx, byte ptr [rdi]
        test    ecx, ecx
        jz      atoi_done
        imul    rax, rax, 10
        lea     rax, [rax+rcx-0x30]
        inc     rdi
        jmp     atoi_next
atoi_done:
        ret
"""

# GATE_ASM assembled (``as --64``, then ``objcopy -O binary -j .text``);
# tests/test_target.py checks the two agree where ``as`` is installed.
GATE_CODE = bytes.fromhex(
    "488b1c244c8d6424084d8d6cdc086a006a006a006a00bd20000000b80d00000089ef4889"
    "e631d241ba080000000f05ffc583fd2176e5498b7c2408e8a10100004989c6498b7c2410"
    "e8940100004989c7b8480000004c89ffbe02000000ba010000000f054885c00f88180100"
    "00498b7c2420e86a0100004889c5498d5c24284885ed747a488d04ad0f0000004883e0f0"
    "4829c44d31c04d8d48024939e973124a8b3ccbe8390100004289048449ffc0ebe5b87400"
    "00004c89c74889e60f054885c00f88be000000488b7b08e8110100004889c7b86a000000"
    "0f054885c00f88a2000000488b3be8f60000004889c7b8690000000f054885c00f888700"
    "0000b89d000000bf01000000be090000000f054885c07871498b7c2418e8c30000004989"
    "c0b86e0000000f054c39c00f85a4000000488d1ceb6a72b8010000004c89ff4889e6ba01"
    "0000000f0531c04c89f74889e6ba010000000f054883f8fc74eb4883f8017571803c2467"
    "756bb8030000004c89f70f05b83b000000488b3b488d73084c89ea0f0548f7d84989c048"
    "83ec20488d742420b90a00000031d248f7f180c23048ffce88164885c075ee488d542420"
    "4829f2b8010000004c89ff0f05bf7e0000004983f80274064983f814750cbf7f000000eb"
    "05bf7d000000b8e70000000f0531c00fb60f85c9740e486bc00a488d4408d048ffc7ebeb"
    "c3"
)

GATE_BASE = 0x400000
_ELF_HEADER = struct.Struct("<16sHHIQQQIHHHHHH")
_PROGRAM_HEADER = struct.Struct("<IIQQQQQQ")
_MFD_EXEC = 0x0010  # Linux 6.3+: an executable memfd, said explicitly
_fd: int | None = None
_broken = False


def gate_elf(code: bytes = GATE_CODE) -> bytes:
    """A static ELF executable of ``code``: one read+exec segment, no sections."""
    headers = _ELF_HEADER.size + _PROGRAM_HEADER.size
    size = headers + len(code)
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)  # 64-bit, little-endian, SysV
    elf = _ELF_HEADER.pack(
        ident, 2, 62, 1,  # ET_EXEC, EM_X86_64, EV_CURRENT
        GATE_BASE + headers, _ELF_HEADER.size, 0,  # entry, phoff, shoff
        0, _ELF_HEADER.size, _PROGRAM_HEADER.size, 1, 0, 0, 0,
    )
    segment = _PROGRAM_HEADER.pack(1, 5, 0, GATE_BASE, GATE_BASE, size, size, 0x1000)  # R+X
    return elf + segment + code


def available() -> bool:
    """Whether the command waits at the gate in the small program (else in a fork)."""
    return descriptor() is not None


def mark_unusable() -> None:
    """Exec of the program was refused here: fork from now on."""
    global _broken
    _broken = True


def descriptor() -> int | None:
    """A read-only descriptor of the gate program in a memfd; None where it cannot run."""
    global _fd, _broken
    if _broken or _fd is not None:
        return None if _broken else _fd
    _broken = True
    if sys.platform != "linux" or platform.machine() != "x86_64":
        return None
    try:
        try:
            fd = os.memfd_create("stprof-gate", os.MFD_CLOEXEC | _MFD_EXEC)
        except OSError as exc:
            if exc.errno != errno.EINVAL:  # before Linux 6.3: no MFD_EXEC
                raise
            fd = os.memfd_create("stprof-gate", os.MFD_CLOEXEC)
        try:
            os.write(fd, gate_elf())
            # Executed through a read-only descriptor: a writable one open
            # would make the exec fail (ETXTBSY).
            readonly = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)
        finally:
            os.close(fd)
    except (OSError, AttributeError):
        return None
    _fd, _broken = readonly, False
    return _fd
