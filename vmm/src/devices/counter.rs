//! The ring-0 instruction counter's results, and whether they can be believed.
//!
//! The vCPU threads count by single-stepping (see `vcpu::count_start`). That is exact only
//! where every ring-0 instruction gives one debug exit: on PVM hosts (ring 0 runs in KVM's
//! emulator, which steps each instruction), but not on hardware KVM, where single-stepping
//! rides on RFLAGS.TF and the `syscall` instruction and interrupt gates clear TF, so the
//! kernel's entries from user mode go uncounted. So the kernel calibrates at boot: two
//! windows, each around a return to user mode and a kernel entry, that differ by exactly
//! [`CALIBRATION_INSTRUCTIONS`] ring-0 instructions, then [`Marker::CountVerify`]. Counts are
//! reported only after a calibration that came out exact; before it, or after one that did
//! not, a read gives [`COUNT_UNSUPPORTED`] ("n/a"), never a wrong number.
//!
//! One quirk of PVM's emulator is corrected rather than withheld: its single step over
//! FXSAVE or FXRSTOR runs the next instruction too, one debug exit for two instructions
//! ([`Steps`] counts the second; the calibration windows contain both instructions, so a
//! host where the correction were wrong would read n/a).
//!
//! [`Marker::CountVerify`]: l4_abi::port::Marker::CountVerify

use std::collections::HashMap;
use std::sync::Mutex;

use l4_abi::port::{CALIBRATION_INSTRUCTIONS, COUNT_UNSUPPORTED};

/// Whether counts are exact on this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exactness {
    /// The guest has not calibrated (yet): counts are withheld.
    Unverified,
    /// The calibration counted exactly [`CALIBRATION_INSTRUCTIONS`] more in its second window.
    Exact,
    /// It counted this many instead (`None`: no count at all, e.g. gdb owns single-stepping).
    NotExact(Option<u64>),
}

#[derive(Debug)]
struct State {
    exactness: Exactness,
    /// The last two finished counts, newest last.
    prev: Option<u64>,
    last: Option<u64>,
}

/// The counter's finished counts and its verdict.
#[derive(Debug)]
pub struct Counter(Mutex<State>);

impl Default for Counter {
    fn default() -> Self {
        Counter(Mutex::new(State { exactness: Exactness::Unverified, prev: None, last: None }))
    }
}

impl Counter {
    /// A window ended with `n` ring-0 instructions (`None`: none could be counted).
    pub fn record(&self, n: Option<u64>) {
        if let Ok(mut s) = self.0.lock() {
            s.prev = s.last;
            s.last = n;
        }
    }

    /// The guest says the last two windows were its calibration: judge them.
    pub fn verify(&self) -> Exactness {
        let Ok(mut s) = self.0.lock() else { return Exactness::NotExact(None) };
        s.exactness = match (s.prev, s.last) {
            (Some(a), Some(b)) if b.checked_sub(a) == Some(CALIBRATION_INSTRUCTIONS) => Exactness::Exact,
            (Some(a), Some(b)) => Exactness::NotExact(Some(b.wrapping_sub(a))),
            _ => Exactness::NotExact(None),
        };
        s.exactness
    }

    /// What a guest read of the marker port returns: the last count if counts are exact,
    /// else [`COUNT_UNSUPPORTED`]. Real counts saturate one below it.
    pub fn read(&self) -> u32 {
        let Ok(s) = self.0.lock() else { return COUNT_UNSUPPORTED };
        match (s.exactness, s.last) {
            (Exactness::Exact, Some(n)) => n.min(u64::from(COUNT_UNSUPPORTED - 1)) as u32,
            _ => COUNT_UNSUPPORTED,
        }
    }
}

/// The most instructions one step is taken to have run along with an FXSAVE/FXRSTOR (a
/// bound: an endless run of them would be a bug, not code).
const MAX_RUN_ALONG: usize = 8;

