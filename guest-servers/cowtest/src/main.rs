//! A hostile task for page transfers (issue [isolation], items 3-5), run with
//! `--vcpus 2 --cmdline "run=cowtest quota=cowtest:512/1/4/2/1/2/0"` (tests/robust.rs).
//!
//! Three threads of one address space: this one (vCPU 0) sends pages, a receiver (vCPU 0)
//! takes them into its receive window and answers what it sees there, and a writer
//! (vCPU 1) writes the pages just sent copy-on-write at the same moment as this thread.
//! It prints `cowtest: ok NAME` or `cowtest: FAIL NAME: why` per check:
//!
//! 1. A page of a memory object mapped twice cannot go copy-on-write (`Shared`): through
//!    the second mapping the "copy" would change after the receiver checked it. A private
//!    page sent copy-on-write is a snapshot.
//! 2. Two threads writing one freshly copy-on-write page on two vCPUs both get their
//!    write, and neither is killed (the second fault finds the page writable already);
//!    the receiver's copy stays what was sent.
//! 3. A transfer that cannot have the page tables it needs (the quota leaves three
//!    frames, the window needs four) moves nothing: the sender keeps every page, the
//!    receiver gets nothing, no frame is lost; then, with memory, the same transfer works.
//!    A transfer with an unmapped page after a mapped one moves nothing either.
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU64, Ordering};

use l4_abi::syscall::{Error, MsgInfo};
use l4_rt::checks::Checks;
use l4_rt::ipc::{self, Msg};
use l4_rt::{names, println, sys, thread};

l4_rt::entry!(main);

const RECEIVER_STACK: u64 = 0x0000_0010_0000_0000;
const WRITER_STACK: u64 = 0x0000_0011_0000_0000;
/// The receiver's window for checks 1 and 2.
const WINDOW: u64 = 0x0000_0020_0000_0000;
/// A memory object's two mappings.
const OBJ_A: u64 = 0x0000_0030_0000_0000;
const OBJ_B: u64 = 0x0000_0031_0000_0000;
/// The page sent copy-on-write and raced on.
const PAGE: u64 = 0x0000_0040_0000_0000;
/// Pages sent in check 3, and the pages that use up the quota.
const SOURCE: u64 = 0x0000_0041_0000_0000;
const FILL: u64 = 0x0000_0042_0000_0000;
/// Check 3's window: in a region with no page tables yet (its own 512 GiB), the last
/// page of one 2 MiB table and the first of the next: four tables to make.
const FRESH_WINDOW: u64 = 0x0000_5000_0000_0000 + 0x1f_f000;
const FRESH_TABLES: u64 = 4;

/// The receiver's protocol: take the pages of the message (answer what page 0 holds),
/// look at the window again, move the window, or say how many messages it took.
const TAKE: u32 = 1;
const LOOK: u32 = 2;
const MOVE_WINDOW: u32 = 3;
const COUNT: u32 = 4;

const ROUNDS: u64 = 200;
const MAIN_TAG: u64 = 0x4d41_494e << 32;
const WRITER_TAG: u64 = 0x5752_4954 << 32;

/// The round the writer is to write in (`u64::MAX`: stop), and the last it wrote in.
static GO: AtomicU64 = AtomicU64::new(0);
static WRITTEN: AtomicU64 = AtomicU64::new(0);
/// Writes the writer did not read back.
static WRITER_LOST: AtomicU64 = AtomicU64::new(0);

fn word(va: u64, i: u64) -> u64 {
    // SAFETY: callers pass pages this task has mapped (readable) for as long as they read.
    unsafe { ((va + i * 8) as *const u64).read_volatile() }
}

fn set_word(va: u64, i: u64, v: u64) {
    // SAFETY: callers pass pages this task has mapped writable (or copy-on-write, which
    // the kernel resolves on the write).
    unsafe { ((va + i * 8) as *mut u64).write_volatile(v) }
}

/// The receiver: answers with the first three words of page 0 of its window.
fn receiver(ep: u64) -> u64 {
    let ep = ep as u8;
    let _ = sys::set_recv_window(WINDOW, 2);
    let (mut window, mut taken) = (WINDOW, 0u64);
    let mut got = ipc::recv(ep);
    loop {
        let answer = match got {
            Ok(r) => match r.msg.label {
                TAKE if r.msg.pages.is_some() => {
                    taken += 1;
                    let (at, len) = (r.msg.words[6], r.msg.words[7]);
                    let second = if len > 4096 { word(at, 512) } else { 0 };
                    Msg::new(TAKE, &[at, word(at, 0), word(at, 1), word(at, 2), second])
                }
                LOOK => Msg::new(LOOK, &[window, word(window, 0), word(window, 1), word(window, 2)]),
                MOVE_WINDOW => {
                    let ok = sys::set_recv_window(r.msg.words[0], r.msg.words[1]).is_ok();
                    window = r.msg.words[0];
                    Msg::new(MOVE_WINDOW, &[ok as u64])
                }
                COUNT => Msg::new(COUNT, &[taken]),
                _ => Msg::new(0, &[u64::MAX]),
            },
            Err(_) => {
                got = ipc::recv(ep);
                continue;
            }
        };
        got = ipc::reply_recv(ep, &answer);
    }
}

