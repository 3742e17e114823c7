//! What the portable kernel knows of the machine a user thread runs on (x86-64): its
//! saved registers ([`UserRegs`], the arch layer's trap frame), its FPU area, the
//! selectors and flags it starts with, and which trap is a write to a present page.
//!
//! This is the arch boundary of the portable kernel: every other module reaches a
//! thread's registers only through the methods here, which name them by what they carry
//! (the call number, its arguments and results as `l4_abi::args` maps them to registers,
//! message words, the program counter), never by register. `tests/layers.rs` checks that
//! no other file of the portable kernel names an x86 register. The binary's `arch/`
//! (assembly entry, GDT, FXSAVE) fills and empties these structures.
//!
//! Invariants: [`UserRegs`] is 16-byte aligned and a multiple of 16 bytes long, with the
//! fields in the order the entry stubs push them; a thread's registers only ever get user
//! selectors and user flags ([`UserRegs::at_entry`]; the kernel never writes `cs`, `ss`
//! or `rflags` elsewhere).

use l4_abi::args;
use l4_abi::syscall::{Error, MSG_REGS};

/// User code and stack segment selectors (the arch layer's GDT).
pub const USER_CS: u64 = 0x23;
pub const USER_SS: u64 = 0x1b;
/// User RFLAGS: interrupts on (so the timer can preempt), reserved bit 1.
pub const USER_RFLAGS: u64 = 0x202;

/// A user thread's registers, in the order of the arch layer's trap frame. 16-byte
/// aligned and 176 bytes long, so that the frame's end is 16-byte aligned as the CPU
/// requires of RSP0 (it would otherwise align the stack down and misplace the frame).
#[repr(C, align(16))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UserRegs {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    pub vector: u64,
    pub error: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

impl UserRegs {
    pub const ZERO: UserRegs = UserRegs {
        r15: 0,
        r14: 0,
        r13: 0,
        r12: 0,
        r11: 0,
        r10: 0,
        r9: 0,
        r8: 0,
        rbp: 0,
        rdi: 0,
        rsi: 0,
        rdx: 0,
        rcx: 0,
        rbx: 0,
        rax: 0,
        vector: 0,
        error: 0,
        rip: 0,
        cs: 0,
        rflags: 0,
        rsp: 0,
        ss: 0,
    };

    /// The system-call argument registers, as `l4_abi::args` names them.
    #[inline(always)]
    pub fn args(&self) -> args::Regs {
        args::Regs {
            rdi: self.rdi,
            rsi: self.rsi,
            words: [self.rdx, self.r10, self.r8, self.r9, self.r12, self.r13, self.r14, self.r15],
        }
    }

    /// A successful call's named results: `rax` 0, each value in its register (`rdi`,
    /// `rsi`, then the words); the other registers keep what they held.
    #[inline(always)]
    pub fn set_values<R: args::Results>(&mut self, v: R) {
        let r = v.into_regs();
        self.rax = 0;
        for i in 0..R::NAMES.len() {
            match i {
                0 => self.rdi = r.rdi,
                1 => self.rsi = r.rsi,
                _ => self.set_word(i - 2, r.words[i - 2]),
            }
        }
    }

    /// Message word `i` (0-7): rdx, r10, r8, r9, r12, r13, r14, r15.
    pub fn word(&self, i: usize) -> u64 {
        match i {
            0 => self.rdx,
            1 => self.r10,
            2 => self.r8,
            3 => self.r9,
            4 => self.r12,
            5 => self.r13,
            6 => self.r14,
            _ => self.r15,
        }
    }

    pub fn set_word(&mut self, i: usize, v: u64) {
        match i {
            0 => self.rdx = v,
            1 => self.r10 = v,
            2 => self.r8 = v,
            3 => self.r9 = v,
            4 => self.r12 = v,
            5 => self.r13 = v,
            6 => self.r14 = v,
            _ => self.r15 = v,
        }
    }

    /// Sets the system-call result.
    pub fn set_result(&mut self, r: Result<(), Error>) {
        self.rax = match r {
            Ok(()) => 0,
            Err(e) => e as u64,
        };
    }
}

/// The FXSAVE area: x87/SSE state of a user thread.
#[repr(C, align(16))]
#[derive(Clone, Copy)]
pub struct FpuState(pub [u8; 512]);

impl FpuState {
    /// The reset state: FCW 0x37f, MXCSR 0x1f80, everything else zero.
    pub const INIT: FpuState = {
        let mut b = [0u8; 512];
        b[0] = 0x7f;
        b[1] = 0x03;
        b[24] = 0x80;
        b[25] = 0x1f;
        FpuState(b)
    };
}

impl UserRegs {
    /// A thread's registers before it first runs: at `pc` with stack `sp`, in user mode
    /// with interrupts on, everything else zero.
    pub const fn at_entry(pc: u64, sp: u64) -> UserRegs {
        UserRegs { rip: pc, rsp: sp, cs: USER_CS, ss: USER_SS, rflags: USER_RFLAGS, ..UserRegs::ZERO }
    }

