//! Measures the IPC paths against the echo server and prints a table: round-trip cycles
//! (guest rdtsc) and, where l4vmm can count them, ring-0 instructions per round trip;
//! then the sizes from which copy-on-write and the shared region beat copying.
#![no_std]
#![no_main]

use l4_rt::ipc::{self, Msg};
use l4_rt::time::{cycles, stats};
use l4_rt::transfer::{checksum, Path, Sender, MEASURED};
use l4_rt::{names, println, sys};

l4_rt::entry!(main);

const STAGING_VA: u64 = 0x0000_0010_0000_0000;
const SHARED_VA: u64 = 0x0000_0020_0000_0000;
const REGION: usize = 1 << 20;
/// Transfer sizes measured for every path.
const SIZES: [usize; 5] = [64, 1024, 4096, 65536, 1 << 20];

/// Ring-0 instructions per operation: a window around `n` runs of `op`, minus an empty one.
fn ring0_per_op(n: u64, op: &mut impl FnMut() -> bool) -> Option<u64> {
    sys::count_start();
    let empty = sys::count_stop()?;
    sys::count_start();
    for _ in 0..n {
        op();
    }
    let full = sys::count_stop()?;
    Some(full.saturating_sub(empty) / n)
}

/// Measures `op`; returns its median cycles. `op` returns whether the answer was right.
fn row(ok: &mut bool, path: &str, bytes: usize, samples: usize, counted: u64, mut op: impl FnMut() -> bool) -> u64 {
    for _ in 0..samples.min(20) {
        *ok &= op();
    }
    let mut s = [0u64; 200];
    let n = samples.min(s.len());
    for x in s[..n].iter_mut() {
        let t0 = cycles();
        *ok &= op();
        *x = cycles() - t0;
    }
    let st = stats(&mut s[..n]);
    let insns = if counted > 0 { ring0_per_op(counted, &mut op) } else { None };
    let istr: &dyn core::fmt::Display = match &insns {
        Some(i) => i,
        None => &"n/a",
    };
    println!("ipcbench: {:<8} {:>8} {:>12} {:>12} {:>12} {:>9}", path, bytes, st.min, st.median, st.p99, istr);
    st.median
}

fn main() -> u64 {
    let Ok(Some(echo)) = names::wait_for("echo", 10) else {
        println!("ipcbench: no echo server");
        let _ = names::done(1);
        return 1;
    };
    let mut ok = true;
    println!("ipcbench: round trips to 'echo' (another address space), cycles from guest rdtsc");
    println!("ipcbench: {:<8} {:>8} {:>12} {:>12} {:>12} {:>9}", "path", "bytes", "min", "median", "p99", "ring0-ins");
    let words = [1u64, 2, 3, 4, 5, 6, 7, 8];
    row(&mut ok, "null", 0, 200, 10, || sys::frame_stats().1 > 0);
    row(&mut ok, "register", 0, 200, 10, || ipc::call(echo, &Msg::new(7, &[])).is_ok());
    row(&mut ok, "register", 64, 200, 10, || ipc::call(echo, &Msg::new(7, &words)).is_ok_and(|r| r.words() == words));
    let long: [u64; 120] = core::array::from_fn(|i| i as u64 * 3);
    row(&mut ok, "ipcbuf", 960, 200, 10, || {
        ipc::call(echo, &Msg::long(7, &long)).is_ok_and(|r| r.len == 120 && r.word(119) == long[119])
    });

    let sender =
        Sender::new(echo, MEASURED).with_staging(STAGING_VA, REGION).and_then(|s| s.with_shared(SHARED_VA, REGION));
    let Ok(mut sender) = sender else {
        println!("ipcbench: cannot set up the staging buffer and the shared region");
        let _ = names::done(1);
        return 1;
    };
    // Fill both regions once with the same bytes; the transfers then send them in place.
    let mut want = [0u64; SIZES.len()];
    for path in [Path::Cow, Path::Shared] {
        if let Some(r) = sender.region(path) {
            for (i, b) in r.iter_mut().enumerate() {
                *b = (i * 7 + i / 4096) as u8;
            }
        }
    }
    let reference = sender.region(Path::Shared).map(|r| &*r).unwrap_or(&[]);
    for (i, &n) in SIZES.iter().enumerate() {
        want[i] = checksum(&reference[..n]);
    }
    let mut medians = [[0u64; SIZES.len()]; 3];
    for (i, &n) in SIZES.iter().enumerate() {
        let samples = if n >= 1 << 20 {
            5
        } else if n >= 65536 {
            20
        } else {
            100
        };
        let counted = if n <= 65536 { 2 } else { 0 };
        let w = want[i];
        let data = &reference[..n];
        // The copy path moves the bytes themselves through message words, 952 bytes a
        // message: its cost is linear in the size, so above 4 KiB it is extrapolated from
        // the 4 KiB row instead of spending seconds of emulated ring 0 on it.
        medians[0][i] = if n <= 4096 {
            row(&mut ok, "copy", n, samples, counted, || sender_send(&mut sender, Path::Copy, data) == Some(w))
        } else {
            medians[0][i - 1] * (n / SIZES[i - 1]) as u64
        };
        medians[1][i] = row(&mut ok, "cow", n, samples, counted, || sender.send_in_place(Path::Cow, n).ok() == Some(w));
        medians[2][i] =
            row(&mut ok, "shared", n, samples, counted, || sender.send_in_place(Path::Shared, n).ok() == Some(w));
    }
    let first_win =
        |path: usize| SIZES.iter().enumerate().find(|&(i, _)| medians[path][i] < medians[0][i]).map(|(_, &n)| n);
    match first_win(1) {
        Some(n) => println!("ipcbench: copy-on-write beats copying from {} bytes", n),
        None => println!("ipcbench: copy-on-write never beats copying up to {} bytes", SIZES[SIZES.len() - 1]),
    }
    match first_win(2) {
        Some(n) => println!("ipcbench: the shared region beats copying from {} bytes", n),
        None => println!("ipcbench: the shared region never beats copying up to {} bytes", SIZES[SIZES.len() - 1]),
    }
    println!("ipcbench: (copy above 4096 bytes extrapolated linearly for the crossovers)");
    ring_rows(&mut ok);
    println!("ipcbench: every answer {}", if ok { "checked out" } else { "WAS WRONG" });
    let status = if ok { 0 } else { 1 };
    let _ = names::done(status);
    status
}