/// The writer: in each round, writes word 2 of the page as soon as this thread is told,
/// and reads it back.
fn writer(_: u64) -> u64 {
    let mut last = 0;
    loop {
        let go = GO.load(Ordering::Acquire);
        if go == u64::MAX {
            return 0;
        }
        if go != last {
            set_word(PAGE, 2, go | WRITER_TAG);
            if word(PAGE, 2) != go | WRITER_TAG {
                WRITER_LOST.fetch_add(1, Ordering::Relaxed);
            }
            last = go;
            WRITTEN.store(go, Ordering::Release);
        }
        core::hint::spin_loop();
    }
}

fn take(ep: u8, kind: u64, va: u64, pages: u64) -> Result<Msg, Error> {
    ipc::call(ep, &Msg::new(TAKE, &[]).with_pages(kind, va, pages * 4096))
}

fn ask(ep: u8, label: u32, words: &[u64]) -> [u64; 8] {
    ipc::call(ep, &Msg::new(label, words)).map(|m| m.words).unwrap_or([u64::MAX; 8])
}

/// Check 1: a memory object's page is refused copy-on-write; a private page is a snapshot.
fn snapshots(ep: u8) -> Result<(), &'static str> {
    let m = sys::mem_create(1).map_err(|_| "cannot create a memory object")?;
    sys::mem_map_obj(m, OBJ_A).map_err(|_| "cannot map the object")?;
    sys::mem_map_obj(m, OBJ_B).map_err(|_| "cannot map the object twice")?;
    set_word(OBJ_A, 0, 0x1111);
    match take(ep, MsgInfo::COW, OBJ_A, 1) {
        Err(Error::Shared) => {}
        Err(_) => return Err("sending a page of an object mapped twice failed, but not with Shared"),
        Ok(_) => {
            set_word(OBJ_B, 0, 0x2222);
            let seen = ask(ep, LOOK, &[]);
            return Err(if seen[1] == 0x2222 {
                "a page of an object mapped twice went copy-on-write, and the copy changed through the other mapping"
            } else {
                "a page of an object mapped twice went copy-on-write (want Shared)"
            });
        }
    }
    if word(OBJ_B, 0) != 0x1111 {
        return Err("the refused page changed");
    }
    sys::mem_map(PAGE, 1).map_err(|_| "cannot map a page")?;
    set_word(PAGE, 0, 0xaaaa);
    let r = take(ep, MsgInfo::COW, PAGE, 1).map_err(|_| "a private page was refused copy-on-write")?;
    if r.words[1] != 0xaaaa {
        return Err("the receiver did not get the page as sent");
    }
    set_word(PAGE, 0, 0xbbbb);
    let seen = ask(ep, LOOK, &[]);
    if seen[1] != 0xaaaa {
        return Err("the receiver's copy changed when the sender wrote its page");
    }
    if word(PAGE, 0) != 0xbbbb {
        return Err("the sender's write did not stay");
    }
    Ok(())
}

/// Check 2: this thread and the writer (on the other vCPU) write one page right after
/// it went copy-on-write, `ROUNDS` times.
fn race(ep: u8) -> Result<u64, &'static str> {
    for round in 1..=ROUNDS {
        set_word(PAGE, 0, round);
        let before = [word(PAGE, 1), word(PAGE, 2)];
        let r = take(ep, MsgInfo::COW, PAGE, 1).map_err(|_| "a send copy-on-write failed")?;
        if r.words[1] != round {
            return Err("the receiver did not get the page as sent");
        }
        // Now both write the page, which is read-only and copy-on-write for both.
        GO.store(round, Ordering::Release);
        set_word(PAGE, 1, round | MAIN_TAG);
        let mine = word(PAGE, 1);
        let mut spins = 0u64;
        while WRITTEN.load(Ordering::Acquire) != round {
            spins += 1;
            if spins > 1 << 34 {
                return Err("the writer stopped writing");
            }
            core::hint::spin_loop();
        }
        if mine != round | MAIN_TAG || word(PAGE, 1) != round | MAIN_TAG {
            return Err("this thread's write was lost");
        }
        if word(PAGE, 2) != round | WRITER_TAG || WRITER_LOST.load(Ordering::Relaxed) != 0 {
            return Err("the writer's write was lost");
        }
        let seen = ask(ep, LOOK, &[]);
        if seen[1..4] != [round, before[0], before[1]] {
            return Err("the receiver's copy changed when the two threads wrote the page");
        }
    }
    Ok(ROUNDS)
}

