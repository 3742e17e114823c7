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
//! [`Marker::CountVerify`]: l4_abi::port::Marker::CountVerify

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

#[cfg(test)]
mod tests {
    use super::*;

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
