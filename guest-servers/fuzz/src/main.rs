//! A seeded system-call fuzzer: `l4vmm --cmdline "fuzz seed=S count=N"` (the root task
//! starts only this server and passes it S and N).
//!
//! Each step draws a system call and its arguments from a xorshift generator seeded with
//! S: random numbers (valid and not), capability slots (valid, empty, out of range),
//! pointers (kernel half, non-canonical, unmapped, unaligned, ours), lengths (0, small,
//! huge), message infos with random words, capabilities and page flags, ring indices
//! scribbled with garbage, and random objects to aim at (an endpoint answered by a second
//! thread of this task, a notification, memory objects, rings, threads that end at once).
//! Now and then a step is one of three attacks instead of a call, each with a check of
//! its own: pages of a memory object mapped twice sent copy-on-write (must be refused
//! with `Shared`); pages sent copy-on-write that a second thread on the other vCPU keeps
//! writing while this one writes them too (no write may be lost, no thread killed, and
//! the receiver's copy must not change while it looks at it); and a ring handed to
//! `ringsrv` (which the root task starts beside the fuzzer) with forged fields: entry
//! count, indices, entries, the data size it claims, a polling spin count; `ringsrv`
//! must go on serving well-formed rings, checked every so often and at the end.
//! Every call must come back with 0 or a defined error code; anything else stops the run
//! with the seed and the step, so `fuzz seed=S count=STEP+1` replays it (the calls drawn
//! depend only on S: the run prints a digest of them). `fuzz verbose` prints every call
//! before it is made, for a call that never comes back.
//!
//! What is not drawn, and why (everything else is): calls that would end this task
//! (`TaskExit`, `ThreadExit` from the main thread) or block it for ever by design (a
//! receive nobody sends to, a ring wait nobody completes); unmapping this program's own
//! code or stack; deleting the three capabilities the run reports through; and mapping or
//! creating more than 64 pages at a time in our own range (valid and only slow: zeroed
//! frame by frame).
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use l4_abi::args::{self as a, Args};
use l4_abi::layout::{ELF_BASE, USER_MAP_MAX};
use l4_abi::syscall::{Error, MsgInfo, Sysno};
use l4_rt::ipc::{self, Msg};
use l4_rt::{names, println, sys, thread};

l4_rt::entry!(main);

/// Our playground: mappings, windows and memory objects go here.
const ARENA: u64 = 0x0000_0060_0000_0000;
const ARENA_PAGES: u64 = 1024;
/// The responder thread's stack and receive window.
const RESPONDER_STACK: u64 = 0x0000_0070_0000_0000;
const WINDOW: u64 = 0x0000_0071_0000_0000;
const WINDOW_PAGES: u64 = 256;
/// Stacks for threads that end at once.
const SHORT_STACKS: u64 = 0x0000_0072_0000_0000;
/// Where our ring's memory is mapped (its indices get scribbled on).
const RING_VA: u64 = 0x0000_0073_0000_0000;
/// A memory object's two mappings (pages of it go copy-on-write: refused).
const OBJ_A: u64 = 0x0000_0074_0000_0000;
const OBJ_B: u64 = 0x0000_0075_0000_0000;
const OBJ_PAGES: u64 = 2;
/// Pages sent copy-on-write while the writer thread writes them.
const ZONE: u64 = 0x0000_0076_0000_0000;
const ZONE_PAGES: u64 = 4;
const WRITER_STACK: u64 = 0x0000_0077_0000_0000;
/// Rings handed to ringsrv: forged ones, and the health check's.
const FORGE_VA: u64 = 0x0000_0078_0000_0000;
const HEALTH_VA: u64 = 0x0000_0079_0000_0000;
/// The label of a copy-on-write send from the zone (the responder checks its copy).
const ZONE_LABEL: u32 = 0x2c0e;

/// xorshift64*: small, fast, and the same sequence for the same seed everywhere.
struct Rng(u64);

