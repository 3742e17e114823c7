//! The echo server: registers as "echo", answers every plain message with the same label
//! and words, and is the sink of `l4_rt::transfer` (it answers a transfer of bytes, by
//! copy, copy-on-write pages or a shared region, with their checksum).
//!
//! It keeps each client's state by the badge root minted for it: a client's shared
//! region (up to [`CLIENTS`] at once) and the pages it sent last are that client's alone,
//! and every offset and size a client sends is checked against what the kernel mapped,
//! never against what the client said (a refused read answers `u64::MAX`).
#![no_std]
#![no_main]

use l4_rt::ipc::{self, Msg, Received};
use l4_rt::service::Kv;
use l4_rt::transfer::{
    checksum, COW_READ, COW_WRITE, CRASH, KV_GET, KV_PUT, MAX_PAGES_BYTES, SERVER_SHARED_VA, SERVER_WINDOW_VA,
    SHARED_WRITE, SINK_COPY, SINK_PAGES, SINK_SHARED, SINK_SHARED_SETUP, WHO,
};
use l4_rt::{names, println, sys, thread};

l4_rt::entry!(main);

fn bytes(va: u64, len: u64) -> &'static [u8] {
    // SAFETY: callers check that [va, va + len) is the receive window or the shared region,
    // which the kernel mapped for this task.
    unsafe { core::slice::from_raw_parts(va as *const u8, len as usize) }
}

/// Clients with a shared region at once (when all are taken, they are replaced in turn).
const CLIENTS: usize = 8;
/// Client `i`'s shared region is mapped at `SERVER_SHARED_VA + i * REGION_SPACING`.
const REGION_SPACING: u64 = 1 << 30;
/// What a refused read answers (a byte or checksum never is).
const REFUSED: u64 = u64::MAX;
/// The stack of the thread that makes system calls while echo crashes.
const BUSY_STACK: u64 = 0x0000_0050_0000_0000;

/// Enters the kernel without pause until the task is killed.
fn busy(_: u64) -> u64 {
    loop {
        let _ = sys::null(false);
    }
}

/// A client's shared region, keyed by the badge root minted for it.
#[derive(Clone, Copy, Default)]
struct Region {
    badge: u64,
    /// Its size in bytes: what the kernel mapped, or less if the client said less.
    len: u64,
    /// Pages mapped (0: this entry is free).
    pages: u64,
    /// The memory capability it came with.
    slot: u8,
}

/// Per-client state, keyed by badge: one client never reads, writes or frees another's.
struct Sink {
    regions: [Region; CLIENTS],
    /// Which region a new client replaces when all are taken (round robin).
    evict: usize,
    /// Who sent the pages now in the receive window, and how many bytes.
    window: (u64, u64),
    kv: Kv,
}

impl Sink {
    fn va(i: usize) -> u64 {
        SERVER_SHARED_VA + i as u64 * REGION_SPACING
    }

    /// The index of `badge`'s region, if it has one.
    fn find(&self, badge: u64) -> Option<usize> {
        self.regions.iter().position(|r| r.pages != 0 && r.badge == badge)
    }

    fn region(&self, badge: u64) -> Option<(u64, u64)> {
        self.find(badge).map(|i| (Self::va(i), self.regions[i].len))
    }

    /// Maps `slot` as `badge`'s region (replacing its old one); the size the client
    /// claims is believed only if it is less than what the kernel mapped.
    fn setup(&mut self, badge: u64, slot: u8, claimed: u64) -> bool {
        let i = match self.find(badge).or_else(|| self.regions.iter().position(|r| r.pages == 0)) {
            Some(i) => i,
            // All taken: they go in turn, the first set up first.
            None => {
                let i = self.evict;
                self.evict = (i + 1) % CLIENTS;
                i
            }
        };
        self.drop_region(i);
        match sys::mem_map_obj(slot, Self::va(i)) {
            Ok(pages) if pages != 0 && pages * 4096 <= REGION_SPACING => {
                self.regions[i] = Region { badge, len: claimed.min(pages * 4096), pages, slot };
                true
            }
            Ok(pages) => {
                let _ = sys::mem_unmap(Self::va(i), pages);
                false
            }
            Err(_) => false,
        }
    }

    fn drop_region(&mut self, i: usize) {
        let r = self.regions[i];
        if r.pages != 0 {
            let _ = sys::mem_unmap(Self::va(i), r.pages);
            let _ = sys::cap_delete(r.slot);
        }
        self.regions[i] = Region::default();
    }

