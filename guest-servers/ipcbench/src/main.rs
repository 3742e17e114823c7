//! Measures the IPC paths and prints one table row per scenario: round-trip cycles (guest
//! rdtsc) and, where l4vmm can count them, ring-0 instructions per round trip.
//!
//! Rows: the floor (a null kernel entry, and one that also switches address spaces and
//! back); register round trips to a thread in this address space, to `echo` in another,
//! and to `echo` from a thread on another vCPU; IPC-buffer messages by size; copy,
//! copy-on-write and shared-region transfers by size, with the crossovers; the ring path
//! against `ringsrv`. The start argument (`arg=ipcbench:1` on the kernel command line)
//! selects the full run: transfers up to 64 MiB and more samples; the default stops at
//! 1 MiB so that the demo stays short.
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use l4_abi::ring::{op, Cqe, Sqe};
use l4_rt::ringclient::Client;

use l4_rt::ipc::{self, Msg};
use l4_rt::time::{cycles, stats};
use l4_rt::transfer::{checksum, Path, Sender, MEASURED};
use l4_rt::{names, println, sys, thread};

l4_rt::entry!(main);

const STAGING_VA: u64 = 0x0000_0010_0000_0000;
const SHARED_VA: u64 = 0x0000_0020_0000_0000;
const STACKS_VA: u64 = 0x0000_0050_0000_0000;
const STACK_PAGES: u64 = 32;
/// Transfer sizes: the default run and the full one (`arg=ipcbench:1`).
const QUICK_SIZES: &[usize] = &[64, 1024, 4096, 65536, 1 << 20];
const FULL_SIZES: &[usize] = &[64, 1024, 4096, 16 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20, 16 << 20, 64 << 20];
const MAX_SAMPLES: usize = 1000;

/// How many times a row runs its operation.
#[derive(Clone, Copy)]
struct Plan {
    /// Unmeasured runs first (caches, page tables, lazily built state).
    warm: usize,
    /// Measured runs (the table's min, median and p99 are over these).
    samples: usize,
    /// Runs inside l4vmm's ring-0 instruction counter (0: not counted).
    counted: u64,
}

/// The machine capability that opens the instruction-count window (root gives it to the
/// benchmark; `NO_TRACE`: none, so no counts).
static TRACE: AtomicU8 = AtomicU8::new(NO_TRACE);
const NO_TRACE: u8 = u8::MAX;

/// Ring-0 instructions per operation: a window around `n` runs of `op`, minus an empty one.
fn ring0_per_op(n: u64, op: &mut impl FnMut() -> bool) -> Option<u64> {
    let m = TRACE.load(Ordering::Relaxed);
    if m == NO_TRACE || !sys::count_start(m) {
        return None;
    }
    let empty = sys::count_stop(m)?;
    if !sys::count_start(m) {
        return None;
    }
    for _ in 0..n {
        op();
    }
    let full = sys::count_stop(m)?;
    Some(full.saturating_sub(empty) / n)
}

fn header() {
    println!(
        "ipcbench: {:<15} {:>9} {:>12} {:>12} {:>12} {:>9} {:>7}",
        "path", "bytes", "min", "median", "p99", "ring0-ins", "samples"
    );
}

/// Measures `op` per `plan`; prints its row and returns its median cycles. `op` returns
/// whether the answer was right.
fn row(ok: &mut bool, path: &str, bytes: usize, plan: Plan, mut op: impl FnMut() -> bool) -> u64 {
    for _ in 0..plan.warm {
        *ok &= op();
    }
    let mut s = [0u64; MAX_SAMPLES];
    let n = plan.samples.clamp(1, MAX_SAMPLES);
    for x in s[..n].iter_mut() {
        let t0 = cycles();
        *ok &= op();
        *x = cycles() - t0;
    }
    let st = stats(&mut s[..n]);
    let insns = if plan.counted > 0 { ring0_per_op(plan.counted, &mut op) } else { None };
    let istr: &dyn core::fmt::Display = match &insns {
        Some(i) => i,
        None => &"n/a",
    };
    println!(
        "ipcbench: {:<15} {:>9} {:>12} {:>12} {:>12} {:>9} {:>7}",
        path, bytes, st.min, st.median, st.p99, istr, n
    );
    st.median
}

const WORDS: [u64; 8] = [1, 2, 3, 4, 5, 6, 7, 8];

