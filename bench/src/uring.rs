//! The io_uring baseline: NOP requests submitted in batches with one `io_uring_enter` per
//! batch (submit and wait for all), the host analogue of the guest ring's kernel-entry mode.
//! Hosts may forbid io_uring (sysctl kernel.io_uring_disabled, container seccomp); then the
//! baseline is skipped and results.json says why.

use std::time::Instant;

use io_uring::{opcode, IoUring};

use crate::Scenario;

/// The batch sizes the guest's ring rows use.
pub const BATCHES: [u32; 5] = [1, 4, 16, 64, 256];

/// One scenario per batch size, or why io_uring cannot be used here.
pub fn run(quick: bool) -> Result<Vec<Scenario>, String> {
    let mut ring = IoUring::new(256).map_err(|e| format!("io_uring_setup failed: {e}"))?;
    let samples = if quick { 200 } else { 2000 };
    let mut out = Vec::new();
    for batch in BATCHES {
        let mut round = || -> Result<(), String> {
            for i in 0..batch {
                let nop = opcode::Nop::new().build().user_data(u64::from(i));
                // SAFETY: a NOP references no buffers, so nothing must outlive the request.
                unsafe { ring.submission().push(&nop) }.map_err(|_| "io_uring submission queue full".to_string())?;
            }
            ring.submit_and_wait(batch as usize).map_err(|e| format!("io_uring_enter failed: {e}"))?;
            let done = ring.completion().filter(|c| c.result() == 0).count();
            if done != batch as usize {
                return Err(format!("io_uring: {done} of {batch} NOPs completed"));
            }
            Ok(())
        };
        let per = (256 / batch).max(1) as usize;
        for _ in 0..per * 10 {
            round()?;
        }
        let mut ns = Vec::with_capacity(samples);
        for _ in 0..samples {
            let t = Instant::now();
            for _ in 0..per {
                round()?;
            }
            ns.push(t.elapsed().as_nanos() as f64 / (per as f64 * f64::from(batch)));
        }
        let mut s = crate::linux::scenario("linux-io_uring", ns);
        s.name = format!("linux-io_uring-nop-{batch}");
        s.batch = u64::from(batch);
        s.size_bytes = 0;
        out.push(s);
    }
    Ok(out)
}