/// The ring-0 instructions of one counting window, from its single-step exits: one per
/// exit that stops in ring 0, plus the instruction a step over FXSAVE/FXRSTOR ran along
/// with it (the exit then stops past the instruction after it).
#[derive(Debug, Default)]
pub struct Steps {
    n: u64,
    /// Where the last exit stopped in ring 0: the next instruction to run.
    prev: Option<u64>,
    /// For each address stepped from: the length of the FXSAVE/FXRSTOR there, if it is one
    /// (kernel text does not change while the guest runs).
    fx: HashMap<u64, Option<u64>>,
}

impl Steps {
    /// A step exit stopped at `rip`, in ring 0 or not; `code_at` reads the instruction
    /// bytes at an address (up to 15; fewer if unreadable). Returns the addresses of the
    /// instructions counted without a stop of their own (for `L4VMM_COUNT_TRACE`, which
    /// lists every counted instruction): the one after an FXSAVE/FXRSTOR the step ran
    /// along with it, and, if that one is an FXSAVE/FXRSTOR too, the one after it (an
    /// `fxsave; fxrstor` pair and the instruction after it take one stop).
    pub fn step(&mut self, rip: u64, ring0: bool, mut code_at: impl FnMut(u64) -> Vec<u8>) -> Vec<u64> {
        let mut extra = Vec::new();
        if let Some(mut at) = self.prev.take() {
            while let Some(len) = *self.fx.entry(at).or_insert_with(|| fx_length(&code_at(at))) {
                let next = at.wrapping_add(len);
                if rip == next || extra.len() == MAX_RUN_ALONG {
                    break;
                }
                self.n += 1;
                extra.push(next);
                at = next;
            }
        }
        if ring0 {
            self.n += 1;
            self.prev = Some(rip);
        }
        extra
    }

    /// The instructions counted so far.
    pub fn count(&self) -> u64 {
        self.n
    }
}