/// The register rows against endpoint `ep` under the name `path`.
fn register_rows(ok: &mut bool, ep: u8, path: &str, plan: Plan) {
    row(ok, path, 0, plan, || ipc::call(ep, &Msg::new(7, &[])).is_ok());
    row(ok, path, 64, plan, || ipc::call(ep, &Msg::new(7, &WORDS)).is_ok_and(|r| r.words() == WORDS));
}

/// The server thread of the same-address-space rows: echoes every message on `ep`.
fn same_space_server(ep: u64) -> u64 {
    let Ok(mut got) = ipc::recv(ep as u8) else { return 1 };
    loop {
        match ipc::reply_recv(ep as u8, &got.msg) {
            Ok(next) => got = next,
            Err(_) => return 1,
        }
    }
}

static REMOTE_OK: AtomicBool = AtomicBool::new(true);
static FULL: AtomicBool = AtomicBool::new(false);

/// The client thread of the cross-vCPU rows (`arg`: echo's slot, the done endpoint's slot
/// << 8): calls `echo` on the first vCPU from the second, then reports on `done`.
fn cross_vcpu_client(arg: u64) -> u64 {
    let (echo, done) = (arg as u8, (arg >> 8) as u8);
    let mut ok = true;
    // l4vmm counts ring-0 instructions on one vCPU only: no count for these rows.
    let samples = if FULL.load(Ordering::Relaxed) { MAX_SAMPLES } else { 200 };
    register_rows(&mut ok, echo, "register@vcpu", Plan { warm: 20, samples, counted: 0 });
    REMOTE_OK.store(ok, Ordering::Relaxed);
    let _ = ipc::send(done, &Msg::new(0, &[]));
    0
}

fn main() -> u64 {
    let full = l4_rt::start_arg() == 1;
    FULL.store(full, Ordering::Relaxed);
    let Ok(Some(echo)) = names::wait_for("echo", 10) else {
        println!("ipcbench: no echo server");
        let _ = names::done(1);
        return 1;
    };
    match names::trace() {
        Ok(m) => TRACE.store(m, Ordering::Relaxed),
        Err(e) => println!("ipcbench: no ring-0 instruction counts: root gives no count window ({})", e.name()),
    }
    let mut ok = true;
    println!(
        "ipcbench: {} run; cycles per round trip from guest rdtsc; @same: a thread in this address space, \
         @vcpu: from another vCPU, otherwise to 'echo' in another address space",
        if full { "full" } else { "quick" }
    );
    header();
    let small = Plan { warm: 20, samples: if full { MAX_SAMPLES } else { 200 }, counted: 10 };
    row(&mut ok, "null", 0, small, || sys::null(false).is_ok());
    row(&mut ok, "null+as", 0, small, || sys::null(true).is_ok());
    match same_space(&mut ok, small) {
        Ok(()) => {}
        Err(e) => {
            println!("ipcbench: same-address-space rows skipped: {}", e.name());
            ok = false;
        }
    }
    register_rows(&mut ok, echo, "register", small);
    cross_vcpu(&mut ok, echo);
    for words in [16usize, 32, 64, 120] {
        let long: [u64; 120] = core::array::from_fn(|i| i as u64 * 3);
        row(&mut ok, "ipcbuf", words * 8, small, || {
            ipc::call(echo, &Msg::long(7, &long[..words]))
                .is_ok_and(|r| r.len == words && r.word(words - 1) == long[words - 1])
        });
    }
    // The ring rows before the large transfers: after 64 MiB transfers this host ran
    // polling rows (and the spinning Linux baseline) several times slower for a while.
    ring_rows(&mut ok, full);
    transfers(&mut ok, echo, full);
    println!("ipcbench: every answer {}", if ok { "checked out" } else { "WAS WRONG" });
    let status = if ok { 0 } else { 1 };
    let _ = names::done(status);
    status
}

/// Register round trips to a second thread of this task (no address-space switch).
fn same_space(ok: &mut bool, plan: Plan) -> Result<(), l4_rt::abi::syscall::Error> {
    let ep = sys::endpoint_create()?;
    thread::spawn(STACKS_VA, STACK_PAGES, 0, same_space_server, ep as u64)?;
    register_rows(ok, ep, "register@same", plan);
    Ok(())
}

