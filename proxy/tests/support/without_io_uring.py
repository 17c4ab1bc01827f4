"""Runs a command under a seccomp filter that fails io_uring_setup with the given errno, the
way a container's seccomp profile does (Docker's default since 25.0 answers EPERM).

    python3 without_io_uring.py EPERM|ENOSYS COMMAND [ARG...]

Nothing else is filtered. io_uring_setup is system call 425 on every architecture (the
numbers were unified before io_uring came), so the filter does not look at the architecture.
"""
import ctypes
import errno
import os
import struct
import sys

PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
SECCOMP_RET_ERRNO = 0x00050000
SECCOMP_RET_ALLOW = 0x7FFF0000
BPF_LD_W_ABS = 0x20  # A = seccomp_data[k]
BPF_JEQ_K = 0x15  # if A == k: skip jt else skip jf
BPF_RET_K = 0x06
IO_URING_SETUP = 425


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def main():
    answer, command = getattr(errno, sys.argv[1]), sys.argv[2:]
    program = [
        (BPF_LD_W_ABS, 0, 0, 0),  # seccomp_data.nr
        (BPF_JEQ_K, 0, 1, IO_URING_SETUP),
        (BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO | answer),
        (BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),
    ]
    code = ctypes.create_string_buffer(b"".join(struct.pack("=HBBI", *i) for i in program))
    fprog = SockFprog(len(program), ctypes.addressof(code))
    libc = ctypes.CDLL(None, use_errno=True)
    if (
        libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
        or libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0
    ):
        sys.exit("without_io_uring: cannot install the filter: " + os.strerror(ctypes.get_errno()))
    os.execvp(command[0], command)


main()