    /// Where the thread is: the address of its next instruction.
    #[inline(always)]
    pub fn pc(&self) -> u64 {
        self.rip
    }

    /// The number of the system call it made (`rax`).
    #[inline(always)]
    pub fn sysno(&self) -> u64 {
        self.rax
    }

    /// A system call's first two arguments (`l4_abi::args` puts the capability slot or
    /// the first value in the first, the message descriptor of an IPC call in the
    /// second), read alone where decoding all of [`UserRegs::args`] would cost more.
    #[inline(always)]
    pub fn first_args(&self) -> (u64, u64) {
        (self.rdi, self.rsi)
    }

    /// The two values a new thread finds where a call's first two arguments go (its
    /// entry function's two parameters in the System V convention).
    pub fn set_first_args(&mut self, a0: u64, a1: u64) {
        (self.rdi, self.rsi) = (a0, a1);
    }

    /// What a receiver is told of a message: success, the badge and the descriptor of what
    /// it received (the words follow with [`UserRegs::set_word`] or
    /// [`copy_words`]).
    #[inline(always)]
    pub fn set_received(&mut self, badge: u64, info: u64) {
        self.rax = 0;
        self.rdi = badge;
        self.rsi = info;
    }
}

/// Copies message words `0..n` (at most [`MSG_REGS`]) from `from` to `to`. Only those
/// words: the receiver must not see the sender's other registers. No words cost one
/// test, eight cost two, and n between cost n + 2 (the fast path's budget).
#[inline(always)]
pub fn copy_words(from: &UserRegs, to: &mut UserRegs, n: usize) {
    if n == 0 {
        return;
    }
    if n == MSG_REGS {
        (to.rdx, to.r10, to.r8, to.r9, to.r12, to.r13, to.r14, to.r15) =
            (from.rdx, from.r10, from.r8, from.r9, from.r12, from.r13, from.r14, from.r15);
        return;
    }
    to.rdx = from.rdx;
    if n > 1 {
        to.r10 = from.r10;
        if n > 2 {
            to.r8 = from.r8;
            if n > 3 {
                to.r9 = from.r9;
                if n > 4 {
                    to.r12 = from.r12;
                    if n > 5 {
                        to.r13 = from.r13;
                        if n > 6 {
                            to.r14 = from.r14;
                        }
                    }
                }
            }
        }
    }
}

/// The page-fault vector.
pub const PAGE_FAULT: u64 = 14;

/// Whether trap `vector` with error code `error` is a user-mode write to a present page
/// (#PF with P, W/R and U/S set, and not a reserved-bit fault): the only fault
/// copy-on-write can resolve, or find resolved already.
pub fn is_user_write_to_present_page(vector: u64, error: u64) -> bool {
    const PRESENT: u64 = 1 << 0;
    const WRITE: u64 = 1 << 1;
    const USER: u64 = 1 << 2;
    const RESERVED: u64 = 1 << 3;
    vector == PAGE_FAULT && error & (PRESENT | WRITE | USER | RESERVED) == PRESENT | WRITE | USER
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_frame_keeps_the_entry_stubs_alignment() {
        assert_eq!(core::mem::align_of::<UserRegs>(), 16);
        assert_eq!(core::mem::size_of::<UserRegs>() % 16, 0);
    }

    #[test]
    fn copy_words_copies_the_words_sent_and_nothing_else() {
        for n in 0..=MSG_REGS {
            let mut t = [UserRegs::ZERO; 2];
            for i in 0..MSG_REGS {
                t[0].set_word(i, 100 + i as u64);
            }
            t[0].rbx = 7;
            let [from, to] = &mut t;
            copy_words(from, to, n);
            for i in 0..MSG_REGS {
                assert_eq!(t[1].word(i), if i < n { 100 + i as u64 } else { 0 }, "{n} words: word {i}");
            }
            assert_eq!(t[1].rbx, 0);
        }
    }

    #[test]
    fn only_a_user_write_to_a_present_page_may_be_copy_on_write() {
        assert!(is_user_write_to_present_page(14, 0b111));
        assert!(is_user_write_to_present_page(14, 0b10111));
        for e in [0b000, 0b001, 0b011, 0b101, 0b110, 0b1111] {
            assert!(!is_user_write_to_present_page(14, e));
        }
        assert!(!is_user_write_to_present_page(13, 0b111));
    }

    #[test]
    fn a_new_thread_starts_in_user_mode_with_interrupts_on() {
        let r = UserRegs::at_entry(0x1000, 0x2000);
        assert_eq!((r.pc(), r.rsp, r.cs & 3, r.ss & 3, r.rflags & 0x200), (0x1000, 0x2000, 3, 3, 0x200));
    }
}
