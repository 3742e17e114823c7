# Counts the ring-0 instructions of the IPC fast path the way seL4's was counted for
# docs/ARCHITECTURE.md: the kernel runs under QEMU's TCG (one CPU, so `syscall` is the
# entry), and gdb single-steps each half of a cross-address-space Call + ReplyRecv round
# trip with 8 message words (L4_WORDS=n for another count) from the system-call entry's
# first instruction until the CPU is back in user mode (the `sysretq`/`iretq` included).
#
#   L4_KERNEL=target/guest/x86_64-unknown-linux-gnu/release/l4-kernel \
#   L4_ARCHIVE=$(ls target/release/build/l4vmm-*/out/boot.cpio | head -1) \
#   gdb -q -batch -x bench/tcg_count.py
#
# It boots `run=echo,ipcbench`, stops at `syscall_entry` for every such `Call`, and
# steps the third one whose half switches CR3 (ipcbench's cross-address-space row to
# echo; the first rounds warm up), then the `ReplyRecv` that answers it. Prints one line
# per half and the round trip. Exit status 0 if both halves were counted.
import os
import socket
import subprocess
import sys

import gdb

CALL, REPLY_RECV = 8, 9


def reg(name):
    return int(gdb.parse_and_eval("$" + name)) & 0xFFFF_FFFF_FFFF_FFFF


def steps_to_user():
    """Single-steps until the CPU is in ring 3; returns how many instructions ran."""
    n = 0
    while True:
        gdb.execute("stepi", to_string=True)
        n += 1
        if reg("cs") & 3 == 3:
            return n
        if n > 100_000:
            raise RuntimeError("no return to user mode within 100,000 instructions")


def main():
    kernel, archive = os.environ["L4_KERNEL"], os.environ["L4_ARCHIVE"]
    words = int(os.environ.get("L4_WORDS", "8"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    qemu = subprocess.Popen(
        ["qemu-system-x86_64", "-accel", "tcg", "-smp", "1", "-m", "256", "-nographic",
         "-no-reboot", "-display", "none", "-monitor", "none", "-serial", "null",
         "-device", "isa-debug-exit,iobase=0xf4,iosize=0x01", "-kernel", kernel,
         "-initrd", archive, "-append", "run=echo,ipcbench", "-gdb", "tcp:127.0.0.1:%d" % port, "-S"])
    try:
        gdb.execute("file " + kernel, to_string=True)
        gdb.execute("target remote 127.0.0.1:%d" % port, to_string=True)
        gdb.execute("break syscall_entry", to_string=True)
        seen = 0
        while True:
            gdb.execute("continue", to_string=True)
            if reg("rax") != CALL or (reg("rsi") >> 32) & 0x7F != words:
                continue
            before = reg("cr3")
            gdb.execute("disable", to_string=True)
            call = steps_to_user()
            gdb.execute("enable", to_string=True)
            if reg("cr3") == before:
                continue  # same address space: not the row compared with seL4's
            seen += 1
            if seen < 3:
                continue
            gdb.execute("continue", to_string=True)
            if reg("rax") != REPLY_RECV:
                raise RuntimeError("the server's next system call is %d, not ReplyRecv" % reg("rax"))
            gdb.execute("disable", to_string=True)
            reply = steps_to_user()
            break
        print("tcg-count: Call (%d words, to another address space): %d instructions" % (words, call))
        print("tcg-count: ReplyRecv (%d words back): %d instructions" % (words, reply))
        print("tcg-count: round trip: %d ring-0 instructions (QEMU TCG, syscall entry)" % (call + reply))
    finally:
        qemu.kill()
        qemu.wait()


try:
    main()
except Exception as e:  # gdb's batch mode would carry on; say what failed and exit 1
    print("tcg-count: %s" % e, file=sys.stderr)
    gdb.execute("kill", to_string=True)
    os._exit(1)
os._exit(0)