impl Rng {
    /// Seeded through splitmix64, so that nearby seeds give unrelated sequences.
    fn new(seed: u64) -> Self {
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Rng((z ^ (z >> 31)) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }
    /// One of `xs`, or (as often as each of them) a random word.
    fn pick_r(&mut self, xs: &[u64]) -> u64 {
        match self.below(xs.len() as u64 + 1) as usize {
            i if i < xs.len() => xs[i],
            _ => self.next(),
        }
    }
}

/// The objects the run aims at (slots in our capability table).
struct Targets {
    responder: u8,
    notification: u8,
    /// A ring's client and server capabilities (nobody serves it).
    ring: [u8; 2],
    /// Slots the run must keep: the parent (name service), the responder's endpoint, the
    /// notification, ringsrv's endpoint.
    protected: [u8; 4],
    /// ringsrv's endpoint, if it runs.
    ringsrv: Option<u8>,
    /// Whether a writer thread runs on the other vCPU.
    writer: bool,
}

/// A drawn call: number and registers.
#[derive(Clone, Copy)]
struct Drawn {
    n: u64,
    rdi: u64,
    rsi: u64,
    w: [u64; 8],
}

fn slot(r: &mut Rng, t: &Targets) -> u64 {
    match r.below(6) {
        0 => t.responder as u64,
        1 => t.notification as u64,
        2 => t.ring[r.below(2) as usize] as u64,
        3 => r.below(64),
        4 => r.pick(&[64, 255, 256, u64::MAX, 1 << 40]),
        _ => r.next(),
    }
}

/// An address: ours (arena), a code or stack address of ours (only where the call cannot
/// take them away), or a bad one.
fn address(r: &mut Rng, may_be_code: bool) -> u64 {
    match r.below(if may_be_code { 9 } else { 8 }) {
        0 | 1 => ARENA + r.below(ARENA_PAGES) * 4096,
        2 => ARENA + r.below(ARENA_PAGES * 4096), // unaligned
        3 => r.pick(&[0, 8, 0xfff, 0x1000, USER_MAP_MAX - 4096, USER_MAP_MAX, USER_MAP_MAX + 4096]),
        4 => r.pick(&[0xffff_8000_0000_0000, 0xffff_ffff_8000_0000, 0xffff_8000_0010_0000, !0xfff]),
        5 => r.pick(&[0x0000_8000_0000_0000, 0x8000_0000_0000_0000, 0x1234_5678_9abc_d000]), // non-canonical
        6 => r.next(),
        7 => WINDOW + r.below(WINDOW_PAGES) * 4096,
        _ => ELF_BASE + r.below(16) * 4096,
    }
}

/// `TaskSpawn`'s quota: none, or any address (in our arena it holds whatever is there).
fn quota(r: &mut Rng) -> u64 {
    if r.below(2) == 0 {
        0
    } else {
        address(r, true)
    }
}

fn pages(r: &mut Rng, small_only: bool) -> u64 {
    match r.below(if small_only { 2 } else { 4 }) {
        0 => r.below(4),
        1 => r.below(65),
        2 => r.pick(&[65_536, 65_537, 1 << 20, 512 * 512 + 1]),
        _ => r.next(),
    }
}

fn info(r: &mut Rng) -> u64 {
    match r.below(4) {
        0 => MsgInfo::new(r.below(1 << 20) as u32, r.below(9) as usize).0,
        1 => MsgInfo::new(r.next() as u32, r.below(121) as usize).0,
        2 => {
            let m = MsgInfo::new(r.next() as u32, 8);
            let m = if r.below(2) == 0 { m.with_cap(r.below(70) as u8) } else { m };
            m.with_pages(r.pick(&[MsgInfo::COW, MsgInfo::GRANT, 3])).0
        }
        _ => r.next(),
    }
}

fn words(r: &mut Rng) -> [u64; 8] {
    let mut w = [0u64; 8];
    for x in w.iter_mut() {
        *x = if r.below(2) == 0 { r.below(4096) } else { r.next() };
    }
    // Words 6 and 7 are (address, length) of pages sent with a message.
    w[6] = address(r, false);
    w[7] = r.pick(&[0, 4096, 8192, 4096 * 64, 4097, u64::MAX, 4096 * 1024]);
    w
}

/// Draws one call. Calls that could block for ever aim at a bad slot or are made
/// non-blocking; see the module comment for what is never drawn.
fn draw(r: &mut Rng, t: &Targets) -> Drawn {
    use Sysno::*;
    let mut c = Drawn { n: 0, rdi: 0, rsi: 0, w: [0; 8] };
    let kinds = [
        DebugWrite,
        Yield,
        EndpointCreate,
        CapDerive,
        CapDelete,
        Send,
        Recv,
        Call,
        ReplyRecv,
        MemMap,
        TaskSpawn,
        CapGrant,
        FrameStats,
        TaskKill,
        MachineExit,
        MemUnmap,
        Reply,
        NotifyCreate,
        Signal,
        Wait,
        Trace,
        SetRecvWindow,
        MemCreate,
        MemMapObj,
        SendNB,
        RecvNB,
        SetAffinity,
        RingCreate,
        RingEnter,
        ThreadCreate,
        Null,
        ThisCpu,
        QuotaLeft,
    ];
    if r.below(40) == 0 {
        // A number that is no system call.
        c.n = r.pick_r(&[35, 36, 100, 1 << 32, u64::MAX]);
        c.rdi = r.next();
        c.rsi = r.next();
        c.w = words(r);
        return c;
    }
    let k = r.pick(&kinds);
    c.n = k as u64;
    c.w = words(r);
    // Each call's arguments by their names in l4_abi::args (the kernel decodes with the
    // same definition); the message words no argument names stay random.
    match k {
        DebugWrite => {
            let ptr = address(r, true);
            // Our own memory only with length 0 (no console spam); bad pointers with any.
            let len = if ptr >= ARENA && ptr < USER_MAP_MAX { 0 } else { r.pick_r(&[0, 1, 4096, u64::MAX]) };
            put(&mut c, a::DebugWrite { ptr, len });
        }
        CapDerive => put(&mut c, a::CapDerive { slot: slot(r, t), rights: r.next() & 0xf, badge: r.pick_r(&[0, 1]) }),
        CapDelete => {
            let s = slot(r, t);
            put(&mut c, a::CapDelete { slot: if t.protected.contains(&(s as u8)) && s < 64 { 63 } else { s } });
        }
        Send | Call => {
            // To the responder (which answers) or to a bad slot; never to an endpoint
            // nobody receives on.
            let endpoint = if r.below(3) == 0 { t.responder as u64 } else { bad_slot(r, t) };
            let info = info(r);
            if k == Send {
                put(&mut c, a::Send { endpoint, info });
            } else {
                put(&mut c, a::Call { endpoint, info });
            }
        }
        Recv | ReplyRecv | Wait => {
            // Blocking receives: only at slots that cannot block (bad ones).
            let (at, info) = (bad_slot(r, t), info(r));
            match k {
                Recv => put(&mut c, a::Recv { endpoint: at }),
                Wait => put(&mut c, a::Wait { notification: at }),
                _ => put(&mut c, a::ReplyRecv { endpoint: at, info }),
            }
            c.rsi = info; // garbage where the call names no second argument
        }
        SendNB | RecvNB => {
            let (at, info) = (slot(r, t), info(r));
            if k == SendNB {
                put(&mut c, a::SendNB { endpoint: at, info });
            } else {
                put(&mut c, a::RecvNB { endpoint: at });
                c.rsi = info;
            }
        }
        Reply => put(&mut c, a::Reply { unused: 0, info: info(r) }),
        MemMap => {
            let va = address(r, false);
            let in_ours = va >= ARENA && va < USER_MAP_MAX;
            put(&mut c, a::MemMap { va, pages: pages(r, in_ours) });
        }
        MemUnmap => put(&mut c, a::MemUnmap { va: address(r, false), pages: pages(r, false) }),
        SetRecvWindow => put(&mut c, a::SetRecvWindow { va: address(r, true), pages: pages(r, false) }),
        // Valid sizes up to 64 pages (an object of 65,536 pages is valid and only slow:
        // zeroed frame by frame), and sizes past the limit.
        MemCreate => put(&mut c, a::MemCreate { pages: r.pick_r(&[0, 1, 2, 16, 64, 512 * 512 + 1, u64::MAX]) }),
        MemMapObj => put(&mut c, a::MemMapObj { memory: slot(r, t), va: address(r, false) }),
        Signal => put(&mut c, a::Signal { notification: slot(r, t), bits: r.next() }),
        // Without `trace=fuzz` root gives no TRACE right, and every one is refused; with
        // it, windows open and close at random (the watchdog ends any left open).
        Trace => put(&mut c, a::Trace { machine: slot(r, t), op: r.pick(&[0, 1, 2, 3, u64::MAX]) }),
        RingCreate => {
            let entries = r.pick(&[0, 1, 2, 3, 16, 64, 100, 4096, 4097, 1 << 20, u64::MAX]);
            put(&mut c, a::RingCreate { entries, data_pages: r.pick(&[0, 1, 4, 64, 65, 1 << 20, u64::MAX]) });
        }
        // min 0: never wait (nobody serves these rings).
        RingEnter => {
            put(&mut c, a::RingEnter { ring: slot(r, t), unused: 0, min: 0, flags: r.pick(&[0, 1, 2, u64::MAX]) })
        }
        ThreadCreate => {
            let good = r.below(2) == 0;
            let entry = if good { short_thread as *const () as u64 } else { address(r, false) };
            let stack = if good {
                SHORT_STACKS + (r.below(8) + 1) * 0x10_0000
            } else {
                r.pick_r(&[0, 8, 0xffff_8000_0000_0000, ARENA + 8])
            };
            put(&mut c, a::ThreadCreate { entry, stack, arg: r.next(), cpu: r.pick(&[0, 0, 1, 2, 16, u64::MAX]) });
        }
        Null => put(&mut c, a::Null { mode: r.pick(&[0, 1, 2, u64::MAX]) }),
        TaskSpawn => {
            let (file, prio) = (slot(r, t), r.next());
            let (fault, parent, arg0, arg1) = (c.w[0], c.w[1], c.w[2], c.w[3]);
            put(&mut c, a::TaskSpawn { file, prio, fault, parent, arg0, arg1, quota: quota(r) });
        }
        CapGrant => put(&mut c, a::CapGrant { task: slot(r, t), slot: r.next() }),
        TaskKill => {
            let (task, garbage) = (slot(r, t), r.next());
            put(&mut c, a::TaskKill { task });
            c.rsi = garbage;
        }
        MachineExit => put(&mut c, a::MachineExit { machine: slot(r, t), code: r.next() }),
        SetAffinity => put(&mut c, a::SetAffinity { task: slot(r, t), cpu: r.next() }),
        Yield | EndpointCreate | FrameStats | NotifyCreate | ThisCpu | QuotaLeft => {
            c.rdi = slot(r, t);
            c.rsi = r.next();
        }
        TaskExit | ThreadExit => unreachable!("never drawn"),
    }
    c
}

/// Puts the call `a` into `c`: its number, and each named argument in its register.
fn put<A: Args>(c: &mut Drawn, a: A) {
    let regs = a.into_regs();
    c.n = A::SYSNO as u64;
    c.rdi = regs.rdi;
    c.rsi = regs.rsi;
    for i in 0..A::NAMES.len().saturating_sub(2) {
        c.w[i] = regs.words[i];
    }
}

/// A slot that names nothing we could block on: out of range, or garbage. (Every slot
/// in range may hold an endpoint the fuzzer made, which nobody serves.)
fn bad_slot(r: &mut Rng, _t: &Targets) -> u64 {
    r.pick_r(&[64, 65, 255, 256, 1 << 32, u64::MAX])
}

/// Threads the fuzzer creates end at once.
extern "C" fn short_thread(_arg: u64, _buf: u64) -> ! {
    sys::thread_exit(0)
}

/// The responder: answers every message on its endpoint with an empty register message.
/// Pages sent copy-on-write from the zone it looks at twice, some time apart, while the
/// writer writes the sender's pages: its copy must not change.
fn responder(ep: u64) -> u64 {
    let _ = sys::set_recv_window(WINDOW, WINDOW_PAGES);
    let mut got = ipc::recv(ep as u8);
    loop {
        got = match got {
            Ok(m) => {
                if m.msg.label == ZONE_LABEL && m.msg.pages == Some(MsgInfo::COW) {
                    let (at, len) = (m.msg.words[6], m.msg.words[7]);
                    let look = |page: u64, i: u64| {
                        // SAFETY: the kernel mapped `len` bytes of pages at `at`, in our
                        // window, which nothing unmaps before the next message.
                        unsafe { ((at + page * 4096 + i * 8) as *const u64).read_volatile() }
                    };
                    let pages = (len / 4096).min(ZONE_PAGES);
                    let mut first = [[0u64; 2]; ZONE_PAGES as usize];
                    for p in 0..pages {
                        first[p as usize] = [look(p, 0), look(p, 1)];
                    }
                    let t0 = l4_rt::time::cycles();
                    while l4_rt::time::cycles().wrapping_sub(t0) < 200_000 {
                        core::hint::spin_loop();
                    }
                    for p in 0..pages {
                        if first[p as usize] != [look(p, 0), look(p, 1)] {
                            SNAPSHOT_BROKEN.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                ipc::reply_recv(ep as u8, &Msg::new(m.msg.label, &[]))
            }
            Err(_) => ipc::recv(ep as u8),
        };
    }
}

/// Copies the responder saw change while it looked at them.
static SNAPSHOT_BROKEN: AtomicU64 = AtomicU64::new(0);
/// The writer's count of writes, and of writes it did not read back.
static WRITES: AtomicU64 = AtomicU64::new(0);
static WRITER_LOST: AtomicU64 = AtomicU64::new(0);
static STOP: AtomicBool = AtomicBool::new(false);

/// The writer, on the other vCPU: writes word 1 of every zone page in turn, for ever, and
/// reads each write back. The zone's pages go copy-on-write under it all the time, so
/// its writes fault at the same moments as this task's main thread's.
fn writer(_: u64) -> u64 {
    let mut n = 0u64;
    while !STOP.load(Ordering::Relaxed) {
        n += 1;
        let va = ZONE + (n % ZONE_PAGES) * 4096 + 8;
        // SAFETY: the zone is mapped for the whole run (nothing the fuzzer draws unmaps
        // or grants it: no address it draws falls there); word 1 of each page is the
        // writer's alone.
        let back = unsafe {
            (va as *mut u64).write_volatile(n);
            (va as *const u64).read_volatile()
        };
        if back != n {
            WRITER_LOST.fetch_add(1, Ordering::Relaxed);
        }
        WRITES.store(n, Ordering::Relaxed);
    }
    0
}

/// Why an attack step failed.
type Broken = &'static str;

/// Sends pages of the memory object mapped at OBJ_A (and OBJ_B) copy-on-write: refused.
fn cow_shared(r: &mut Rng, t: &Targets) -> Result<(), Broken> {
    let pages = 1 + r.below(OBJ_PAGES);
    let from = if r.below(2) == 0 { OBJ_A } else { OBJ_B };
    let m = Msg::new(ZONE_LABEL + 1, &[]).with_pages(MsgInfo::COW, from, pages * 4096);
    match ipc::call(t.responder, &m) {
        Err(Error::Shared) => Ok(()),
        Err(_) => Err("pages of a memory object mapped twice, sent copy-on-write, failed but not with Shared"),
        Ok(_) => Err("pages of a memory object mapped twice went copy-on-write"),
    }
}

/// Sends zone pages copy-on-write to the responder (which checks its copy while the
/// writer writes the originals), then writes them here too and reads the writes back.
fn cow_race(r: &mut Rng, t: &Targets, step: u64) -> Result<(), Broken> {
    let first = r.below(ZONE_PAGES);
    let pages = 1 + r.below(ZONE_PAGES - first);
    let m = Msg::new(ZONE_LABEL, &[]).with_pages(MsgInfo::COW, ZONE + first * 4096, pages * 4096);
    ipc::call(t.responder, &m).map_err(|_| "a copy-on-write send from the zone failed")?;
    for p in first..first + pages {
        let va = ZONE + p * 4096;
        // SAFETY: the zone is mapped for the whole run; word 0 of each page is ours.
        let back = unsafe {
            (va as *mut u64).write_volatile(step);
            (va as *const u64).read_volatile()
        };
        if back != step {
            return Err("a write to a page just sent copy-on-write was lost");
        }
    }
    Ok(())
}

/// Hands ringsrv a ring with forged fields, pokes at it, and lets go of it; `false` if
/// this task had no room for a ring just now (nothing was sent).
fn ring_forge(r: &mut Rng, srv: u8) -> Result<bool, Broken> {
    use l4_abi::ring::{Sqe, CQ_HEAD, CQ_TAIL, ENTRIES, SQ_HEAD, SQ_TAIL};
    use l4_rt::ringclient::{SETUP_MEM, SETUP_RING};
    let entries = r.pick(&[1u32, 2, 4, 16, 64]);
    let data_pages = r.pick(&[0u64, 1, 2, 4]);
    let Ok((ring, mem, theirs)) = l4_rt::ring::create(entries, data_pages, FORGE_VA) else {
        return Ok(false); // out of quota or slots for now: nothing to forge
    };
    let pages = (l4_abi::ring::data_offset(entries) / 4096) as u64 + data_pages;
    let poke = |off: usize, v: u32| {
        // SAFETY: offsets in the first page of the ring object mapped at FORGE_VA.
        unsafe { ((FORGE_VA + off as u64) as *mut u32).write_volatile(v) }
    };
    let scribble = |r: &mut Rng| {
        let off = r.pick(&[SQ_HEAD, SQ_TAIL, CQ_HEAD, CQ_TAIL, ENTRIES]);
        poke(off, r.pick_r(&[0, 1, 3, 64, 65, 4096, 8192, u64::from(u32::MAX)]) as u32);
    };
    let start = r.pick_r(&[0, u64::from(u32::MAX) - 2]) as u32;
    ring.reset_indices(start);
    for i in 0..entries.min(16) {
        let s = Sqe {
            opcode: r.pick_r(&[0, 1, 2, 3, 4, 5]) as u8,
            flags: r.next() as u8,
            // Its own sequence number or not (the server must survive both).
            seq: r.pick_r(&[0, u64::from(start.wrapping_add(i).wrapping_add(1) as u16), u64::from(u16::MAX)]) as u16,
            len: r.pick_r(&[0, 1, 4096, data_pages * 4096, data_pages * 4096 + 1, u64::from(u32::MAX)]) as u32,
            user_data: r.next(),
            offset: r.pick_r(&[0, 1, 4095, data_pages * 4096, u64::MAX]),
            inline: [r.next(), r.below(4), r.next(), 0, 0],
        };
        let off = l4_abi::ring::sqe_offset(entries, start.wrapping_add(i));
        // SAFETY: a submission slot inside the ring object mapped at FORGE_VA.
        unsafe { ((FORGE_VA + off as u64) as *mut Sqe).write_volatile(s) };
    }
    poke(SQ_TAIL, start.wrapping_add(r.pick_r(&[0, 1, u64::from(entries), u64::from(entries) + 1]) as u32));
    if r.below(2) == 0 {
        scribble(r);
    }
    let claimed = r.pick_r(&[0, data_pages, data_pages + 1, 1 << 20, u64::MAX]);
    let polling = r.below(2);
    let spin = r.pick_r(&[0, 10, 1000, u64::MAX]);
    let result = (|| {
        ipc::call(srv, &Msg::new(SETUP_RING, &[]).with_cap(theirs))?;
        ipc::call(srv, &Msg::new(SETUP_MEM, &[polling, spin, claimed]).with_cap(mem))
    })();
    let _ = sys::cap_delete(theirs);
    match result {
        Ok(reply) if reply.words[0] == 1 => {
            // Served: wake it a few times with more garbage in between.
            for _ in 0..r.below(4) {
                scribble(r);
                let _ = l4_rt::ring::enter(ring.slot, 0, false);
            }
        }
        Ok(_) => {}
        Err(_) => return Err("ringsrv did not answer the setup of a forged ring"),
    }
    let _ = sys::mem_unmap(FORGE_VA, pages);
    let _ = sys::cap_delete(mem);
    let _ = sys::cap_delete(ring.slot);
    Ok(true)
}

/// A well-formed ring, four echoes: ringsrv must still serve.
fn ring_health(srv: u8) -> Result<(), Broken> {
    use l4_abi::ring::{op, status, Cqe, Sqe};
    let c = match l4_rt::ringclient::Client::connect(srv, HEALTH_VA, 16, 1, false, 0, 0) {
        Ok(c) => c,
        // This task's own capability table or quota is full for now (the random calls
        // fill it): no ring to check with; the run's last check makes room first.
        Err(Error::NoSlots | Error::Quota | Error::OutOfMemory) => return Ok(()),
        Err(Error::BadArgument) => return Err("ringsrv refused a well-formed ring after forged ones"),
        Err(_) => return Err("ringsrv did not answer the setup of a well-formed ring after forged ones"),
    };
    let sqes: [Sqe; 4] = core::array::from_fn(|i| Sqe {
        opcode: op::ECHO,
        user_data: i as u64,
        inline: [i as u64 * 7, 1, 0, 0, 0],
        ..Sqe::default()
    });
    let mut out = [Cqe::default(); 4];
    let ok = c.ring.data_len == 4096
        && c.batch(&sqes, &mut out).is_ok()
        && out
            .iter()
            .zip(&sqes)
            .all(|(c, s)| c.user_data == s.user_data && c.result == status::OK && c.value == [s.inline[0], 1]);
    c.close();
    if ok {
        Ok(())
    } else {
        Err("ringsrv answered a well-formed ring wrongly after forged ones")
    }
}

fn fnv(h: u64, x: u64) -> u64 {
    (h ^ x).wrapping_mul(0x0000_0100_0000_01b3)
}

fn main() -> u64 {
    let (seed, count) = l4_rt::start_args();
    // Bit 63 of the count: print every call before making it (`fuzz verbose`), to find
    // the call that never returns if the kernel ever hangs.
    let verbose = count >> 63 != 0;
    let count = count & !(1 << 63);
    let count = if count == 0 { 10_000 } else { count };
    println!("fuzz: seed {} count {}", seed, count);
    let setup = || -> Result<Targets, Error> {
        let responder_ep = sys::endpoint_create()?;
        let notification = sys::notify_create()?;
        thread::spawn(RESPONDER_STACK, 16, 0, responder, responder_ep as u64)?;
        // Stacks for the short threads (one page each, at the top of each 1 MiB slot).
        for i in 1..=8u64 {
            sys::mem_map(SHORT_STACKS + i * 0x10_0000 - 4096, 1)?;
        }
        let (ring, _mem, server) = l4_rt::ring::create(64, 1, RING_VA)?;
        let obj = sys::mem_create(OBJ_PAGES)?;
        sys::mem_map_obj(obj, OBJ_A)?;
        sys::mem_map_obj(obj, OBJ_B)?;
        sys::mem_map(ZONE, ZONE_PAGES)?;
        // A writer on the other vCPU, if there is one (on one vCPU it would only halve
        // the fuzzer's speed: there is no second CPU to race with).
        let writer = match thread::spawn(WRITER_STACK, 4, 1, writer, 0) {
            Ok(()) => true,
            Err(Error::BadArgument) => false,
            Err(e) => return Err(e),
        };
        let ringsrv = names::wait_for("ring", 10)?;
        Ok(Targets {
            responder: responder_ep,
            notification,
            ring: [ring.slot, server],
            protected: [l4_abi::bootinfo::PARENT_SLOT, responder_ep, notification, ringsrv.unwrap_or(0)],
            ringsrv,
            writer,
        })
    };
    let t = match setup() {
        Ok(t) => t,
        Err(e) => {
            println!("fuzz: cannot set up: {}", e.name());
            let _ = names::done(1);
            return 1;
        }
    };
    let mut r = Rng::new(seed);
    let mut digest = 0xcbf2_9ce4_8422_2325u64;
    let mut errors = [0u64; 16];
    let fail = |step: u64, why: &str| {
        println!("fuzz: FAIL seed {} step {}: {}", seed, step, why);
        let _ = names::done(1);
        1
    };
    let mut attacks = [0u64; 3];
    for step in 0..count {
        // One step in 32 is an attack with a check of its own instead of a call.
        let attack = if r.below(32) == 0 { Some(r.below(3) as usize) } else { None };
        if let Some(a) = attack {
            digest = fnv(digest, 0xa77ac0 + a as u64);
            if verbose {
                println!("fuzz: step {}: attack {}", step, a);
            }
            // Whether the attack was made (a ring needs room in this task, and ringsrv).
            let done = match (a, t.ringsrv) {
                (0, _) => cow_shared(&mut r, &t).map(|()| true),
                (1, _) => cow_race(&mut r, &t, step).map(|()| true),
                (_, Some(srv)) => ring_forge(&mut r, srv).and_then(|sent| {
                    // Every 64th forged ring, a well-formed one must still be served.
                    if sent && attacks[2] % 64 == 63 {
                        ring_health(srv).map(|()| sent)
                    } else {
                        Ok(sent)
                    }
                }),
                (_, None) => Ok(false),
            };
            match done {
                Err(why) => return fail(step, why),
                Ok(made) => attacks[a] += u64::from(made),
            }
            continue;
        }
        let c = draw(&mut r, &t);
        for x in [c.n, c.rdi, c.rsi].iter().chain(c.w.iter()) {
            digest = fnv(digest, *x);
        }
        // Sometimes scribble on our ring's indices, so that RingEnter meets garbage.
        if r.below(8) == 0 {
            use l4_abi::ring::{CQ_HEAD, CQ_TAIL, SQ_HEAD, SQ_TAIL};
            let off = r.pick(&[SQ_HEAD, SQ_TAIL, CQ_HEAD, CQ_TAIL]) as u64;
            let v = r.pick_r(&[0, 1, 64, 65, u64::from(u32::MAX)]) as u32;
            digest = fnv(digest, off ^ u64::from(v) << 16);
            // SAFETY: the ring's memory object is mapped writable at RING_VA for the whole
            // run (nothing the fuzzer draws unmaps it: no address it draws falls there);
            // the indices are u32s at these offsets in its first page.
            unsafe { ((RING_VA + off) as *mut u32).write_volatile(v) };
        }
        // Random RFLAGS too (NT, AC, DF, the arithmetic flags): `syscall` keeps what the
        // user set unless the kernel masks it (NT once crashed the kernel's iretq).
        let flags = if r.below(2) == 0 { r.next() & sys::USER_SETTABLE_RFLAGS } else { 0 };
        digest = fnv(digest, flags);
        if verbose {
            println!("fuzz: step {}: call {} ({:#x}, {:#x}, {:x?}) rflags {:#x}", step, c.n, c.rdi, c.rsi, c.w, flags);
        }
        let ret = sys::raw_number_flags(c.n, c.rdi, c.rsi, c.w, flags);
        match ret.rax {
            0 => errors[0] += 1,
            e => match Error::from_u64(e) {
                Some(e) => errors[(e as usize).min(15)] += 1,
                None => {
                    println!(
                        "fuzz: FAIL seed {} step {}: call {} ({:#x}, {:#x}, {:x?}) returned {:#x}, not a defined result",
                        seed, step, c.n, c.rdi, c.rsi, c.w, e
                    );
                    let _ = names::done(1);
                    return 1;
                }
            },
        }
        // Keep the capability table from filling for good: drop a few unprotected slots.
        if r.below(8) == 0 {
            let s = r.below(64) as u8;
            if !t.protected.contains(&s) {
                let _ = sys::cap_delete(s);
            }
        }
    }
    STOP.store(true, Ordering::Relaxed);
    // Room in our capability table for the last ring check.
    for s in 0..64u8 {
        if !t.protected.contains(&s) {
            let _ = sys::cap_delete(s);
        }
    }
    if let Some(srv) = t.ringsrv {
        if let Err(why) = ring_health(srv) {
            return fail(count, why);
        }
    }
    let (broken, lost) = (SNAPSHOT_BROKEN.load(Ordering::Relaxed), WRITER_LOST.load(Ordering::Relaxed));
    // The race needs the writer to have run: with a second vCPU it must have written.
    if t.writer && WRITES.load(Ordering::Relaxed) == 0 {
        return fail(count, "the writer on the other vCPU never wrote: nothing was raced");
    }
    if broken != 0 || lost != 0 {
        return fail(
            count,
            if broken != 0 {
                "a copy-on-write copy changed while its receiver looked"
            } else {
                "the writer lost a write"
            },
        );
    }
    println!(
        "fuzz: {} steps done, {} calls, every one came back with a defined result (seed {}, digest {:#x})",
        count,
        count - attacks.iter().sum::<u64>(),
        seed,
        digest
    );
    println!(
        "fuzz: attacks: {} copy-on-write sends of a memory object mapped twice (each refused with Shared), {} \
         copy-on-write sends raced by {} ({} writes there, none lost; every copy unchanged), {} forged rings to \
         ringsrv (it served well-formed ones after them{})",
        attacks[0],
        attacks[1],
        if t.writer { "a writer on the other vCPU" } else { "no second vCPU" },
        WRITES.load(Ordering::Relaxed),
        attacks[2],
        if t.ringsrv.is_some() { "" } else { "; ringsrv did not run: none sent" }
    );
    println!(
        "fuzz: results: ok {}, invalid syscall {}, invalid cap {}, wrong type {}, no rights {}, bad argument {}, \
         bad address {}, out of memory {}, no slots {}, partner gone {}, other {}",
        errors[0],
        errors[1],
        errors[2],
        errors[3],
        errors[4],
        errors[5],
        errors[6],
        errors[7],
        errors[8],
        errors[9],
        errors[10..].iter().sum::<u64>()
    );
    let _ = names::done(0);
    0
}