/// Check 3: with three frames of quota left and four page tables needed, nothing moves.
fn all_or_nothing(ep: u8) -> Result<(), &'static str> {
    if sys::quota_left().frames == u64::MAX {
        return Err("give me a frame quota of my own (quota=cowtest:...)");
    }
    sys::mem_map(SOURCE, 2).map_err(|_| "cannot map the pages to send")?;
    for i in 0..2 {
        set_word(SOURCE + i * 4096, 0, 0x5000 + i);
    }
    if ask(ep, MOVE_WINDOW, &[FRESH_WINDOW, 2])[0] != 1 {
        return Err("cannot move the receiver's window");
    }
    let taken = ask(ep, COUNT, &[])[0];
    // Use up the quota, then give back all but three frames.
    let mut filled = 0;
    let err = loop {
        match sys::mem_map(FILL + filled * 4096, 1) {
            Ok(()) => filled += 1,
            Err(e) => break e,
        }
    };
    if err != Error::Quota {
        return Err("filling the quota ended with another error than Quota");
    }
    let left = sys::quota_left().frames;
    if left > FRESH_TABLES - 1 || filled < FRESH_TABLES {
        return Err("the quota did not fill as expected");
    }
    let give = FRESH_TABLES - 1 - left;
    sys::mem_unmap(FILL + (filled - give) * 4096, give).map_err(|_| "cannot give pages back")?;
    filled -= give;
    if sys::quota_left().frames != FRESH_TABLES - 1 {
        return Err("not three frames left");
    }
    for kind in [MsgInfo::GRANT, MsgInfo::COW] {
        match take(ep, kind, SOURCE, 2) {
            Err(Error::Quota) => {}
            Err(_) => return Err("a transfer without memory for its tables failed, but not with Quota"),
            Ok(_) => return Err("a transfer without memory for its tables worked"),
        }
        // A moved or freed page would fault here (and end this task).
        if word(SOURCE, 0) != 0x5000 || word(SOURCE + 4096, 0) != 0x5001 {
            return Err("the sender's pages changed");
        }
        if sys::quota_left().frames != FRESH_TABLES - 1 {
            return Err("a failed transfer used or lost frames");
        }
    }
    // The sender's pages are still its own, writable.
    set_word(SOURCE, 1, 1);
    if ask(ep, COUNT, &[])[0] != taken {
        return Err("the receiver was given something");
    }
    // With memory, the same grant moves both pages.
    sys::mem_unmap(FILL, filled).map_err(|_| "cannot give the quota back")?;
    let r = take(ep, MsgInfo::GRANT, SOURCE, 2).map_err(|_| "the grant failed with memory to spare")?;
    if r.words[0] != FRESH_WINDOW || r.words[1] != 0x5000 || r.words[4] != 0x5001 {
        return Err("the receiver did not get both pages");
    }
    // An unmapped page after a mapped one: refused, and the first page stays.
    sys::mem_map(SOURCE, 1).map_err(|_| "cannot map a page")?;
    set_word(SOURCE, 0, 0x6000);
    match take(ep, MsgInfo::GRANT, SOURCE, 2) {
        Err(Error::BadAddress) => {}
        _ => return Err("a grant with an unmapped second page was not refused with BadAddress"),
    }
    if word(SOURCE, 0) != 0x6000 {
        return Err("a refused grant moved a page");
    }
    Ok(())
}

fn main() -> u64 {
    let mut c = Checks::new("cowtest");
    let Ok(ep) = sys::endpoint_create() else {
        println!("cowtest: FAIL setup: no endpoint");
        return 1;
    };
    if thread::spawn(RECEIVER_STACK, 4, 0, receiver, ep as u64).is_err() {
        println!("cowtest: FAIL setup: cannot start the receiver");
        return 1;
    }
    c.check(
        "a page of an object mapped twice is refused copy-on-write with Shared, a private page's copy is a snapshot",
        snapshots(ep),
    );
    match thread::spawn(WRITER_STACK, 4, 1, writer, 0) {
        Ok(()) => match race(ep) {
            Ok(n) => println!(
                "cowtest: ok {} times two threads on two vCPUs wrote a page just sent copy-on-write: both writes \
                 kept, neither killed, the copy unchanged",
                n
            ),
            Err(why) => c.check("two threads on two vCPUs write one copy-on-write page", Err(why)),
        },
        Err(_) => c.check("two threads on two vCPUs write one copy-on-write page", Err("needs two vCPUs")),
    }
    GO.store(u64::MAX, Ordering::Release);
    c.check(
        "a transfer without memory for its page tables moves nothing and loses no frame; with memory it works",
        all_or_nothing(ep),
    );
    println!("cowtest: {} checks failed", c.failed());
    let _ = names::done(u64::from(c.failed() != 0));
    u64::from(c.failed() != 0)
}
