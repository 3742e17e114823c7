//! Cycle counting in user mode (`rdtsc` runs natively in ring 3, even on PVM hosts).

/// The time-stamp counter, ordered against surrounding code with `lfence`.
#[inline(always)]
pub fn cycles() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: lfence and rdtsc only read the time-stamp counter.
    unsafe { core::arch::asm!("lfence", "rdtsc", "lfence", out("eax") lo, out("edx") hi, options(nomem, nostack)) };
    (u64::from(hi) << 32) | u64::from(lo)
}

/// Summary of a set of samples (sorted in place).
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    pub min: u64,
    pub median: u64,
    pub p99: u64,
}

pub fn stats(samples: &mut [u64]) -> Stats {
    if samples.is_empty() {
        return Stats::default();
    }
    samples.sort_unstable();
    let n = samples.len();
    Stats { min: samples[0], median: samples[n / 2], p99: samples[(n * 99 / 100).min(n - 1)] }
}