/// Register round trips to `echo` from a thread on the second vCPU (skipped with one).
fn cross_vcpu(ok: &mut bool, echo: u8) {
    match on_cpu(1, STACKS_VA + 0x10_0000, cross_vcpu_client, echo as u64) {
        Ok(good) => *ok &= good,
        Err(l4_rt::abi::syscall::Error::BadArgument) => {
            println!("ipcbench: cross-vCPU rows skipped: one vCPU (run l4vmm with --vcpus 2)");
        }
        Err(e) => {
            println!("ipcbench: cross-vCPU rows skipped: {}", e.name());
            *ok = false;
        }
    }
}

/// Runs `f(arg | done << 8)` in a new thread on `cpu` (stack at `stack`) and waits until
/// it reports on `done`, a fresh endpoint: whether its rows checked out (`REMOTE_OK`).
fn on_cpu(cpu: u64, stack: u64, f: fn(u64) -> u64, arg: u64) -> Result<bool, l4_rt::abi::syscall::Error> {
    let done = sys::endpoint_create()?;
    thread::spawn(stack, STACK_PAGES, cpu, f, arg | (done as u64) << 8)?;
    Ok(ipc::recv(done).is_ok() && REMOTE_OK.load(Ordering::Relaxed))
}

/// How often a transfer of `n` bytes by `path` runs: fewer runs as sizes grow (a copy of
/// 64 MiB is ~70,000 round trips), ring-0 instructions counted up to 64 KiB.
fn transfer_plan(path: Path, n: usize, full: bool) -> Plan {
    let counted = if n <= 65536 { 2 } else { 0 };
    let (warm, samples) = match n {
        0..=4096 => (20, if full { 200 } else { 100 }),
        4097..=65536 => (5, if full { 50 } else { 20 }),
        65537..=0x10_0000 => (2, if full { 10 } else { 5 }),
        0x10_0001..=0x40_0000 => (1, 3),
        _ if path == Path::Copy => (0, 1),
        _ => (1, 3),
    };
    Plan { warm, samples, counted }
}

/// Copy, copy-on-write and shared-region transfers of every size to `echo`, which
/// answers with a checksum of what it received; then the crossover sizes.
fn transfers(ok: &mut bool, echo: u8, full: bool) {
    let sizes = if full { FULL_SIZES } else { QUICK_SIZES };
    let region = sizes[sizes.len() - 1];
    let sender =
        Sender::new(echo, MEASURED).with_staging(STAGING_VA, region).and_then(|s| s.with_shared(SHARED_VA, region));
    let Ok(mut sender) = sender else {
        println!("ipcbench: cannot set up the staging buffer and the shared region");
        *ok = false;
        return;
    };
    // Fill both regions once with the same bytes; the transfers then send them in place.
    for path in [Path::Cow, Path::Shared] {
        if let Some(r) = sender.region(path) {
            for (i, b) in r.iter_mut().enumerate() {
                *b = (i * 7 + i / 4096) as u8;
            }
        }
    }
    // Medians by path (copy, cow, shared) and size; `None`: not measured.
    let mut medians = [[None::<u64>; FULL_SIZES.len()]; 3];
    let reference: &[u8] = sender.region(Path::Shared).map(|r| &*r).unwrap_or(&[]);
    for (i, &n) in sizes.iter().enumerate() {
        let want = checksum(&reference[..n]);
        // The copy path sends the same bytes from the shared region (echo only reads it).
        // A copy moves 952 bytes per round trip: above 64 KiB only the full run has time.
        let data = &reference[..n];
        if full || n <= 65536 {
            medians[0][i] = Some(row(ok, "copy", n, transfer_plan(Path::Copy, n, full), || {
                sender.send_by(Path::Copy, data).ok() == Some(want)
            }));
        }
        medians[1][i] = Some(row(ok, "cow", n, transfer_plan(Path::Cow, n, full), || {
            sender.send_in_place(Path::Cow, n).ok() == Some(want)
        }));
        medians[2][i] = Some(row(ok, "shared", n, transfer_plan(Path::Shared, n, full), || {
            sender.send_in_place(Path::Shared, n).ok() == Some(want)
        }));
    }
    // The first size where `path` beats copying, among the sizes where copying was measured.
    let first_win = |path: usize| {
        (0..sizes.len()).find_map(|i| match (medians[path][i], medians[0][i]) {
            (Some(m), Some(copy)) if m < copy => Some(sizes[i]),
            _ => None,
        })
    };
    let last = (0..sizes.len()).rev().find(|&i| medians[0][i].is_some()).map_or(0, |i| sizes[i]);
    match first_win(1) {
        Some(n) => println!("ipcbench: copy-on-write beats copying from {} bytes", n),
        None => println!("ipcbench: copy-on-write never beats copying up to {} bytes", last),
    }
    match first_win(2) {
        Some(n) => println!("ipcbench: the shared region beats copying from {} bytes", n),
        None => println!("ipcbench: the shared region never beats copying up to {} bytes", last),
    }
}