/// The length of the instruction at the start of `code` if it is FXSAVE or FXRSTOR
/// (`[REX] 0F AE /0` or `/1` with a memory operand, as the kernel writes them).
pub fn fx_length(code: &[u8]) -> Option<u64> {
    let rex = usize::from(code.first().is_some_and(|b| b & 0xf0 == 0x40));
    let (&op0, &op1, &modrm) = (code.get(rex)?, code.get(rex + 1)?, code.get(rex + 2)?);
    let (md, reg, rm) = (modrm >> 6, (modrm >> 3) & 7, modrm & 7);
    if op0 != 0x0f || op1 != 0xae || reg > 1 || md == 3 {
        return None;
    }
    let sib = rm == 4;
    let sib_base5 = sib && code.get(rex + 3).is_some_and(|s| s & 7 == 5);
    let disp = match md {
        0 if rm == 5 || sib_base5 => 4,
        1 => 1,
        2 => 4,
        _ => 0,
    };
    Some((rex + 3 + usize::from(sib) + disp) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fx_length_decodes_the_forms_the_kernel_uses() {
        assert_eq!(fx_length(&[0x48, 0x0f, 0xae, 0x01]), Some(4)); // fxsave64 (%rcx)
        assert_eq!(fx_length(&[0x48, 0x0f, 0xae, 0x09]), Some(4)); // fxrstor64 (%rcx)
        assert_eq!(fx_length(&[0x0f, 0xae, 0x00]), Some(3)); // fxsave (%rax)
        assert_eq!(fx_length(&[0x48, 0x0f, 0xae, 0x05, 1, 2, 3, 4]), Some(8)); // rip-relative
        assert_eq!(fx_length(&[0x48, 0x0f, 0xae, 0x41, 0x10]), Some(5)); // disp8
        assert_eq!(fx_length(&[0x48, 0x0f, 0xae, 0x81, 0, 1, 0, 0]), Some(8)); // disp32
        assert_eq!(fx_length(&[0x48, 0x0f, 0xae, 0x04, 0x24]), Some(5)); // (%rsp): SIB
        assert_eq!(fx_length(&[0x0f, 0xae, 0x0c, 0x25, 0, 0x10, 0, 0]), Some(8)); // SIB, no base
        for other in [
            &[0x0f, 0xae, 0xf0][..],   // mfence (mod 3)
            &[0x0f, 0xae, 0x10],       // ldmxcsr (/2)
            &[0x48, 0x0f, 0xae, 0x21], // xsave (/4)
            &[0x0f, 0x01, 0xf8],       // swapgs
            &[0x48, 0x0f],             // cut short
            &[],
        ] {
            assert_eq!(fx_length(other), None, "{other:x?}");
        }
    }

    #[test]
    fn a_step_over_fx_that_ran_two_instructions_counts_both() {
        // 0x10: fxsave64 (%rcx), 4 bytes; 0x14: lea, 7 bytes; 0x1b: next.
        let code = |a: u64| if a == 0x10 { vec![0x48, 0x0f, 0xae, 0x01] } else { vec![0x90] };
        let mut s = Steps::default();
        let extra: Vec<Vec<u64>> = [0x0f, 0x10, 0x1b, 0x1c].into_iter().map(|rip| s.step(rip, true, code)).collect();
        assert_eq!(extra, [vec![], vec![], vec![0x14], vec![]], "the lea at 0x14 ran without a stop");
        assert_eq!(s.count(), 5, "PVM: the step from 0x10 stopped at 0x1b, past the lea");
        let mut t = Steps::default();
        for rip in [0x0f, 0x10, 0x14, 0x1b] {
            t.step(rip, true, code);
        }
        assert_eq!(t.count(), 4, "one exit per instruction: nothing to add");
        let mut u = Steps::default();
        u.step(0x10, true, code);
        u.step(0x400000, false, code); // back in user mode after it: not a ring-0 step
        u.step(0x10, true, code);
        assert_eq!(u.count(), 3, "the step from 0x10 ran the fxsave and one more");
        // 0x20: fxsave64 (%rcx), 0x24: fxrstor64 (%rcx), 0x28: add, 4 bytes; 0x2c: next.
        let pair = |a: u64| match a {
            0x20 => vec![0x48, 0x0f, 0xae, 0x01],
            0x24 => vec![0x48, 0x0f, 0xae, 0x09],
            _ => vec![0x48, 0x83, 0xc1, 0x01],
        };
        let mut v = Steps::default();
        let extra: Vec<Vec<u64>> = [0x20, 0x2c].into_iter().map(|rip| v.step(rip, true, pair)).collect();
        assert_eq!(extra, [vec![], vec![0x24, 0x28]], "PVM: one stop for fxsave, fxrstor and the add");
        assert_eq!(v.count(), 4);
    }

    #[test]
    fn counts_are_withheld_until_a_calibration_comes_out_exact() {
        let c = Counter::default();
        c.record(Some(500));
        assert_eq!(c.read(), COUNT_UNSUPPORTED, "unverified");
        c.record(Some(300));
        c.record(Some(300 + CALIBRATION_INSTRUCTIONS));
        assert_eq!(c.verify(), Exactness::Exact);
        c.record(Some(423));
        assert_eq!(c.read(), 423);
        c.record(None);
        assert_eq!(c.read(), COUNT_UNSUPPORTED, "a window that counted nothing");
    }

    #[test]
    fn a_calibration_that_misses_instructions_withholds_every_count() {
        // Hardware KVM: the kernel entry clears TF, both windows count the same few.
        let c = Counter::default();
        c.record(Some(21));
        c.record(Some(21));
        assert_eq!(c.verify(), Exactness::NotExact(Some(0)));
        c.record(Some(5));
        assert_eq!(c.read(), COUNT_UNSUPPORTED);
        let d = Counter::default();
        d.record(None);
        d.record(None);
        assert_eq!(d.verify(), Exactness::NotExact(None), "gdb attached: nothing counted");
        let e = Counter::default();
        e.record(Some(300));
        e.record(Some(300 + CALIBRATION_INSTRUCTIONS + 1));
        assert_eq!(e.verify(), Exactness::NotExact(Some(CALIBRATION_INSTRUCTIONS + 1)));
    }
}
