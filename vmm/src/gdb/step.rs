//! Keeping gdb's single steps invisible to the guest.
//!
//! KVM single-steps a vCPU by setting RFLAGS.TF and hides the flag from the guest's view
//! of its registers. Two instructions let the guest see it anyway: an exception or
//! interrupt delivered during the step (a faulting instruction, `sti; hlt` woken by the
//! timer) pushes the live RFLAGS, TF set, into the handler's stack frame; and `syscall`
//! copies them into R11. Left there, the flag comes back with the handler's `iretq` or
//! the kernel's `sysretq` once gdb has stopped stepping: the guest then takes a #DB that
//! nobody asked for (the kernel's fault report, vector 1). So after every step the stub
//! finds such a copy and clears TF in it, unless the guest had set TF itself.
//!
//! Invariant: only a flag that gdb's step put there is cleared; a word is taken for a
//! pushed frame only if it is one exactly: saved CS and SS equal the selectors before the
//! step, the saved RSP equals RSP before the step, and the saved RFLAGS has bit 1 set,
//! TF set and nothing above bit 21.

/// RFLAGS.TF.
pub const TF: u64 = 1 << 8;

/// The vCPU's state when gdb's step began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepFrom {
    pub rip: u64,
    pub rsp: u64,
    pub rflags: u64,
    pub cs: u16,
    pub ss: u16,
}

/// Where, among the words at the stopped vCPU's stack pointer, an interrupt frame pushed
/// during the step holds RFLAGS: the index of that word. The frame may lie a few words
/// up, under an error code or what the handler pushed before the step trap was taken.
pub fn pushed_rflags(from: &StepFrom, stack: &[u64]) -> Option<usize> {
    if from.rflags & TF != 0 {
        return None; // the guest's own TF: not ours to clear
    }
    stack
        .windows(5)
        .position(|w| {
            let (cs, rflags, rsp, ss) = (w[1], w[2], w[3], w[4]);
            cs == u64::from(from.cs)
                && ss == u64::from(from.ss)
                && rsp == from.rsp
                && rflags & (TF | 0x2) == (TF | 0x2)
                && rflags >> 22 == 0
        })
        .map(|i| i + 2)
}

/// Whether the stepped instruction was `syscall` that copied gdb's TF into R11.
pub fn syscall_leak(from: &StepFrom, insn: &[u8], r11: u64) -> bool {
    from.rflags & TF == 0 && insn.starts_with(&[0x0f, 0x05]) && r11 & TF != 0
}

/// How many stack words [`pushed_rflags`] looks at.
pub const STACK_WORDS: usize = 12;

#[cfg(test)]
mod tests {
    use super::*;

    const FROM: StepFrom =
        StepFrom { rip: 0xffff_ffff_8010_fc15, rsp: 0xffff_ffff_8013_4e40, rflags: 0x46, cs: 8, ss: 0x10 };

    #[test]
    fn finds_the_frame_a_fault_pushed_under_one_handler_push() {
        // isr_6 ran `pushq $0` before the step trap: [0, rip, cs, rflags|TF, rsp, ss].
        let stack = [0, FROM.rip, 8, 0x146, FROM.rsp, 0x10, 7, 7];
        assert_eq!(pushed_rflags(&FROM, &stack), Some(3));
    }

    #[test]
    fn leaves_the_guest_s_own_tf_and_look_alike_words_alone() {
        let stack = [FROM.rip, 8, 0x146, FROM.rsp, 0x10];
        let own = StepFrom { rflags: 0x146, ..FROM };
        assert_eq!(pushed_rflags(&own, &stack), None, "the guest set TF itself");
        assert_eq!(pushed_rflags(&FROM, &[FROM.rip, 8, 0x146, FROM.rsp - 8, 0x10]), None, "another rsp");
        assert_eq!(pushed_rflags(&FROM, &[FROM.rip, 0x23, 0x146, FROM.rsp, 0x10]), None, "another cs");
        assert_eq!(pushed_rflags(&FROM, &[FROM.rip, 8, 0x46, FROM.rsp, 0x10]), None, "no TF: nothing to do");
        assert_eq!(pushed_rflags(&FROM, &[FROM.rip, 8, 0x146]), None, "too short for a frame");
    }

    #[test]
    fn syscall_copies_tf_into_r11() {
        assert!(syscall_leak(&FROM, &[0x0f, 0x05], 0x346));
        assert!(!syscall_leak(&FROM, &[0x0f, 0x05], 0x246));
        assert!(!syscall_leak(&FROM, &[0x0f, 0x0b], 0x346), "ud2 is not syscall");
        assert!(!syscall_leak(&StepFrom { rflags: 0x146, ..FROM }, &[0x0f, 0x05], 0x346));
    }
}