/// The ring path against `ringsrv`: batches of 1 to 256 echo requests, cycles per
/// request (batch time / batch), kernel-entry mode, then polling mode when the server
/// runs on another vCPU (the server says where it runs when the ring is set up). With the
/// server on another vCPU, the kernel-entry rows are measured once more from a thread on
/// the server's vCPU (`ring@srv`): the placement of the synchronous round trip they are
/// compared with.
fn ring_rows(ok: &mut bool, full: bool) {
    let Ok(Some(srv)) = names::wait_for("ring", 10) else {
        println!("ipcbench: no ring server: ring rows skipped");
        return;
    };
    let mut server_cpu = None;
    for polling in [false, true] {
        let Ok(c) = Client::connect(srv, RING_VA, 256, 1, polling, 100_000, 0) else {
            println!("ipcbench: cannot connect a ring");
            *ok = false;
            return;
        };
        server_cpu = Some(c.server_cpu);
        // Polling needs the server on another CPU: it says where it runs.
        if polling && c.server_cpu == sys::this_cpu().0 {
            println!(
                "ipcbench: ring-poll rows skipped: ringsrv runs on this vCPU ({}); pin it to another (--vcpus 2 \
                 --cmdline pin=ringsrv:1)",
                c.server_cpu
            );
            c.close();
            return;
        }
        ring_batches(ok, &c, if polling { "ring-poll" } else { "ring" }, full);
        c.close();
    }
    let Some(cpu) = server_cpu else { return };
    match on_cpu(cpu, STACKS_VA + 0x20_0000, ring_on_server_cpu, srv as u64 | (full as u64) << 16) {
        Ok(good) => *ok &= good,
        Err(e) => {
            println!("ipcbench: ring@srv rows skipped: {}", e.name());
            *ok = false;
        }
    }
}

/// Where the benchmark's rings are mapped.
const RING_VA: u64 = 0x0000_0080_0000_0000;

/// The thread of the `ring@srv` rows (`arg`: ringsrv's slot, the done endpoint's << 8,
/// the full run's flag << 16), on ringsrv's vCPU.
fn ring_on_server_cpu(arg: u64) -> u64 {
    let (srv, done, full) = (arg as u8, (arg >> 8) as u8, (arg >> 16) & 1 == 1);
    let mut ok = true;
    match Client::connect(srv, RING_VA, 256, 1, false, 0, 0) {
        Ok(c) => {
            ring_batches(&mut ok, &c, "ring@srv", full);
            c.close();
        }
        Err(_) => {
            println!("ipcbench: cannot connect a ring");
            ok = false;
        }
    }
    REMOTE_OK.store(ok, Ordering::Relaxed);
    let _ = ipc::send(done, &Msg::new(0, &[]));
    0
}

/// The rows of one ring (`path`: its table name): batches of 1 to 256 echo requests.
fn ring_batches(ok: &mut bool, c: &Client, path: &str, full: bool) {
    let mut sqes = [Sqe::default(); 256];
    for (i, s) in sqes.iter_mut().enumerate() {
        *s = Sqe { opcode: op::ECHO, user_data: i as u64, inline: [i as u64, 0, 0, 0, 0], ..Sqe::default() };
    }
    let mut cqes = [Cqe::default(); 256];
    for batch in [1usize, 4, 16, 64, 256] {
        let samples = match (batch, full) {
            (256, false) => 10,
            (_, false) => 50,
            (256, true) => 50,
            (_, true) => 200,
        };
        let mut s = [0u64; 200];
        for x in s[..samples].iter_mut() {
            let t0 = cycles();
            *ok &=
                c.batch(&sqes[..batch], &mut cqes[..batch]).is_ok() && cqes[batch - 1].value[0] == (batch - 1) as u64;
            *x = (cycles() - t0) / batch as u64;
        }
        let st = stats(&mut s[..samples]);
        println!(
            "ipcbench: {:<15} {:>9} {:>12} {:>12} {:>12} {:>9} {:>7}",
            path, batch, st.min, st.median, st.p99, "batch", samples
        );
    }
}