    fn answer(&mut self, got: &Received) -> Msg {
        let m = got.msg;
        let who = got.badge;
        if let (Some(c), false) = (m.cap, m.label == SINK_SHARED_SETUP) {
            // Kept, a capability nobody asked for would fill this server's table.
            let _ = sys::cap_delete(c);
        }
        if m.pages.is_some() {
            // The window now holds these pages: only their sender may look at them.
            self.window = (who, m.words[7].min(MAX_PAGES_BYTES as u64));
        }
        match m.label {
            SINK_COPY => {
                let len = m.words[0].min(8 * 119);
                let mut x = 0;
                for i in 0..len.div_ceil(8) as usize {
                    x ^= m.word(1 + i);
                }
                Msg::new(SINK_COPY, &[x])
            }
            SINK_PAGES if m.pages.is_some() && m.words[7] <= MAX_PAGES_BYTES as u64 => {
                let len = m.words[0].min(m.words[7]);
                Msg::new(SINK_PAGES, &[checksum(bytes(m.words[6], len))])
            }
            SINK_SHARED_SETUP => match m.cap {
                Some(slot) if self.setup(who, slot, m.words[0]) => Msg::new(SINK_SHARED_SETUP, &[0]),
                Some(slot) => {
                    let _ = sys::cap_delete(slot);
                    Msg::new(SINK_SHARED_SETUP, &[1])
                }
                None => Msg::new(SINK_SHARED_SETUP, &[1]),
            },
            SINK_SHARED => {
                let (off, len) = (m.words[0], m.words[1]);
                match self.region(who) {
                    Some((va, size)) if off.checked_add(len).is_some_and(|e| e <= size) => {
                        Msg::new(SINK_SHARED, &[checksum(bytes(va + off, len))])
                    }
                    _ => Msg::new(SINK_SHARED, &[REFUSED]),
                }
            }
            KV_PUT => Msg::new(KV_PUT, &[!self.kv.put(m.words[0], m.words[1]) as u64]),
            KV_GET => match self.kv.get(m.words[0]) {
                Some(v) => Msg::new(KV_GET, &[1, v]),
                None => Msg::new(KV_GET, &[0, 0]),
            },
            CRASH => {
                // With a second vCPU, a thread of ours makes system calls there without
                // pause while this one crashes: the supervisor's kill then meets a thread
                // entering the kernel on another CPU, and the restart reuses its slots
                // (a CPU must never act for a killed thread's successor).
                if thread::spawn(BUSY_STACK, 4, 1, busy, 0).is_ok() {
                    println!("echo: crashing, with a thread making system calls on cpu 1");
                }
                // Busy for ~1 ms (callers on other vCPUs queue up), then a null read.
                let t0 = l4_rt::time::cycles();
                while l4_rt::time::cycles().wrapping_sub(t0) < 2_000_000 {
                    core::hint::spin_loop();
                }
                // SAFETY: deliberately not: this read faults, which is the point (the
                // supervisor restarts echo; the kernel tells its callers).
                let v = unsafe { core::ptr::null::<u64>().read_volatile() };
                Msg::new(CRASH, &[v])
            }
            // The badge of the capability the caller used.
            WHO => Msg::new(WHO, &[who]),
            // Reads byte `w0` of the pages this caller sent last, then writes `w1` there.
            COW_WRITE | COW_READ => {
                let (owner, len) = self.window;
                let off = m.words[0];
                if owner != who || off >= len {
                    return Msg::new(m.label, &[REFUSED]);
                }
                let p = (SERVER_WINDOW_VA + off) as *mut u8;
                // SAFETY: inside the pages this caller sent, which the kernel mapped at the
                // start of the receive window and which stay until the next transfer.
                let old = unsafe { p.read_volatile() };
                if m.label == COW_WRITE {
                    // SAFETY: as above; the page is ours (copy-on-write gives us a copy).
                    unsafe { p.write_volatile(m.words[1] as u8) };
                }
                Msg::new(m.label, &[old as u64])
            }
            SHARED_WRITE => match self.region(who) {
                Some((va, size)) if m.words[0] < size => {
                    // SAFETY: inside this caller's shared region (checked against its size).
                    unsafe { ((va + m.words[0]) as *mut u8).write_volatile(m.words[1] as u8) };
                    Msg::new(SHARED_WRITE, &[0])
                }
                _ => Msg::new(SHARED_WRITE, &[REFUSED]),
            },
            _ => Msg { cap: None, pages: None, ..m },
        }
    }
}

fn main() -> u64 {
    let Ok(ep) = sys::endpoint_create() else { return 1 };
    if sys::set_recv_window(SERVER_WINDOW_VA, MAX_PAGES_BYTES as u64 / 4096).is_err() {
        println!("echo: cannot set a receive window");
        return 1;
    }
    if names::register("echo", ep).is_err() {
        println!("echo: cannot register");
        return 1;
    }
    println!("echo: serving");
    let mut sink = Sink { regions: [Region::default(); CLIENTS], evict: 0, window: (0, 0), kv: Kv::default() };
    let mut r = ipc::recv(ep);
    loop {
        r = match r {
            Ok(got) => {
                let m = sink.answer(&got);
                ipc::reply_recv(ep, &m).or_else(|_| ipc::recv(ep))
            }
            Err(_) => ipc::recv(ep),
        };
    }
}
