//! The ring server: registers as "ring"; a client hands it a ring channel (two calls:
//! `SETUP_RING` with the ring capability, `SETUP_MEM` with the memory capability and the
//! mode) and it serves that ring with `l4_rt::service` until the client is gone or the
//! ring turns out to be garbage, or the client stops reaping completions, then waits
//! for the next one.
//!
//! Kernel-entry mode: one `RingEnter` per batch (it wakes the client and waits for more).
//! Polling mode: spins on the submission ring; after `spin` idle rounds it sets
//! NEED_WAKEUP, checks once more, and sleeps in `RingEnter`.
#![no_std]
#![no_main]

use l4_abi::ring::Sqe;
use l4_abi::syscall::Error;
use l4_rt::ipc::{self, Msg};
use l4_rt::ring::{self, Ring, RingError};
use l4_rt::service::{self, Kv};
use l4_rt::{names, println, sys};

l4_rt::entry!(main);

use l4_rt::ringclient::{SETUP_MEM, SETUP_RING};
const RING_VA: u64 = 0x0000_0060_0000_0000;
/// How many times the server wakes a client whose completion ring is full, and yields to
/// it, before it gives up on that ring.
const MAX_FULL_ROUNDS: u32 = 256;
/// The most idle rounds a polling client may ask for before the server sleeps: a client
/// that asked for more and left would keep it spinning, serving nobody, for ever.
const MAX_SPIN: u64 = 1 << 20;

fn serve(r: &Ring, data: &[u8], kv: &mut Kv, polling: bool, spin: u64) -> RingError {
    let mut idle = 0u64;
    // An entry taken on the way to sleep, served first.
    let mut taken: Option<Sqe> = None;
    loop {
        let mut done = 0u32;
        loop {
            // Polling: only the next entry's own cache line is looked at (its sequence
            // number), not the client's tail, which is checked on the way to sleep.
            let next = match taken.take() {
                Some(s) => Ok(Some(s)),
                None if polling => Ok(r.next_published()),
                None => r.next(),
            };
            match next {
                Ok(Some(s)) => {
                    if let Err(e) = answer(r, kv, &s, data) {
                        return e;
                    }
                    done += 1;
                }
                Ok(None) => break,
                Err(e) => return e,
            }
        }
        if !polling {
            // One kernel entry: wake the client if its completions are there, then wait.
            if let Err(e) = ring::enter(r.slot, 1, true) {
                return RingError::Sys(e);
            }
            continue;
        }
        if done > 0 {
            idle = 0;
            continue;
        }
        idle += 1;
        if idle < spin {
            core::hint::spin_loop();
            continue;
        }
        // Going to sleep: tell the client, and look once more, tail and all (it may have
        // submitted just before it saw the flag; a tail that says more than the entries
        // do is garbage).
        r.set_need_wakeup(true);
        match r.next() {
            Ok(None) => {
                if let Err(e) = ring::enter(r.slot, 1, true) {
                    return RingError::Sys(e);
                }
            }
            Ok(Some(s)) => taken = Some(s),
            Err(e) => return e,
        }
        r.set_need_wakeup(false);
        idle = 0;
    }
}

/// Serves one entry and publishes its completion, waking the client (and letting it run)
/// while its completion ring is full.
fn answer(r: &Ring, kv: &mut Kv, s: &Sqe, data: &[u8]) -> Result<(), RingError> {
    let c = service::serve(kv, s, data);
    let mut full = 0;
    loop {
        match r.complete(c) {
            Ok(true) => return Ok(()),
            // The client is not reaping: wake it, let it run. A client that never reaps
            // (or forged a full completion ring) must not keep this server: above its
            // priority on its CPU, yielding never lets it run, and the server would spin
            // for ever.
            Ok(false) => {
                full += 1;
                if full > MAX_FULL_ROUNDS {
                    return Err(RingError::Stalled);
                }
                ring::enter(r.slot, 0, true).map_err(RingError::Sys)?;
                sys::yield_now();
            }
            Err(e) => return Err(e),
        }
    }
}

