//! The echo server: registers as "echo", answers every plain message with the same label
//! and words, and is the sink of `l4_rt::transfer` (it answers a transfer of bytes, by
//! copy, copy-on-write pages or a shared region, with their checksum).
#![no_std]
#![no_main]

use l4_rt::ipc::{self, Msg, Received};
use l4_rt::service::Kv;
use l4_rt::transfer::{
    checksum, COW_READ, COW_WRITE, CRASH, KV_GET, KV_PUT, MAX_PAGES_BYTES, SERVER_SHARED_VA, SERVER_WINDOW_VA,
    SHARED_WRITE, SINK_COPY, SINK_PAGES, SINK_SHARED, SINK_SHARED_SETUP, WHO,
};
use l4_rt::{names, println, sys};

l4_rt::entry!(main);

fn bytes(va: u64, len: u64) -> &'static [u8] {
    // SAFETY: callers check that [va, va + len) is the receive window or the shared region,
    // which the kernel mapped for this task.
    unsafe { core::slice::from_raw_parts(va as *const u8, len as usize) }
}

struct Sink {
    shared: u64,
    kv: Kv,
}

impl Sink {
    fn answer(&mut self, got: &Received) -> Msg {
        let m = got.msg;
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
                Some(slot) if self.shared == 0 && sys::mem_map_obj(slot, SERVER_SHARED_VA).is_ok() => {
                    self.shared = m.words[0];
                    Msg::new(SINK_SHARED_SETUP, &[0])
                }
                _ => Msg::new(SINK_SHARED_SETUP, &[1]),
            },
            SINK_SHARED => {
                let (off, len) = (m.words[0], m.words[1]);
                if off.checked_add(len).is_some_and(|e| e <= self.shared) {
                    Msg::new(SINK_SHARED, &[checksum(bytes(SERVER_SHARED_VA + off, len))])
                } else {
                    Msg::new(SINK_SHARED, &[u64::MAX])
                }
            }
            KV_PUT => Msg::new(KV_PUT, &[!self.kv.put(m.words[0], m.words[1]) as u64]),
            KV_GET => match self.kv.get(m.words[0]) {
                Some(v) => Msg::new(KV_GET, &[1, v]),
                None => Msg::new(KV_GET, &[0, 0]),
            },
            CRASH => {
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
            WHO => Msg::new(WHO, &[got.badge]),
            // Reads byte `w0` of the last pages received, then writes `w1` there.
            COW_WRITE | COW_READ => {
                let off = m.words[0].min(MAX_PAGES_BYTES as u64 - 1);
                let p = (SERVER_WINDOW_VA + off) as *mut u8;
                // SAFETY: inside the receive window; pages are only there after a
                // transfer, which the caller guarantees; a read of a hole would fault.
                let old = unsafe { p.read_volatile() };
                if m.label == COW_WRITE {
                    // SAFETY: as above; the page is ours (copy-on-write gives us a copy).
                    unsafe { p.write_volatile(m.words[1] as u8) };
                }
                Msg::new(m.label, &[old as u64])
            }
            SHARED_WRITE if m.words[0] < self.shared => {
                // SAFETY: inside the shared region (checked against its size).
                unsafe { ((SERVER_SHARED_VA + m.words[0]) as *mut u8).write_volatile(m.words[1] as u8) };
                Msg::new(SHARED_WRITE, &[0])
            }
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
    let mut sink = Sink { shared: 0, kv: Kv::default() };
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