fn sender_send(s: &mut Sender, path: Path, data: &[u8]) -> Option<u64> {
    s.send_by(path, data).ok()
}

/// The ring path against `ringsrv`: batches of 1, 16 and 256 echo requests, cycles per
/// request (batch time / batch), kernel-entry mode; polling mode only when the server
/// runs on another vCPU (one polling round trip under 1 ms tells).
fn ring_rows(ok: &mut bool) {
    use l4_abi::ring::{op, Cqe, Sqe};
    use l4_rt::ringclient::Client;
    let Ok(Some(srv)) = names::wait_for("ring", 10) else {
        println!("ipcbench: no ring server: ring rows skipped");
        return;
    };
    let mut sqes = [Sqe::default(); 256];
    for (i, s) in sqes.iter_mut().enumerate() {
        *s = Sqe { opcode: op::ECHO, user_data: i as u64, inline: [i as u64, 0, 0, 0, 0], ..Sqe::default() };
    }
    let mut cqes = [Cqe::default(); 256];
    for polling in [false, true] {
        let Ok(c) = Client::connect(srv, 0x0000_0080_0000_0000, 256, 1, polling, 100_000, 0) else {
            println!("ipcbench: cannot connect a ring");
            *ok = false;
            return;
        };
        if polling {
            let t0 = cycles();
            let _ = c.batch(&sqes[..1], &mut cqes[..1]);
            if cycles() - t0 > 2_000_000 {
                println!(
                    "ipcbench: ring-poll rows skipped: pin ringsrv to another vCPU (--vcpus 2 --cmdline pin=ringsrv:1)"
                );
                c.close();
                return;
            }
        }
        let path = if polling { "ring-poll" } else { "ring" };
        for batch in [1usize, 16, 256] {
            let samples = if batch == 256 { 10 } else { 50 };
            let mut s = [0u64; 50];
            for x in s[..samples].iter_mut() {
                let t0 = cycles();
                *ok &= c.batch(&sqes[..batch], &mut cqes[..batch]).is_ok()
                    && cqes[batch - 1].value[0] == (batch - 1) as u64;
                *x = (cycles() - t0) / batch as u64;
            }
            let st = stats(&mut s[..samples]);
            println!(
                "ipcbench: {:<8} {:>8} {:>12} {:>12} {:>12} {:>9}",
                path, batch, st.min, st.median, st.p99, "batch"
            );
        }
        c.close();
    }
}