/// The ring mapped at `RING_VA`, `pages` long, if its entry count leaves room for its
/// entries in the mapping: its data is the rest of the mapping.
fn fitted(slot: u8, pages: u64) -> Result<Ring, Error> {
    let mut ring = Ring::at(slot, RING_VA)?.serving();
    let len = pages.checked_mul(4096).ok_or(Error::BadArgument)?;
    let data_off = l4_abi::ring::data_offset(ring.entries) as u64;
    if data_off > len {
        return Err(Error::BadArgument);
    }
    ring.data_len = (len - data_off) as usize;
    Ok(ring)
}

fn main() -> u64 {
    let Ok(ep) = sys::endpoint_create() else { return 1 };
    if names::register("ring", ep).is_err() {
        println!("ringsrv: cannot register");
        return 1;
    }
    println!("ringsrv: serving");
    let mut kv = Kv::default();
    // The ring capability a client handed over with SETUP_RING, and that client's badge:
    // only the same client's SETUP_MEM completes it.
    let mut pending: Option<(u64, u8)> = None;
    let mut r = ipc::recv(ep);
    loop {
        let Ok(got) = r else {
            r = ipc::recv(ep);
            continue;
        };
        let m = got.msg;
        match (m.label, m.cap) {
            (SETUP_RING, Some(slot)) => {
                // A ring handed over before and never followed by its memory goes.
                if let Some((_, old)) = pending.replace((got.badge, slot)) {
                    let _ = sys::cap_delete(old);
                }
                r = ipc::reply_recv(ep, &Msg::new(SETUP_RING, &[0])).or_else(|_| ipc::recv(ep));
            }
            (SETUP_MEM, Some(mem)) if pending.is_some_and(|(badge, _)| badge == got.badge) => {
                let slot = pending.take().map_or(0, |(_, s)| s);
                // Nothing the client says about the ring's size is believed: the mapping is
                // the object's true size, and the entry count (read once, from memory the
                // client can scribble) must fit in it with the data after it.
                let mapped = sys::mem_map_obj(mem, RING_VA);
                let ok = mapped.and_then(|pages| fitted(slot, pages));
                // Tell the client where this server runs (it stays there), so it knows
                // whether polling can work without guessing from timing.
                let _ = ipc::reply(&Msg::new(SETUP_MEM, &[ok.is_ok() as u64, sys::this_cpu().0]));
                if let Ok(ring) = &ok {
                    // SAFETY: the data region of the ring object just mapped: `fitted`
                    // checked that it lies inside the mapping.
                    let data = unsafe { core::slice::from_raw_parts(ring.data as *const u8, ring.data_len) };
                    let why = serve(ring, data, &mut kv, m.words[0] != 0, m.words[1].min(MAX_SPIN));
                    match why {
                        RingError::Garbage => println!("ringsrv: garbage indices in the ring; dropping it"),
                        RingError::Sys(Error::PartnerGone) => {}
                        RingError::Sys(e) => println!("ringsrv: ring ended: {}", e.name()),
                        RingError::Stalled => {
                            println!("ringsrv: the client does not reap its completions; dropping its ring")
                        }
                    }
                }
                // Whatever was mapped goes, so the next client finds RING_VA free.
                if let Ok(pages) = mapped {
                    let _ = sys::mem_unmap(RING_VA, pages);
                }
                if let Err(e) = ok {
                    println!("ringsrv: refused a ring: {}", e.name());
                }
                let _ = sys::cap_delete(mem);
                let _ = sys::cap_delete(slot);
                r = ipc::recv(ep);
            }
            // Anything else is refused, and a capability that came with it deleted: no
            // client may fill this server's capability table (and so keep every later
            // client's ring from arriving) or pair its memory with another's ring.
            (_, cap) => {
                if let Some(c) = cap {
                    let _ = sys::cap_delete(c);
                }
                r = ipc::reply_recv(ep, &Msg::new(0xdead, &[])).or_else(|_| ipc::recv(ep));
            }
        }
    }
}
