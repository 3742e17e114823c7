//! Measures the IPC paths against the echo server and prints a table: round-trip cycles
//! (guest rdtsc) and, where l4vmm can count them, ring-0 instructions per round trip.
#![no_std]
#![no_main]

use l4_rt::ipc::{self, Msg};
use l4_rt::time::{cycles, stats};
use l4_rt::{names, println, sys};

l4_rt::entry!(main);

const WARMUP: usize = 50;
const SAMPLES: usize = 500;
/// Round trips inside one instruction-count window (each is single-stepped by the VMM).
const COUNTED: u64 = 10;

/// Ring-0 instructions per operation: a window around `n` runs of `op`, minus an empty one.
fn ring0_per_op(n: u64, mut op: impl FnMut()) -> Option<u64> {
    sys::count_start();
    let empty = sys::count_stop()?;
    sys::count_start();
    for _ in 0..n {
        op();
    }
    let full = sys::count_stop()?;
    Some(full.saturating_sub(empty) / n)
}

fn row(path: &str, bytes: usize, mut op: impl FnMut()) {
    for _ in 0..WARMUP {
        op();
    }
    let mut s = [0u64; SAMPLES];
    for x in s.iter_mut() {
        let t0 = cycles();
        op();
        *x = cycles() - t0;
    }
    let st = stats(&mut s);
    let insns = ring0_per_op(COUNTED, &mut op);
    match insns {
        Some(i) => {
            println!("ipcbench: {:<22} {:>6} B {:>10} {:>10} {:>10} {:>8}", path, bytes, st.min, st.median, st.p99, i)
        }
        None => println!(
            "ipcbench: {:<22} {:>6} B {:>10} {:>10} {:>10} {:>8}",
            path, bytes, st.min, st.median, st.p99, "n/a"
        ),
    }
}

fn main() -> u64 {
    let Ok(Some(echo)) = names::wait_for("echo", 1000) else {
        println!("ipcbench: no echo server");
        let _ = names::done(1);
        return 1;
    };
    println!("ipcbench: round trips to 'echo' (another address space), cycles from guest rdtsc");
    println!(
        "ipcbench: {:<22} {:>8} {:>10} {:>10} {:>10} {:>8}",
        "path", "message", "min", "median", "p99", "ring-0 insns"
    );
    let mut ok = true;
    let words = [1u64, 2, 3, 4, 5, 6, 7, 8];
    row("call/reply (0 words)", 0, || ok &= ipc::call(echo, &Msg::new(7, &[])).is_ok());
    row("call/reply (8 words)", 64, || ok &= ipc::call(echo, &Msg::new(7, &words)).is_ok_and(|r| r.words() == words));
    row("null syscall (floor)", 0, || {
        let _ = sys::frame_stats();
    });
    let status = if ok { 0 } else { 1 };
    let _ = names::done(status);
    status
}
