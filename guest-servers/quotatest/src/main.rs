//! A hostile task for the quota test (tests/robust.rs): run with a quota of its own,
//! `run=echo,client,quotatest quota=quotatest:F/T/TH/E/N/M/R` (see the root task), it
//! takes every kind of kernel object and then memory, page by page, until the kernel
//! refuses. Each refusal must be `Quota` (not `NoSlots` or `OutOfMemory`: the machine
//! has more) and come exactly at its quota; then it registers as a server and holds all
//! of it until root stops it, while its siblings work beside it. It prints
//! `quotatest: ok NAME` or `quotatest: FAIL NAME: why` per check.
#![no_std]
#![no_main]

use l4_abi::quota::Quota;
use l4_abi::syscall::Error;
use l4_rt::ipc::{self, Msg};
use l4_rt::{names, println, ring, sys, thread};

l4_rt::entry!(main);

/// Where the threads' stacks, the rings and the pages taken go.
const STACKS: u64 = 0x0000_0010_0000_0000;
const RINGS: u64 = 0x0000_0020_0000_0000;
const PAGES: u64 = 0x0000_0030_0000_0000;

/// Makes things with `make` until it fails: how many it made, and the error.
fn until_refused(mut make: impl FnMut(u64) -> Result<(), Error>) -> (u64, Error) {
    let mut n = 0;
    loop {
        if let Err(e) = make(n) {
            return (n, e);
        }
        n += 1;
    }
}

struct Checks {
    failed: u32,
}

impl Checks {
    /// `what` was made `got` times before `err`: `Quota`, after `want`.
    fn refused(&mut self, what: &str, (got, err): (u64, Error), want: u64) {
        if err == Error::Quota && got == want {
            println!("quotatest: ok {} refused with Quota after {}", what, got);
        } else {
            self.failed += 1;
            println!(
                "quotatest: FAIL {}: {} made, then {} (want {} made, then quota used up)",
                what,
                got,
                err.name(),
                want
            );
        }
    }
}

/// The threads taken hold on until the task is stopped.
fn hold(n: u64) -> u64 {
    loop {
        let _ = sys::wait(n as u8);
    }
}

fn main() -> u64 {
    let mut c = Checks { failed: 0 };
    let q: Quota = sys::quota_left();
    println!(
        "quotatest: left of my quota: {} frames, {} tasks, {} threads, {} endpoints, {} notifications, {} memory objects, {} rings",
        q.frames, q.tasks, q.threads, q.endpoints, q.notifications, q.memobjs, q.rings
    );
    if q.frames == u64::MAX || q.endpoints >= 32 || q.rings == 0 || q.memobjs <= q.rings {
        println!(
            "quotatest: FAIL setup: give me a quota of my own, under 32 endpoints, with a ring and more memory objects"
        );
        return 1;
    }
    let mut endpoint = 0;
    let made = until_refused(|_| sys::endpoint_create().map(|s| endpoint = s));
    c.refused("endpoints", made, q.endpoints);
    // The threads wait on a notification for ever.
    let mut notification = 0;
    let made = until_refused(|_| sys::notify_create().map(|s| notification = s));
    c.refused("notifications", made, q.notifications);
    c.refused("rings", until_refused(|i| ring::create(8, 0, RINGS + i * 0x10_0000).map(|_| ())), q.rings);
    c.refused("memory objects", until_refused(|_| sys::mem_create(1).map(|_| ())), q.memobjs - q.rings);
    let threads = until_refused(|i| thread::spawn(STACKS + i * 0x10_0000, 1, 0, hold, notification as u64));
    c.refused("threads", threads, q.threads);
    // Memory: page by page until refused; the machine must have more.
    let (pages, e) = until_refused(|i| sys::mem_map(PAGES + i * 4096, 1));
    let (free, _) = sys::frame_stats();
    if e == Error::Quota && free > 0 {
        println!("quotatest: ok memory refused with Quota after {} pages, {} frames still free", pages, free);
    } else {
        c.failed += 1;
        println!("quotatest: FAIL memory: {} pages, then {} with {} frames free", pages, e.name(), free);
    }
    let left = sys::quota_left();
    if left.endpoints == 0 && left.notifications == 0 && left.rings == 0 && left.memobjs == 0 && left.threads == 0 {
        println!("quotatest: ok nothing left but {} frames", left.frames);
    } else {
        c.failed += 1;
        println!("quotatest: FAIL left: {:?}", left);
    }
    println!("quotatest: holding it all, {} checks failed", c.failed);
    // A server from here on (root stops it at the end): hold everything meanwhile.
    if names::register("quotatest", endpoint).is_err() {
        println!("quotatest: FAIL cannot register");
        return 1;
    }
    let mut got = ipc::recv(endpoint);
    loop {
        got = match got {
            Ok(_) => ipc::reply_recv(endpoint, &Msg::new(0, &[c.failed as u64])),
            Err(_) => ipc::recv(endpoint),
        };
    }
}
