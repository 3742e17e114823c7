//! Host tests of the kernel's objects and system calls, against a fake platform: IPC with
//! direct switch, badges, FIFO order, capability transfer, errors, faults, killing tasks
//! in the middle of a call, and frame accounting.

use l4_abi::syscall::{rights, Error, MsgInfo, Sysno, FAULT_LABEL};

use super::*;
use crate::cap::{Cap, Kind, Object};
use crate::ipc::Waiting;
use crate::mm::phys::fake::FakeMem;
use crate::mm::vspace;
use crate::mm::PhysMem;
use crate::quota::Account;
use crate::syscall::CAP_ARGS;
use crate::task::sched::Next;

const BOOT_BASE: u64 = 0x4000_0000;

struct FakePlatform {
    mem: FakeMem,
    boot: Vec<u8>,
    console: Vec<u8>,
    exited: Option<u8>,
    /// `bounce_root` calls.
    bounces: u32,
    /// `flush_tlb` calls.
    flushes: u32,
}

impl FakePlatform {
    /// A platform whose boot-file memory holds `boot`.
    fn booting(boot: Vec<u8>) -> Self {
        FakePlatform { mem: FakeMem::default(), boot, console: Vec::new(), exited: None, bounces: 0, flushes: 0 }
    }

    fn in_boot(&self, pa: u64, len: usize) -> bool {
        pa >= BOOT_BASE && pa + len as u64 <= BOOT_BASE + self.boot.len() as u64
    }
}

impl PhysMem for FakePlatform {
    fn read_u64(&self, pa: u64) -> u64 {
        self.mem.read_u64(pa)
    }
    fn write_u64(&mut self, pa: u64, v: u64) {
        self.mem.write_u64(pa, v)
    }
    fn read_bytes(&self, pa: u64, buf: &mut [u8]) {
        if self.in_boot(pa, buf.len()) {
            let o = (pa - BOOT_BASE) as usize;
            buf.copy_from_slice(&self.boot[o..o + buf.len()]);
        } else {
            self.mem.read_bytes(pa, buf)
        }
    }
    fn write_bytes(&mut self, pa: u64, b: &[u8]) {
        self.mem.write_bytes(pa, b)
    }
    fn zero_frame(&mut self, pa: u64) {
        self.mem.zero_frame(pa)
    }
}

impl Platform for FakePlatform {
    fn table<T: Copy>(&mut self, _: u64, n: usize, init: T) -> &'static mut [T] {
        Box::leak(vec![init; n].into_boxed_slice())
    }
    fn console(&mut self, b: &[u8]) {
        self.console.extend_from_slice(b);
    }
    fn phys_slice(&self, pa: u64, len: u64) -> Option<&[u8]> {
        self.in_boot(pa, len as usize).then(|| &self.boot[(pa - BOOT_BASE) as usize..(pa - BOOT_BASE + len) as usize])
    }
    fn machine_exit(&mut self, code: u8) {
        self.exited = Some(code);
    }
    fn flush_tlb(&mut self, _: u64, _: u64) {
        self.flushes += 1;
    }
    fn retire_root(&mut self, _: u64) {}
    fn bounce_root(&mut self, _: u64) {
        self.bounces += 1;
    }
    fn trace(&mut self, _: u64) -> Option<u64> {
        Some(u64::from(u32::MAX))
    }
}

/// A minimal server image: one code page at 0x400000.
fn tiny_elf() -> Vec<u8> {
    let mut b = vec![0u8; 64 + 56];
    b[..4].copy_from_slice(b"\x7fELF");
    b[4] = 2;
    b[5] = 1;
    b[16..18].copy_from_slice(&2u16.to_le_bytes());
    b[18..20].copy_from_slice(&62u16.to_le_bytes());
    b[24..32].copy_from_slice(&0x400000u64.to_le_bytes());
    b[32..40].copy_from_slice(&64u64.to_le_bytes());
    b[54..56].copy_from_slice(&56u16.to_le_bytes());
    b[56..58].copy_from_slice(&1u16.to_le_bytes());
    let p = 64;
    b[p..p + 4].copy_from_slice(&1u32.to_le_bytes());
    b[p + 4..p + 8].copy_from_slice(&5u32.to_le_bytes());
    b[p + 8..p + 16].copy_from_slice(&120u64.to_le_bytes());
    b[p + 16..p + 24].copy_from_slice(&0x400000u64.to_le_bytes());
    b[p + 32..p + 40].copy_from_slice(&4u64.to_le_bytes());
    b[p + 40..p + 48].copy_from_slice(&0x1000u64.to_le_bytes());
    b.extend_from_slice(&[0xeb, 0xfe, 0x90, 0x90]); // jmp .
    b
}

/// A kernel with `n` tasks spawned from the tiny image, all at priority 5.
fn setup(n: usize) -> (Box<Kernel>, FakePlatform, Vec<usize>) {
    let elf = tiny_elf();
    let mut p = FakePlatform::booting(elf.clone());
    let mut k = Box::new(Kernel::new());
    let kroot = 0x1000;
    k.init(&mut p, &[Range { start: 0x100000, end: 0x800000 }], kroot, &[0xcc, 0xc3]).unwrap();
    k.add_boot_file(BOOT_BASE, elf.len() as u64, b"tiny");
    let mut threads = Vec::new();
    for _ in 0..n {
        let (_, th) = k.spawn(&mut p, 0, 5).unwrap();
        threads.push(th);
    }
    (k, p, threads)
}

/// Runs thread `t` (as if the scheduler picked it) and makes system call `n`.
fn sys(k: &mut Kernel, p: &mut FakePlatform, t: usize, n: Sysno, rdi: u64, rsi: u64, words: &[u64]) {
    prepare(k, t, n, rdi, rsi, words);
    k.syscall(p);
}

fn result(k: &Kernel, t: usize) -> Option<Error> {
    Error::from_u64(k.threads[t].regs.rax)
}

/// Gives task of thread `t` an endpoint cap (object `ep`) with `rights` and `badge`.
fn give_ep(k: &mut Kernel, t: usize, ep: u16, rights: u64, badge: u64) -> u64 {
    let ti = k.threads[t].task as usize;
    let cap = Cap { object: Object::Endpoint(ep), rights, badge };
    k.endpoints[ep as usize].refs += 1;
    k.tasks[ti].caps.insert(cap).unwrap() as u64
}

#[test]
fn call_direct_switches_to_the_waiting_receiver_and_reply_recv_back() {
    let (mut k, mut p, th) = setup(2);
    let (client, server) = (th[0], th[1]);
    sys(&mut k, &mut p, server, Sysno::EndpointCreate, 0, 0, &[]);
    assert_eq!(result(&k, server), None);
    let srv_slot = k.threads[server].regs.rdi;
    let Object::Endpoint(ep) = k.tasks[k.threads[server].task as usize].caps.to_copy(srv_slot).unwrap().object else {
        panic!()
    };
    let cli_slot = give_ep(&mut k, client, ep, rights::SEND, 77);

    sys(&mut k, &mut p, server, Sysno::Recv, srv_slot, 0, &[]);
    assert_eq!(k.threads[server].state, ThreadState::BlockedRecv { ep });
    let words = [1, 2, 3, 4, 5, 6, 7, 8];
    sys(&mut k, &mut p, client, Sysno::Call, cli_slot, MsgInfo::new(9, 8).0, &words);
    // Direct switch: the server runs next, with the message and the caller's badge.
    assert_eq!(k.current(), Some(server));
    assert_eq!(k.threads[client].state, ThreadState::BlockedReply { server: server as u16 });
    let sr = k.threads[server].regs;
    assert_eq!((sr.rax, sr.rdi, MsgInfo(sr.rsi).label(), MsgInfo(sr.rsi).words()), (0, 77, 9, 8));
    assert_eq!((0..8).map(|i| sr.word(i)).collect::<Vec<_>>(), words);

    sys(&mut k, &mut p, server, Sysno::ReplyRecv, srv_slot, MsgInfo::new(10, 1).0, &[42]);
    assert_eq!(k.current(), Some(client), "direct switch back to the client");
    let cr = k.threads[client].regs;
    assert_eq!((cr.rax, MsgInfo(cr.rsi).label(), cr.word(0)), (0, 10, 42));
    assert_eq!(k.threads[server].state, ThreadState::BlockedRecv { ep });
}

#[test]
fn senders_are_served_in_fifo_order_with_their_badges() {
    let (mut k, mut p, th) = setup(4);
    let server = th[3];
    sys(&mut k, &mut p, server, Sysno::EndpointCreate, 0, 0, &[]);
    let srv_slot = k.threads[server].regs.rdi;
    let ep = 0;
    for (i, &c) in th[..3].iter().enumerate() {
        let s = give_ep(&mut k, c, ep, rights::SEND, 100 + i as u64);
        sys(&mut k, &mut p, c, Sysno::Call, s, MsgInfo::new(1, 1).0, &[i as u64]);
        assert!(matches!(k.threads[c].state, ThreadState::BlockedSend { call: true, .. }));
    }
    for i in 0..3u64 {
        sys(&mut k, &mut p, server, if i == 0 { Sysno::Recv } else { Sysno::ReplyRecv }, srv_slot, 0, &[]);
        let r = k.threads[server].regs;
        assert_eq!((r.rdi, r.word(0)), (100 + i, i), "FIFO order");
    }
}

#[test]
fn capabilities_travel_with_messages_only_with_grant() {
    let (mut k, mut p, th) = setup(2);
    let (a, b) = (th[0], th[1]);
    sys(&mut k, &mut p, b, Sysno::EndpointCreate, 0, 0, &[]);
    let b_slot = k.threads[b].regs.rdi;
    let a_send = give_ep(&mut k, a, 0, rights::SEND, 1);
    let a_grant = give_ep(&mut k, a, 0, rights::SEND | rights::GRANT, 1);
    sys(&mut k, &mut p, a, Sysno::EndpointCreate, 0, 0, &[]);
    let a_own = k.threads[a].regs.rdi as u8;
    // Without GRANT the send is refused up front.
    sys(&mut k, &mut p, a, Sysno::Send, a_send, MsgInfo::new(1, 0).with_cap(a_own).0, &[]);
    assert_eq!(result(&k, a), Some(Error::NoRights));
    sys(&mut k, &mut p, b, Sysno::Recv, b_slot, 0, &[]);
    sys(&mut k, &mut p, a, Sysno::Send, a_grant, MsgInfo::new(1, 0).with_cap(a_own).0, &[]);
    let got = MsgInfo(k.threads[b].regs.rsi).cap().expect("a capability arrived");
    let bt = k.threads[b].task as usize;
    assert_eq!(k.tasks[bt].caps.to_copy(got as u64).unwrap().object, Object::Endpoint(1));
    assert_eq!(k.endpoints[1].refs, 2, "the copy counts");
}

#[test]
fn every_bad_argument_is_a_typed_error() {
    let (mut k, mut p, th) = setup(1);
    let t = th[0];
    sys(&mut k, &mut p, t, Sysno::Call, 5, 0, &[]);
    assert_eq!(result(&k, t), Some(Error::InvalidCap));
    sys(&mut k, &mut p, t, Sysno::Call, u64::MAX, 0, &[]);
    assert_eq!(result(&k, t), Some(Error::InvalidCap));
    k.tasks[0].caps.set(3, Cap::new(Object::Task(0), rights::ALL)).unwrap();
    sys(&mut k, &mut p, t, Sysno::Recv, 3, 0, &[]);
    assert_eq!(result(&k, t), Some(Error::WrongType));
    let s = give_ep(&mut k, t, 0, rights::SEND, 0);
    sys(&mut k, &mut p, t, Sysno::Recv, s, 0, &[]);
    assert_eq!(result(&k, t), Some(Error::NoRights));
    let mut regs = k.threads[t].regs;
    regs.rax = 999;
    k.threads[t].regs = regs;
    k.syscall(&mut p);
    assert_eq!(result(&k, t), Some(Error::InvalidSyscall));
    sys(&mut k, &mut p, t, Sysno::DebugWrite, 0xffff_8000_0000_0000, 8, &[]);
    assert_eq!(result(&k, t), Some(Error::BadAddress), "kernel memory");
    sys(&mut k, &mut p, t, Sysno::DebugWrite, 0x1234_0000, 8, &[]);
    assert_eq!(result(&k, t), Some(Error::BadAddress), "unmapped");
    sys(&mut k, &mut p, t, Sysno::MemMap, 0x1001, 1, &[]);
    assert_eq!(result(&k, t), Some(Error::BadAddress), "unaligned");
    sys(&mut k, &mut p, t, Sysno::MemMap, 0x400000, 1, &[]);
    assert_eq!(result(&k, t), Some(Error::Exists));
    sys(&mut k, &mut p, t, Sysno::MachineExit, s, 0, &[]);
    assert_eq!(result(&k, t), Some(Error::WrongType));
    assert_eq!(p.exited, None);
    sys(&mut k, &mut p, t, Sysno::DebugWrite, 0x400000, 4, &[]);
    assert_eq!(result(&k, t), None);
    assert_eq!(p.console, vec![0xeb, 0xfe, 0x90, 0x90]);
}

#[test]
fn killing_a_caller_mid_call_makes_the_reply_fail_and_the_reverse() {
    let (mut k, mut p, th) = setup(3);
    let (client, server, other) = (th[0], th[1], th[2]);
    sys(&mut k, &mut p, server, Sysno::EndpointCreate, 0, 0, &[]);
    let ss = k.threads[server].regs.rdi;
    let cs = give_ep(&mut k, client, 0, rights::SEND, 0);
    sys(&mut k, &mut p, server, Sysno::Recv, ss, 0, &[]);
    sys(&mut k, &mut p, client, Sysno::Call, cs, 0, &[]);
    assert_eq!(k.current(), Some(server));
    let ct = k.threads[client].task as usize;
    k.kill_task(&mut p, ct);
    sys(&mut k, &mut p, server, Sysno::ReplyRecv, ss, 0, &[]);
    assert_eq!(result(&k, server), Some(Error::PartnerGone), "the caller is gone");

    // The reverse: the server dies while a client waits for its reply.
    let os = give_ep(&mut k, other, 0, rights::SEND, 0);
    sys(&mut k, &mut p, server, Sysno::Recv, ss, 0, &[]);
    sys(&mut k, &mut p, other, Sysno::Call, os, 0, &[]);
    let st = k.threads[server].task as usize;
    k.kill_task(&mut p, st);
    assert_eq!(result(&k, other), Some(Error::PartnerGone));
    assert_eq!(k.threads[other].state, ThreadState::Ready);
}

#[test]
fn a_fault_becomes_a_message_to_the_fault_handler() {
    let (mut k, mut p, th) = setup(2);
    let (victim, handler) = (th[0], th[1]);
    sys(&mut k, &mut p, handler, Sysno::EndpointCreate, 0, 0, &[]);
    let hs = k.threads[handler].regs.rdi;
    k.threads[victim].fault_ep = Some((0, 0xbad));
    k.endpoints[0].refs += 1;
    sys(&mut k, &mut p, handler, Sysno::Recv, hs, 0, &[]);
    k.make_ready(handler);
    k.current = NONE;
    k.switch_to(victim);
    k.fault(&mut p, 14, 4, 0xdead_0000);
    assert_eq!(k.threads[victim].state, ThreadState::Faulted);
    let r = k.threads[handler].regs;
    assert_eq!((r.rdi, MsgInfo(r.rsi).label()), (0xbad, FAULT_LABEL));
    assert_eq!((r.word(0), r.word(3)), (14, 0xdead_0000));
    assert!(String::from_utf8_lossy(&p.console).contains("faulted: vector 14"));
}

#[test]
fn frames_return_to_baseline_when_tasks_end() {
    let (mut k, mut p, _) = setup(0);
    let base = k.frames.used();
    let (t1, th1) = k.spawn(&mut p, 0, 5).unwrap();
    let (t2, _) = k.spawn(&mut p, 0, 5).unwrap();
    k.switch_to(th1);
    sys(&mut k, &mut p, th1, Sysno::MemMap, 0x1000_0000, 64, &[]);
    assert_eq!(result(&k, th1), None);
    sys(&mut k, &mut p, th1, Sysno::EndpointCreate, 0, 0, &[]);
    assert!(k.frames.used() > base + 64);
    k.kill_task(&mut p, t1);
    k.kill_task(&mut p, t2);
    assert_eq!(k.frames.used(), base, "every frame came back");
    assert!(k.endpoints.iter().all(|e| e.refs == 0), "the endpoint died with its last cap");
}

#[test]
fn round_robin_on_ticks_and_priority_first() {
    let (mut k, mut p, th) = setup(2);
    k.reschedule();
    let first = k.current().unwrap();
    for _ in 0..SLICE_TICKS {
        k.tick();
    }
    assert_ne!(k.current(), Some(first), "the slice ran out: the other thread runs");
    let (_, high) = k.spawn(&mut p, 0, 9).unwrap();
    k.reschedule();
    assert_eq!(k.current(), Some(high), "a higher priority runs first");
    let _ = th;
}

#[test]
fn notifications_accumulate_bits_and_wake_their_waiter() {
    let (mut k, mut p, th) = setup(2);
    let (waiter, signaller) = (th[0], th[1]);
    sys(&mut k, &mut p, waiter, Sysno::NotifyCreate, 0, 0, &[]);
    let ws = k.threads[waiter].regs.rdi;
    let ss = {
        let ti = k.threads[signaller].task as usize;
        k.notifications[0].refs += 1;
        k.tasks[ti].caps.insert(Cap { object: Object::Notification(0), rights: rights::SEND, badge: 0x100 }).unwrap()
            as u64
    };
    sys(&mut k, &mut p, signaller, Sysno::Signal, ss, 0b101, &[]);
    sys(&mut k, &mut p, waiter, Sysno::Wait, ws, 0, &[]);
    assert_eq!((result(&k, waiter), k.threads[waiter].regs.rdi), (None, 0x105), "bits and badge, at once");
    sys(&mut k, &mut p, waiter, Sysno::Wait, ws, 0, &[]);
    assert_eq!(k.threads[waiter].state, ThreadState::BlockedWait { n: 0 });
    sys(&mut k, &mut p, signaller, Sysno::Signal, ss, 0b10, &[]);
    assert_eq!(k.threads[waiter].state, ThreadState::Ready);
    assert_eq!(k.threads[waiter].regs.rdi, 0x102);
    sys(&mut k, &mut p, signaller, Sysno::Wait, ss, 0, &[]);
    assert_eq!(result(&k, signaller), Some(Error::NoRights));
}

/// Puts thread `t` in the running seat with system call `n` in its registers (no call).
fn prepare(k: &mut Kernel, t: usize, n: Sysno, rdi: u64, rsi: u64, words: &[u64]) {
    if k.current != t as u16 {
        if let Some(c) = k.current() {
            k.make_ready(c);
        }
        k.switch_to(t);
    }
    let r = &mut k.threads[t].regs;
    r.rax = n as u64;
    r.rdi = rdi;
    r.rsi = rsi;
    for (i, w) in words.iter().enumerate() {
        r.set_word(i, *w);
    }
}

/// The fast path as the arch layer calls it: with the current thread's `rax`; a full
/// message's words passed as the exit passes them.
fn fast(k: &mut Kernel) -> bool {
    let sysno = k.threads[k.current as usize].regs.rax;
    k.fastpath_copying(sysno)
}

#[test]
fn fast_path_taken_only_under_its_conditions_and_never_leaks_registers() {
    let (mut k, mut p, th) = setup(3);
    let (client, server, other) = (th[0], th[1], th[2]);
    sys(&mut k, &mut p, server, Sysno::EndpointCreate, 0, 0, &[]);
    let ss = k.threads[server].regs.rdi;
    let cs = give_ep(&mut k, client, 0, rights::SEND | rights::GRANT, 5);
    // No receiver waiting: slow path.
    prepare(&mut k, client, Sysno::Call, cs, MsgInfo::new(1, 1).0, &[9]);
    assert!(!fast(&mut k));
    sys(&mut k, &mut p, server, Sysno::Recv, ss, 0, &[]);
    k.threads[server].regs.r15 = 0x5ec2e7;
    // A capability in the message: slow path.
    prepare(&mut k, client, Sysno::Call, cs, MsgInfo::new(1, 1).with_cap(cs as u8).0, &[9]);
    assert!(!fast(&mut k));
    // A ready thread above the receiver's priority: slow path.
    k.threads[other].prio = 9;
    k.runqs[0].remove(other, 5);
    k.make_ready(other);
    prepare(&mut k, client, Sysno::Call, cs, MsgInfo::new(1, 1).0, &[9]);
    assert!(!fast(&mut k));
    k.runqs[0].remove(other, 9);
    k.threads[other].state = ThreadState::Faulted;
    // Now it qualifies.
    prepare(&mut k, client, Sysno::Call, cs, MsgInfo::new(1, 1).0, &[0x77, 1, 2, 3, 4, 5, 6, 0xfeed]);
    assert!(fast(&mut k));
    assert_eq!(k.current(), Some(server));
    let r = k.threads[server].regs;
    assert_eq!((r.rdi, r.word(0), MsgInfo(r.rsi).words()), (5, 0x77, 1));
    assert_eq!(r.r15, 0x5ec2e7, "words beyond the message are not copied (no leak)");
    assert_eq!(k.threads[client].state, ThreadState::BlockedReply { server: server as u16 });
    // ReplyRecv back: fast path, direct switch to the client.
    prepare(&mut k, server, Sysno::ReplyRecv, ss, MsgInfo::new(2, 2).0, &[10, 20]);
    assert!(fast(&mut k));
    assert_eq!(k.current(), Some(client));
    let r = k.threads[client].regs;
    assert_eq!((r.rax, r.word(0), r.word(1), MsgInfo(r.rsi).label()), (0, 10, 20, 2));
    assert_eq!(k.threads[server].state, ThreadState::BlockedRecv { ep: 0 });
    // ReplyRecv with nobody to reply to: slow path (which reports PartnerGone).
    k.threads[server].state = ThreadState::Running;
    k.ep_remove(0, server);
    prepare(&mut k, server, Sysno::ReplyRecv, ss, 0, &[]);
    assert!(!fast(&mut k));
}

/// Two tasks with an endpoint between them: (kernel, platform, sender, receiver, send
/// slot, receive slot). The receiver is waiting in `Recv`.
fn pair() -> (Box<Kernel>, FakePlatform, usize, usize, u64, u64) {
    let (mut k, mut p, th) = setup(2);
    let (a, b) = (th[0], th[1]);
    sys(&mut k, &mut p, b, Sysno::EndpointCreate, 0, 0, &[]);
    let bs = k.threads[b].regs.rdi;
    let as_ = give_ep(&mut k, a, 0, rights::SEND, 1);
    (k, p, a, b, as_, bs)
}

fn write_user(k: &Kernel, p: &mut FakePlatform, t: usize, va: u64, bytes: &[u8]) {
    let (pa, _) = vspace::translate(p, k.threads[t].root, va).unwrap();
    p.write_bytes(pa, bytes);
}

fn read_user(k: &Kernel, p: &FakePlatform, t: usize, va: u64) -> u8 {
    let (pa, _) = vspace::translate(p, k.threads[t].root, va).unwrap();
    let mut b = [0u8];
    p.read_bytes(pa, &mut b);
    b[0]
}

fn frame_of(k: &Kernel, p: &FakePlatform, t: usize, va: u64) -> u64 {
    vspace::translate(p, k.threads[t].root, va).unwrap().0 & !0xfff
}

const BUF: u64 = 0x1000_0000;
const WIN: u64 = 0x2000_0000;

#[test]
fn copy_on_write_shares_until_written_and_isolates_both_ways() {
    let (mut k, mut p, a, b, as_, bs) = pair();
    sys(&mut k, &mut p, a, Sysno::MemMap, BUF, 4, &[]);
    for i in 0..4 {
        write_user(&k, &mut p, a, BUF + i * 4096, &[b'A' + i as u8]);
    }
    sys(&mut k, &mut p, b, Sysno::SetRecvWindow, WIN, 8, &[]);
    sys(&mut k, &mut p, b, Sysno::Recv, bs, 0, &[]);
    let used = k.frames.used();
    let info = MsgInfo::new(3, 8).with_pages(MsgInfo::COW).0;
    sys(&mut k, &mut p, a, Sysno::Send, as_, info, &[0, 0, 0, 0, 0, 0, BUF, 4 * 4096]);
    assert_eq!(result(&k, a), None);
    let r = k.threads[b].regs;
    assert_eq!((r.r14, r.r15), (WIN, 4 * 4096), "where the pages landed");
    assert_eq!(MsgInfo(r.rsi).pages(), Some(MsgInfo::COW));
    assert!(k.frames.used() - used <= 3, "no data frame copied on send (at most new page tables)");
    let used = k.frames.used();
    for i in 0..4 {
        assert_eq!(frame_of(&k, &p, a, BUF + i * 4096), frame_of(&k, &p, b, WIN + i * 4096));
        assert_eq!(read_user(&k, &p, b, WIN + i * 4096), b'A' + i as u8);
    }
    // The receiver writes page 0: it gets its own copy of that page only.
    k.switch_to(b);
    k.fault(&mut p, 14, 0b111, WIN + 5);
    assert_eq!(k.threads[b].state, ThreadState::Running, "not a fault: resolved");
    write_user(&k, &mut p, b, WIN, b"b");
    assert_eq!(k.frames.used(), used + 1);
    assert_eq!(read_user(&k, &p, a, BUF), b'A', "the sender does not see the receiver's write");
    // The sender writes page 1: its own copy; the receiver keeps the old contents.
    k.make_ready(b);
    k.current = NONE;
    k.switch_to(a);
    k.fault(&mut p, 14, 0b111, BUF + 4096);
    write_user(&k, &mut p, a, BUF + 4096, b"a");
    assert_eq!(read_user(&k, &p, b, WIN + 4096), b'B', "the receiver does not see the sender's write");
    assert_eq!(k.frames.used(), used + 2);
    // Pages nobody wrote are still shared.
    for i in 2..4 {
        assert_eq!(frame_of(&k, &p, a, BUF + i * 4096), frame_of(&k, &p, b, WIN + i * 4096));
    }
    // A write fault on a page that is not copy-on-write is a real fault.
    k.fault(&mut p, 14, 0b111, 0x400000);
    assert_eq!(k.threads[a].state, ThreadState::Faulted);
}

#[test]
fn a_write_fault_on_a_page_another_cpu_already_copied_is_retried_not_a_fault() {
    // Two threads of the receiver's task write a fresh copy-on-write page on two CPUs:
    // both fault; the first fault copies the page; the second, which waited for the
    // lock, finds it writable. It used to find no COW bit and kill the task.
    let (mut k, mut p, a, b, as_, bs) = pair();
    sys(&mut k, &mut p, a, Sysno::MemMap, BUF, 1, &[]);
    sys(&mut k, &mut p, b, Sysno::SetRecvWindow, WIN, 1, &[]);
    sys(&mut k, &mut p, b, Sysno::Recv, bs, 0, &[]);
    let info = MsgInfo::new(3, 8).with_pages(MsgInfo::COW).0;
    sys(&mut k, &mut p, a, Sysno::Send, as_, info, &[0, 0, 0, 0, 0, 0, BUF, 4096]);
    k.switch_to(b);
    k.fault(&mut p, 14, 0b111, WIN + 8);
    let (used, copy) = (k.frames.used(), frame_of(&k, &p, b, WIN));
    let flushes = p.flushes;
    k.fault(&mut p, 14, 0b111, WIN + 16);
    assert_eq!(k.threads[b].state, ThreadState::Running, "retried, not a fault");
    assert_eq!((k.frames.used(), frame_of(&k, &p, b, WIN)), (used, copy), "no second copy");
    assert!(p.flushes > flushes, "the stale translation is flushed");
    assert_ne!(copy, frame_of(&k, &p, a, BUF));
}

#[test]
fn a_transfer_that_would_run_out_of_memory_for_a_page_table_moves_nothing() {
    // Two pages across a 2 MiB line of the receiver's window: the first page's table
    // exists, the second's does not, and no frame is free. The first page used to move
    // (and the sender's copy turn copy-on-write) before the second failed.
    for kind in [MsgInfo::COW, MsgInfo::GRANT] {
        let (mut k, mut p, a, b, as_, bs) = pair();
        let win = WIN + 0x1f_f000;
        sys(&mut k, &mut p, b, Sysno::MemMap, win, 1, &[]);
        sys(&mut k, &mut p, b, Sysno::MemUnmap, win, 1, &[]);
        sys(&mut k, &mut p, b, Sysno::SetRecvWindow, win, 2, &[]);
        sys(&mut k, &mut p, a, Sysno::MemMap, BUF, 2, &[]);
        write_user(&k, &mut p, a, BUF, b"x");
        sys(&mut k, &mut p, b, Sysno::Recv, bs, 0, &[]);
        let before = (vspace::lookup(&p, k.threads[a].root, BUF), vspace::lookup(&p, k.threads[a].root, BUF + 4096));
        let mut hog = Vec::new();
        while let Some(f) = k.frames.alloc(&mut p) {
            hog.push(f);
        }
        let used = k.frames.used();
        let info = MsgInfo::new(3, 8).with_pages(kind).0;
        sys(&mut k, &mut p, a, Sysno::Send, as_, info, &[0, 0, 0, 0, 0, 0, BUF, 2 * 4096]);
        assert_eq!(result(&k, a), Some(Error::OutOfMemory), "kind {kind}");
        let after = (vspace::lookup(&p, k.threads[a].root, BUF), vspace::lookup(&p, k.threads[a].root, BUF + 4096));
        assert_eq!(after, before, "the sender's pages are as they were (kind {kind})");
        assert_eq!(vspace::lookup(&p, k.threads[b].root, win), 0, "nothing arrived (kind {kind})");
        assert_eq!(k.frames.used(), used);
        assert!(k.frames.owners(&p, vspace::entry_addr(before.0)) <= 1, "no owner added");
        assert!(matches!(k.threads[b].state, ThreadState::BlockedRecv { .. }), "the receiver still waits");
        for f in hog {
            k.frames.release(&mut p, f);
        }
    }
}

#[test]
fn grant_moves_pages_and_bad_transfers_are_refused_whole() {
    let (mut k, mut p, a, b, as_, bs) = pair();
    sys(&mut k, &mut p, a, Sysno::MemMap, BUF, 2, &[]);
    write_user(&k, &mut p, a, BUF, b"g");
    let info = MsgInfo::new(3, 8).with_pages(MsgInfo::GRANT).0;
    // No receive window / too small / unaligned / unmapped: refused, nothing moved.
    sys(&mut k, &mut p, b, Sysno::Recv, bs, 0, &[]);
    sys(&mut k, &mut p, a, Sysno::Send, as_, info, &[0, 0, 0, 0, 0, 0, BUF, 2 * 4096]);
    assert_eq!(result(&k, a), Some(Error::WindowTooSmall));
    k.threads[b].win_va = WIN;
    k.threads[b].win_pages = 1;
    sys(&mut k, &mut p, a, Sysno::Send, as_, info, &[0, 0, 0, 0, 0, 0, BUF, 2 * 4096]);
    assert_eq!(result(&k, a), Some(Error::WindowTooSmall));
    k.threads[b].win_pages = 8;
    sys(&mut k, &mut p, a, Sysno::Send, as_, info, &[0, 0, 0, 0, 0, 0, BUF + 1, 4096]);
    assert_eq!(result(&k, a), Some(Error::BadAddress), "unaligned");
    sys(&mut k, &mut p, a, Sysno::Send, as_, info, &[0, 0, 0, 0, 0, 0, BUF, 3 * 4096]);
    assert_eq!(result(&k, a), Some(Error::BadAddress), "the third page is not mapped");
    sys(&mut k, &mut p, a, Sysno::Send, as_, info, &[0, 0, 0, 0, 0, 0, 0xffff_8000_0000_0000, 4096]);
    assert_eq!(result(&k, a), Some(Error::BadAddress), "kernel memory");
    assert!(vspace::translate(&p, k.threads[a].root, BUF).is_some(), "nothing moved");
    let used = k.frames.used();
    sys(&mut k, &mut p, a, Sysno::Send, as_, info, &[0, 0, 0, 0, 0, 0, BUF, 2 * 4096]);
    assert_eq!(result(&k, a), None);
    assert!(vspace::translate(&p, k.threads[a].root, BUF).is_none(), "the sender lost the page");
    assert_eq!(read_user(&k, &p, b, WIN), b'g');
    assert!(k.frames.used() - used <= 3, "pages moved, not copied (at most new page tables)");
}

#[test]
fn a_page_shared_writably_elsewhere_is_refused_copy_on_write_and_a_copy_is_a_snapshot() {
    // A memory object's page mapped in the sender: write-protecting the sender's one
    // mapping would leave the object (and its other mappings) writing the "copy" after
    // the receiver checked it. Refused (Shared), with nothing changed; grant still works.
    let (mut k, mut p, a, b, as_, bs) = pair();
    sys(&mut k, &mut p, a, Sysno::MemCreate, 1, 0, &[]);
    let slot = k.threads[a].regs.rdi;
    sys(&mut k, &mut p, a, Sysno::MemMapObj, slot, BUF, &[]);
    sys(&mut k, &mut p, a, Sysno::MemMapObj, slot, BUF + 0x10_0000, &[]);
    sys(&mut k, &mut p, b, Sysno::SetRecvWindow, WIN, 4, &[]);
    sys(&mut k, &mut p, b, Sysno::Recv, bs, 0, &[]);
    let before = vspace::lookup(&p, k.threads[a].root, BUF);
    let cow = MsgInfo::new(3, 8).with_pages(MsgInfo::COW).0;
    sys(&mut k, &mut p, a, Sysno::Send, as_, cow, &[0, 0, 0, 0, 0, 0, BUF, 4096]);
    assert_eq!(result(&k, a), Some(Error::Shared));
    assert_eq!(vspace::lookup(&p, k.threads[a].root, BUF), before, "still writable, not copy-on-write");
    assert_eq!(vspace::lookup(&p, k.threads[b].root, WIN), 0);
    // A page of the sender's own is a snapshot: what the sender writes later, through
    // any mapping it has, never reaches the receiver's copy.
    sys(&mut k, &mut p, a, Sysno::MemMap, BUF + 0x20_0000, 1, &[]);
    write_user(&k, &mut p, a, BUF + 0x20_0000, b"s");
    sys(&mut k, &mut p, a, Sysno::Send, as_, cow, &[0, 0, 0, 0, 0, 0, BUF + 0x20_0000, 4096]);
    assert_eq!(result(&k, a), None);
    k.current = NONE;
    k.switch_to(a);
    k.fault(&mut p, 14, 0b111, BUF + 0x20_0000);
    write_user(&k, &mut p, a, BUF + 0x20_0000, b"t");
    assert_eq!(read_user(&k, &p, b, WIN), b's');
    // Pages that are copy-on-write already may be sent so again: every mapping of them is.
    sys(&mut k, &mut p, a, Sysno::MemMap, BUF + 0x30_0000, 1, &[]);
    for _ in 0..2 {
        sys(&mut k, &mut p, b, Sysno::Recv, bs, 0, &[]);
        sys(&mut k, &mut p, a, Sysno::Send, as_, cow, &[0, 0, 0, 0, 0, 0, BUF + 0x30_0000, 4096]);
        assert_eq!(result(&k, a), None);
    }
}

#[test]
fn memory_objects_are_shared_both_ways_and_freed_with_the_last_owner() {
    let (mut k, mut p, a, b, _, _) = pair();
    let base = k.frames.used();
    sys(&mut k, &mut p, a, Sysno::MemCreate, 3, 0, &[]);
    assert_eq!(result(&k, a), None);
    let slot = k.threads[a].regs.rdi;
    sys(&mut k, &mut p, a, Sysno::MemMapObj, slot, BUF, &[]);
    assert_eq!(result(&k, a), None);
    // Give b a copy of the capability and map it there too.
    let cap = k.tasks[k.threads[a].task as usize].caps.to_copy(slot).unwrap();
    k.add_ref(cap);
    let bslot = k.tasks[k.threads[b].task as usize].caps.insert(cap).unwrap() as u64;
    sys(&mut k, &mut p, b, Sysno::MemMapObj, bslot, WIN, &[]);
    write_user(&k, &mut p, a, BUF + 4096 * 2, b"x");
    assert_eq!(read_user(&k, &p, b, WIN + 4096 * 2), b'x', "a's write is visible to b");
    write_user(&k, &mut p, b, WIN, b"y");
    assert_eq!(read_user(&k, &p, a, BUF), b'y', "and b's to a");
    sys(&mut k, &mut p, a, Sysno::MemMapObj, slot, BUF, &[]);
    assert_eq!(result(&k, a), Some(Error::Exists));
    // Drop everything: back to where we started.
    sys(&mut k, &mut p, a, Sysno::CapDelete, slot, 0, &[]);
    let (ta, tb) = (k.threads[a].task as usize, k.threads[b].task as usize);
    assert!(k.frames.used() > base, "the mappings still own the pages");
    k.kill_task(&mut p, ta);
    k.kill_task(&mut p, tb);
    let (_, _, th) = (0, 0, 0);
    let _ = th;
    assert!(k.memobjs.iter().all(|m| m.refs == 0));
    // Two tasks were spawned by `pair`: their own frames went too.
    let (mut k2, _p2, _) = setup(0);
    let _ = &mut k2;
    assert_eq!(k.frames.used(), k2.frames.used(), "accounting back to a kernel with no tasks");
}

#[test]
fn non_blocking_send_and_receive() {
    let (mut k, mut p, a, b, as_, bs) = pair();
    sys(&mut k, &mut p, a, Sysno::SendNB, as_, 0, &[]);
    assert_eq!(result(&k, a), Some(Error::WouldBlock));
    assert_eq!(k.threads[a].state, ThreadState::Running);
    sys(&mut k, &mut p, b, Sysno::RecvNB, bs, 0, &[]);
    assert_eq!(result(&k, b), Some(Error::WouldBlock));
    sys(&mut k, &mut p, b, Sysno::Recv, bs, 0, &[]);
    sys(&mut k, &mut p, a, Sysno::SendNB, as_, MsgInfo::new(4, 1).0, &[11]);
    assert_eq!(result(&k, a), None);
    assert_eq!(k.threads[b].regs.word(0), 11);
}

#[test]
fn long_messages_travel_through_the_ipc_buffers() {
    let (mut k, mut p, a, b, as_, bs) = pair();
    let words: Vec<u64> = (0..120).map(|i| i * 1000 + 7).collect();
    let (ba, bb) = (k.threads[a].ipc_buffer, k.threads[b].ipc_buffer);
    assert!(ba != 0 && bb != 0 && ba != bb);
    for (i, w) in words.iter().enumerate().skip(8) {
        p.write_u64(ba + 8 * i as u64, *w);
    }
    sys(&mut k, &mut p, b, Sysno::Recv, bs, 0, &[]);
    sys(&mut k, &mut p, a, Sysno::Send, as_, MsgInfo::new(5, 120).0, &words[..8]);
    let r = k.threads[b].regs;
    assert_eq!(MsgInfo(r.rsi).words(), 120);
    for (i, w) in words.iter().enumerate() {
        let got = if i < 8 { r.word(i) } else { p.read_u64(bb + 8 * i as u64) };
        assert_eq!(got, *w, "word {i}");
    }
}

#[test]
fn ring_enter_waits_wakes_refuses_garbage_and_reports_a_dead_client() {
    use l4_abi::ring as ra;
    use l4_abi::syscall::RING_SERVER;
    let (mut k, mut p, th) = setup(2);
    let (client, server) = (th[0], th[1]);
    sys(&mut k, &mut p, client, Sysno::RingCreate, 16, 1, &[]);
    assert_eq!(result(&k, client), None);
    let (cslot, mslot, sslot) = (k.threads[client].regs.rdi, k.threads[client].regs.rsi, k.threads[client].regs.rdx);
    // Hand the server its capability.
    let ct = k.threads[client].task as usize;
    let scap = k.tasks[ct].caps.take(sslot).unwrap();
    let st = k.threads[server].task as usize;
    let sslot = k.tasks[st].caps.insert(scap).unwrap() as u64;
    let Object::Memory(m) = k.tasks[ct].caps.to_copy(mslot).unwrap().object else { panic!() };
    let f = k.memobj_page(&p, m as usize, 0);
    let rd = |p: &FakePlatform, off: usize| {
        let mut b = [0u8; 4];
        p.read_bytes(f + off as u64, &mut b);
        u32::from_le_bytes(b)
    };
    assert_eq!(rd(&p, ra::ENTRIES), 16);
    // The client's capability cannot serve, the server's cannot submit.
    sys(&mut k, &mut p, client, Sysno::RingEnter, cslot, 0, &[1, RING_SERVER]);
    assert_eq!(result(&k, client), Some(Error::NoRights));
    // The server waits for a submission.
    sys(&mut k, &mut p, server, Sysno::RingEnter, sslot, 0, &[1, RING_SERVER]);
    assert_eq!(k.threads[server].state, ThreadState::BlockedRing { r: 0 });
    // The client submits one entry (tail 0 -> 1) and waits for its completion.
    p.write_bytes(f + ra::SQ_TAIL as u64, &1u32.to_le_bytes());
    sys(&mut k, &mut p, client, Sysno::RingEnter, cslot, 0, &[1, 0]);
    assert!(matches!(k.threads[server].state, ThreadState::Ready | ThreadState::Running), "the server is woken");
    assert_eq!(k.threads[server].regs.rdi, 1, "with one submission pending");
    assert_eq!(k.threads[client].state, ThreadState::BlockedRing { r: 0 });
    // The server completes it (cq tail 0 -> 1) and enters: the client wakes.
    p.write_bytes(f + ra::SQ_HEAD as u64, &1u32.to_le_bytes());
    p.write_bytes(f + ra::CQ_TAIL as u64, &1u32.to_le_bytes());
    if k.current != server as u16 {
        k.runqs[0].remove(server, 5);
        k.threads[server].state = ThreadState::Running;
        k.current = server as u16;
    }
    let r = &mut k.threads[server].regs;
    (r.rax, r.rdi, r.rdx, r.r10) = (Sysno::RingEnter as u64, sslot, 0, RING_SERVER);
    k.syscall(&mut p);
    assert!(matches!(k.threads[client].state, ThreadState::Ready | ThreadState::Running));
    assert_eq!(k.threads[client].regs.rdi, 1);
    // Garbage indices are refused.
    p.write_bytes(f + ra::SQ_TAIL as u64, &1000u32.to_le_bytes());
    sys(&mut k, &mut p, server, Sysno::RingEnter, sslot, 0, &[1, RING_SERVER]);
    assert_eq!(result(&k, server), Some(Error::BadArgument));
    p.write_bytes(f + ra::SQ_TAIL as u64, &1u32.to_le_bytes());
    // The server waits again; the client dies: the server is told.
    sys(&mut k, &mut p, server, Sysno::RingEnter, sslot, 0, &[1, RING_SERVER]);
    assert_eq!(k.threads[server].state, ThreadState::BlockedRing { r: 0 });
    k.kill_task(&mut p, ct);
    assert!(matches!(k.threads[server].state, ThreadState::Ready | ThreadState::Running));
    assert_eq!(result(&k, server), Some(Error::PartnerGone));
    sys(&mut k, &mut p, server, Sysno::RingEnter, sslot, 0, &[1, RING_SERVER]);
    assert_eq!(result(&k, server), Some(Error::PartnerGone), "no client any more");
}

#[test]
fn a_second_thread_shares_the_address_space_and_capabilities_and_ends_alone() {
    let (mut k, mut p, _) = setup(0);
    let used_before_spawn = k.frames.used();
    let (_, main) = k.spawn(&mut p, 0, 5).unwrap();
    let th = [main];
    let main = th[0];
    let ti = k.threads[main].task;
    let used = k.frames.used();
    sys(&mut k, &mut p, main, Sysno::EndpointCreate, 0, 0, &[]);
    let slot = k.threads[main].regs.rdi;
    sys(&mut k, &mut p, main, Sysno::ThreadCreate, 0x400000, 0x7000_0000_0000, &[99, 0]);
    assert_eq!(result(&k, main), None);
    let second = (0..k.threads.len()).find(|&t| t != main && k.threads[t].state != ThreadState::Free).unwrap();
    let t = k.threads[second];
    assert_eq!((t.task, t.root, t.prio), (ti, k.threads[main].root, k.threads[main].prio));
    assert_eq!((t.regs.rip, t.regs.rsp, t.regs.rdi), (0x400000, 0x7000_0000_0000 - 8, 99));
    assert_eq!(t.regs.rsi, l4_abi::layout::thread_ipc_buffer(second));
    assert_eq!(k.threads[main].regs.rdi, t.regs.rsi, "the creator learns the buffer's address");
    let (pa, _) = vspace::translate(&p, t.root, t.regs.rsi).expect("its IPC buffer is mapped");
    assert_eq!(pa & !0xfff, t.ipc_buffer);
    assert_ne!(t.ipc_buffer, k.threads[main].ipc_buffer, "a buffer of its own");
    // Its buffer, and the page table of the buffers' region (the first thread's stack and
    // IPC buffer are 1 GiB above, in the same page directory).
    assert_eq!(k.frames.used(), used + 2);

    // Same-address-space IPC through the shared capability table, with direct switch.
    sys(&mut k, &mut p, second, Sysno::Recv, slot, 0, &[]);
    sys(&mut k, &mut p, main, Sysno::Call, slot, MsgInfo::new(4, 1).0, &[5]);
    assert_eq!(k.current(), Some(second));
    assert_eq!(k.threads[second].regs.word(0), 5);
    sys(&mut k, &mut p, second, Sysno::Reply, 0, MsgInfo::new(4, 1).0, &[6]);
    assert_eq!(k.threads[main].regs.word(0), 6);

    // The second thread ends: its buffer goes, the task stays.
    sys(&mut k, &mut p, second, Sysno::ThreadExit, 0, 0, &[]);
    assert_eq!(k.threads[second].state, ThreadState::Free);
    assert!(vspace::translate(&p, k.threads[main].root, l4_abi::layout::thread_ipc_buffer(second)).is_none());
    assert_eq!(k.frames.used(), used + 1, "the buffer is freed; the page table stays with the task");
    assert!(k.tasks[ti as usize].alive);
    // The last thread ends the task with its code, and every frame of the task goes.
    sys(&mut k, &mut p, main, Sysno::ThreadExit, 3, 0, &[]);
    assert!(!k.tasks[ti as usize].alive);
    assert_eq!(k.frames.used(), used_before_spawn);
    assert!(String::from_utf8_lossy(&p.console).contains("exited with code 3"));
}

#[test]
fn thread_create_checks_its_arguments() {
    let (mut k, mut p, th) = setup(1);
    let main = th[0];
    let used = k.frames.used();
    for (entry, stack, cpu, want) in [
        (0x400000, 0x7000_0000_0000, 1, Error::BadArgument), // one CPU online
        (0x400000, 0x7000_0000_0008, 0, Error::BadAddress),  // misaligned stack
        (0xffff_8000_0000_0000, 0x7000_0000_0000, 0, Error::BadAddress),
        (0x400000, 0xffff_8000_0000_0000, 0, Error::BadAddress),
        (0x400000, 0, 0, Error::BadAddress),
    ] {
        sys(&mut k, &mut p, main, Sysno::ThreadCreate, entry, stack, &[0, cpu]);
        assert_eq!(result(&k, main), Some(want), "entry {entry:#x} stack {stack:#x} cpu {cpu}");
    }
    assert_eq!(k.frames.used(), used, "nothing allocated for a refused thread");
    // Slots run out with a typed error, not a crash.
    let mut made = 0;
    loop {
        sys(&mut k, &mut p, main, Sysno::ThreadCreate, 0x400000, 0x7000_0000_0000, &[0, 0]);
        match result(&k, main) {
            None => made += 1,
            Some(e) => {
                assert_eq!(e, Error::NoSlots);
                break;
            }
        }
    }
    assert_eq!(made, k.threads.len() - 1);
}

#[test]
fn the_null_call_enters_and_optionally_switches_address_spaces() {
    let (mut k, mut p, th) = setup(1);
    sys(&mut k, &mut p, th[0], Sysno::Null, 0, 0, &[]);
    assert_eq!((result(&k, th[0]), p.bounces), (None, 0));
    sys(&mut k, &mut p, th[0], Sysno::Null, 1, 0, &[]);
    assert_eq!((result(&k, th[0]), p.bounces), (None, 1));
    sys(&mut k, &mut p, th[0], Sysno::Null, 2, 0, &[]);
    assert_eq!(result(&k, th[0]), Some(Error::BadArgument));
}

#[test]
fn callers_of_a_server_that_dies_get_partner_gone_at_once_and_ever_after() {
    let (mut k, mut p, th) = setup(3);
    let (server, a, b) = (th[0], th[1], th[2]);
    sys(&mut k, &mut p, server, Sysno::EndpointCreate, 0, 0, &[]);
    let srv_slot = k.threads[server].regs.rdi;
    let Object::Endpoint(ep) = k.tasks[k.threads[server].task as usize].caps.to_copy(srv_slot).unwrap().object else {
        panic!()
    };
    let a_slot = give_ep(&mut k, a, ep, rights::SEND, 1);
    let b_slot = give_ep(&mut k, b, ep, rights::ALL, 2);
    // The server is busy elsewhere: both calls queue.
    sys(&mut k, &mut p, a, Sysno::Call, a_slot, MsgInfo::new(1, 0).0, &[]);
    sys(&mut k, &mut p, b, Sysno::Call, b_slot, MsgInfo::new(1, 0).0, &[]);
    assert!(matches!(k.threads[a].state, ThreadState::BlockedSend { .. }));
    assert!(matches!(k.threads[b].state, ThreadState::BlockedSend { .. }));
    k.kill_task(&mut p, k.threads[server].task as usize);
    for t in [a, b] {
        assert_eq!(result(&k, t), Some(Error::PartnerGone), "a queued caller is told");
        assert!(matches!(k.threads[t].state, ThreadState::Ready | ThreadState::Running));
    }
    // The endpoint lives on (the clients hold capabilities) but is closed.
    assert_eq!(k.endpoints[ep as usize].waiting, Waiting::Closed);
    sys(&mut k, &mut p, a, Sysno::Call, a_slot, MsgInfo::new(1, 0).0, &[]);
    assert_eq!(result(&k, a), Some(Error::PartnerGone), "a later call fails at once");
    sys(&mut k, &mut p, a, Sysno::SendNB, a_slot, MsgInfo::new(1, 0).0, &[]);
    assert_eq!(result(&k, a), Some(Error::PartnerGone));
    sys(&mut k, &mut p, b, Sysno::Recv, b_slot, 0, &[]);
    assert_eq!(result(&k, b), Some(Error::PartnerGone), "nobody can wait on it either");
    sys(&mut k, &mut p, b, Sysno::ReplyRecv, b_slot, MsgInfo::new(1, 0).0, &[]);
    assert_ne!(k.threads[b].state, ThreadState::BlockedRecv { ep }, "not even through the fast path");
    // When the last capability goes, the slot is free and a new endpoint is open.
    sys(&mut k, &mut p, a, Sysno::CapDelete, a_slot, 0, &[]);
    sys(&mut k, &mut p, b, Sysno::CapDelete, b_slot, 0, &[]);
    assert_eq!(k.endpoints[ep as usize].refs, 0);
    sys(&mut k, &mut p, a, Sysno::EndpointCreate, 0, 0, &[]);
    assert_eq!(k.endpoints[ep as usize].waiting, Waiting::Nobody);
}

#[test]
fn unmapping_a_huge_sparse_range_skips_what_no_table_covers() {
    let (mut k, mut p, th) = setup(1);
    let t = th[0];
    let va = 0x60_0000_0000u64;
    sys(&mut k, &mut p, t, Sysno::MemMap, va + 300 * 4096, 1, &[]);
    sys(&mut k, &mut p, t, Sysno::MemMap, va + 40_000 * 4096, 1, &[]);
    assert_eq!(result(&k, t), None);
    let used = k.frames.used();
    let root = k.threads[t].root;
    // From a page no table covers, the next candidate is the next 2 MiB (or larger) boundary.
    assert_eq!(vspace::next_candidate(&p, root, 0x50_0000_0000), 0x50_4000_0000);
    assert_eq!(vspace::next_candidate(&p, root, va + 300 * 4096), va + 300 * 4096);
    sys(&mut k, &mut p, t, Sysno::MemUnmap, va, 65536, &[]);
    assert_eq!(result(&k, t), None);
    assert!(vspace::translate(&p, root, va + 300 * 4096).is_none());
    assert!(vspace::translate(&p, root, va + 40_000 * 4096).is_none(), "a page 160 MiB in is found too");
    // The two frames are back (the page tables stay until the address space goes).
    assert_eq!(k.frames.used(), used - 2);
}

/// Random system calls from the runnable threads of three tasks (one with a second thread
/// in its address space), aimed at memory, capabilities, IPC with pages and rings; then
/// every task is killed and the frames in use must be back where they were before the
/// tasks existed. All of them draw on one tight account, which after every call must hold
/// exactly what is live and never pass its limit. The guest's `fuzz` server does the same through the real entry path;
/// this one runs the portable kernel alone, fast enough for many seeds.
#[test]
fn random_system_calls_leave_no_frame_behind() {
    let steps: usize = std::env::var("L4_HOST_FUZZ_STEPS").ok().and_then(|v| v.parse().ok()).unwrap_or(4000);
    let seeds = match std::env::var("L4_HOST_FUZZ_SEED").ok().and_then(|v| v.parse().ok()) {
        Some(s) => s..=s,
        None => 1..=8u64,
    };
    for seed in seeds {
        host_fuzz_one(seed, steps);
    }
}

fn host_fuzz_one(seed: u64, steps: usize) {
    let elf = tiny_elf();
    let mut p = FakePlatform::booting(elf.clone());
    let mut k = Box::new(Kernel::new());
    k.init(&mut p, &[Range { start: 0x100000, end: 0x800000 }], 0x1000, &[0xcc, 0xc3]).unwrap();
    k.add_boot_file(BOOT_BASE, elf.len() as u64, b"tiny");
    let baseline = k.frames.used();
    let mut tasks = Vec::new();
    for _ in 0..3 {
        tasks.push(k.spawn(&mut p, 0, 5).unwrap().0);
    }
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut rnd = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let first = (0..k.threads.len()).find(|&t| k.threads[t].state != ThreadState::Free).unwrap();
    sys(&mut k, &mut p, first, Sysno::ThreadCreate, 0x400000, 0x7000_0000_0000, &[0, 0]);
    // Every task draws on one account, held by a task that never runs, with a little
    // more room than they hold of each kind, so that calls are refused with `Quota` too.
    // After every step the account holds exactly what is live, and never past its limit.
    let (bank, _) = k.spawn(&mut p, 0, 5).unwrap();
    // What the tables hold, counted: the meter must agree.
    let counted = |k: &Kernel| -> Counts {
        [
            k.frames.used(),
            k.tasks.iter().filter(|t| t.alive).count() as u64,
            k.threads.iter().filter(|t| t.state != ThreadState::Free).count() as u64,
            k.endpoints.iter().filter(|e| e.refs > 0).count() as u64,
            k.notifications.iter().filter(|n| n.refs > 0).count() as u64,
            k.memobjs.iter().filter(|m| m.refs > 0).count() as u64,
            k.rings.iter().filter(|r| r.refs > 0).count() as u64,
        ]
    };
    // What the accounts hold together, less what they lent each other: what is live.
    let charged = |k: &Kernel| -> [i64; RESOURCES] {
        let mut sum = [0i64; RESOURCES];
        for (_, t) in k.tasks.iter().enumerate().filter(|(i, t)| t.alive && t.account == *i as u16) {
            let lent = if t.lender == NONE { [0; RESOURCES] } else { t.acct.limit };
            for r in 0..RESOURCES {
                sum[r] += t.acct.used[r] - lent[r] as i64;
            }
        }
        sum
    };
    // Each task may spawn: the tiny image in slot 63, an endpoint of its own in slot 62
    // (for the fault and parent capabilities), a quota at QUOTA_VA.
    let arm = |k: &mut Kernel, p: &mut FakePlatform, ti: usize| {
        let th = task_thread(k, ti);
        k.tasks[ti].caps.set(63, Cap::new(Object::BootFile(0), rights::SEND)).unwrap();
        sys(k, p, th, Sysno::MemMap, QUOTA_VA, 1, &[]);
        sys(k, p, th, Sysno::EndpointCreate, 0, 0, &[]);
        if result(k, th).is_none() {
            let ep = k.tasks[ti].caps.take(k.threads[th].regs.rdi).unwrap();
            k.tasks[ti].caps.set(62, ep).unwrap();
        }
    };
    for &ti in &tasks {
        arm(&mut k, &mut p, ti);
    }
    let now = k.live();
    let room = [400, 3, 6, 12, 4, 6, 3];
    k.tasks[bank].acct = Account::new(core::array::from_fn(|i| now[i] + room[i]), now);
    for &ti in tasks.iter().chain([&bank]) {
        k.tasks[ti].account = bank as u16;
    }
    let va = |r: u64| 0x60_0000_0000 + (r % 256) * 4096;
    let (mut log, mut refused, mut accounts) = (Vec::new(), 0, 0);
    for step in 0..steps {
        let now = k.live();
        let last = &log[log.len().saturating_sub(4)..];
        assert_eq!(now, counted(&k), "seed {seed}, step {step}: the meter is not what the tables hold: {last:?}");
        assert_eq!(
            charged(&k),
            now.map(|n| n as i64),
            "seed {seed}, step {step}: the accounts are not what is live: {last:?}"
        );
        let runnable: Vec<usize> = (0..k.threads.len())
            .filter(|&t| matches!(k.threads[t].state, ThreadState::Ready | ThreadState::Running))
            .filter(|&t| k.threads[t].task as usize != bank)
            .collect();
        // Everyone blocked (or now and then anyway): a task dies and a new one starts, so
        // that deaths in every state are part of the run.
        if runnable.is_empty() || rnd() % 200 == 0 {
            // Any task but the bank (the ones the tasks spawned too); then the three the
            // run started with are made up again, as far as the account has room. As the
            // bank's own call would: charged to its account, which may be too full for a
            // new task (what a dead one shared lives on).
            let victims: Vec<usize> = (0..k.tasks.len()).filter(|&t| k.tasks[t].alive && t != bank).collect();
            k.open_account(bank);
            if !victims.is_empty() {
                let victim = victims[(rnd() % victims.len() as u64) as usize];
                log.push((step, usize::MAX, Sysno::TaskKill, victim as u64, 0, 0, 0));
                k.kill_task(&mut p, victim);
            }
            tasks.retain(|&t| k.tasks[t].alive);
            let mut fresh = Vec::new();
            while tasks.len() < 3 {
                match k.spawn(&mut p, 0, 5) {
                    Ok((ti, _)) => {
                        tasks.push(ti);
                        k.tasks[ti].account = bank as u16;
                        fresh.push(ti);
                    }
                    Err(e) => {
                        // The ceiling refused it (the frame allocator says OutOfMemory).
                        assert!(e == Error::Quota || k.frames.free() > 0, "seed {seed}, step {step}: {e:?}");
                        break;
                    }
                }
            }
            let _ = k.close_account();
            for ti in fresh {
                arm(&mut k, &mut p, ti);
            }
            if victims.is_empty() && tasks.is_empty() {
                break;
            }
            continue;
        }
        let t = runnable[(rnd() % runnable.len() as u64) as usize];
        let slot = rnd() % 64;
        let (n, rdi, rsi, w): (Sysno, u64, u64, [u64; 8]) = match rnd() % 24 {
            0 => (Sysno::MemMap, va(rnd()), 1 + rnd() % 16, [0; 8]),
            1 => (Sysno::MemUnmap, va(rnd()), 1 + rnd() % 64, [0; 8]),
            2 => (Sysno::MemCreate, 1 + rnd() % 64, 0, [0; 8]),
            3 => (Sysno::MemMapObj, slot, va(rnd()), [0; 8]),
            4 => (Sysno::SetRecvWindow, va(rnd()), 1 + rnd() % 64, [0; 8]),
            5 => (Sysno::EndpointCreate, 0, 0, [0; 8]),
            6 => (Sysno::CapDerive, slot, rnd() & 7, [rnd() % 3, 0, 0, 0, 0, 0, 0, 0]),
            7 => (Sysno::CapDelete, slot, 0, [0; 8]),
            8 | 9 | 10 => {
                let kind = [MsgInfo::COW, MsgInfo::GRANT, 0][(rnd() % 3) as usize];
                let info = MsgInfo::new(1, 8).with_pages(kind);
                let info = if rnd() % 4 == 0 { info.with_cap((rnd() % 64) as u8) } else { info };
                let mut w = [0u64; 8];
                w[6] = va(rnd());
                w[7] = 4096 * (1 + rnd() % 64);
                let n = [Sysno::Call, Sysno::SendNB, Sysno::Send][(rnd() % 3) as usize];
                (n, slot, info.0, w)
            }
            11 | 12 => ([Sysno::Recv, Sysno::RecvNB][(rnd() % 2) as usize], slot, 0, [0; 8]),
            13 => (Sysno::ReplyRecv, slot, MsgInfo::new(2, 1).0, [0; 8]),
            14 => (Sysno::Reply, 0, MsgInfo::new(2, 0).0, [0; 8]),
            15 => (Sysno::RingCreate, [1, 4, 64][(rnd() % 3) as usize], rnd() % 3, [0; 8]),
            16 => (Sysno::RingEnter, slot, 0, [0, rnd() % 2, 0, 0, 0, 0, 0, 0]),
            17 => (Sysno::ThreadCreate, 0x400000, 0x7000_0000_0000, [0; 8]),
            18 => (Sysno::ThreadExit, 0, 0, [0; 8]),
            19 => (Sysno::NotifyCreate, 0, 0, [0; 8]),
            20 => (Sysno::Signal, slot, rnd(), [0; 8]),
            21 => (Sysno::RingCreate, [1, 64, 4096][(rnd() % 3) as usize], rnd() % 8, [0; 8]),
            22 => {
                // A quota of its own (enough for the task, or now and then not), or none.
                let least = u64::from(rnd() % 8 != 0);
                let q: Counts = [
                    least * 40 + rnd() % 60,
                    least + rnd() % 2,
                    least + rnd() % 3,
                    rnd() % 6,
                    rnd() % 3,
                    rnd() % 3,
                    rnd() % 2,
                ];
                let at = vspace::translate(&p, k.threads[t].root, QUOTA_VA).map(|(pa, _)| pa);
                let quota = match at {
                    Some(pa) if rnd() % 4 != 0 => {
                        p.write_bytes(pa, &q.iter().flat_map(|w| w.to_le_bytes()).collect::<Vec<u8>>());
                        QUOTA_VA
                    }
                    _ => 0,
                };
                let (fault, parent) = if rnd() % 8 == 0 { (rnd() % 64, rnd() % 64) } else { (62, 62) };
                (Sysno::TaskSpawn, 63, 5, [fault, parent, 0, 0, quota, 0, 0, 0])
            }
            _ => (Sysno::CapGrant, slot, rnd() % 64, [0; 8]),
        };
        log.push((step, t, n, rdi, rsi, w[6], w[7]));
        sys(&mut k, &mut p, t, n, rdi, rsi, &w);
        refused += usize::from(result(&k, t) == Some(Error::Quota));
        let own = k.tasks.iter().enumerate().filter(|(i, t)| t.alive && t.account == *i as u16).count();
        accounts = accounts.max(own);
    }
    assert!(refused > 0 || steps < 1000, "seed {seed}: the account's limits were never reached");
    assert!(accounts > 1 || steps < 1000, "seed {seed}: no task ever spawned one with a quota");
    let executed = log.iter().filter(|l| l.1 != usize::MAX).count();
    assert!(executed > steps / 2, "seed {seed}: only {executed} calls made");
    // Every task, the ones the tasks spawned too.
    let _ = tasks;
    for ti in 0..k.tasks.len() {
        k.kill_task(&mut p, ti);
    }
    assert_eq!(
        k.frames.used(),
        baseline,
        "seed {seed}: frames leaked; last calls: {:?}",
        &log[log.len().saturating_sub(12)..]
    );
}

#[test]
fn pages_sent_within_one_address_space_may_not_come_from_the_receive_window() {
    // Found by the host fuzzer: a grant from a range overlapping the receiver's window (a
    // thread of the same task) freed a page before moving it, and leaked or reused it.
    let (mut k, mut p, th) = setup(1);
    let main = th[0];
    sys(&mut k, &mut p, main, Sysno::EndpointCreate, 0, 0, &[]);
    let ep = k.threads[main].regs.rdi;
    sys(&mut k, &mut p, main, Sysno::ThreadCreate, 0x400000, 0x7000_0000_0000, &[0, 0]);
    let second = (0..k.threads.len()).find(|&t| t != main && k.threads[t].state != ThreadState::Free).unwrap();
    let win = 0x60_0000_0000u64;
    sys(&mut k, &mut p, second, Sysno::SetRecvWindow, win, 4, &[]);
    sys(&mut k, &mut p, main, Sysno::MemMap, win + 4096, 2, &[]);
    let used = k.frames.used();
    sys(&mut k, &mut p, second, Sysno::Recv, ep, 0, &[]);
    for kind in [MsgInfo::GRANT, MsgInfo::COW] {
        let info = MsgInfo::new(1, 8).with_pages(kind).0;
        sys(&mut k, &mut p, main, Sysno::SendNB, ep, info, &[0, 0, 0, 0, 0, 0, win + 4096, 8192]);
        assert_eq!(result(&k, main), Some(Error::BadArgument));
    }
    assert_eq!(k.frames.used(), used);
    // From outside the window it works, and replaces what the window held.
    sys(&mut k, &mut p, main, Sysno::MemMap, win + 16 * 4096, 1, &[]);
    let info = MsgInfo::new(1, 8).with_pages(MsgInfo::GRANT).0;
    sys(&mut k, &mut p, main, Sysno::SendNB, ep, info, &[0, 0, 0, 0, 0, 0, win + 16 * 4096, 4096]);
    assert_eq!(result(&k, main), None);
    assert_eq!(k.frames.used(), used + 1, "moved, not copied");
}

/// One full-rights capability of every kind in the task of thread `t`: (kind, slot).
fn one_of_each(k: &mut Kernel, p: &mut FakePlatform, t: usize, other_task: usize) -> Vec<(Kind, u64)> {
    let ti = k.threads[t].task as usize;
    let mut slots = Vec::new();
    for (kind, call, arg) in [
        (Kind::Endpoint, Sysno::EndpointCreate, 0),
        (Kind::Notification, Sysno::NotifyCreate, 0),
        (Kind::Memory, Sysno::MemCreate, 1),
    ] {
        sys(k, p, t, call, arg, 0, &[]);
        assert_eq!(result(k, t), None, "{call:?}");
        slots.push((kind, k.threads[t].regs.rdi));
    }
    // A ring's own capabilities are client (SEND) or server (RECV): one with both.
    sys(k, p, t, Sysno::RingCreate, 4, 0, &[]);
    assert_eq!(result(k, t), None);
    let ring = Cap { rights: rights::ALL, ..k.tasks[ti].caps.to_copy(k.threads[t].regs.rdi).unwrap() };
    k.add_ref(ring);
    slots.push((Kind::Ring, k.tasks[ti].caps.insert(ring).unwrap() as u64));
    for (kind, object) in [
        (Kind::Task, Object::Task(k.threads[other_task].task)),
        (Kind::BootFile, Object::BootFile(0)),
        (Kind::Machine, Object::Machine),
    ] {
        slots.push((kind, k.tasks[ti].caps.insert(Cap::new(object, rights::ALL)).unwrap() as u64));
    }
    slots
}

/// What a failed call must leave as it was: the caller's capabilities, the frames in use,
/// the live tasks, and whether the machine was told to exit.
fn snapshot(k: &Kernel, p: &FakePlatform, t: usize) -> (Vec<(usize, Cap)>, u64, usize, Option<u8>) {
    let ti = k.threads[t].task as usize;
    (k.tasks[ti].caps.iter().collect(), k.frames.used(), k.tasks.iter().filter(|t| t.alive).count(), p.exited)
}

#[test]
fn every_capability_argument_needs_its_kind_and_each_of_its_rights() {
    for row in CAP_ARGS {
        // Each case on a fresh kernel: a success may kill, spawn or end the machine.
        let case = |take: &dyn Fn(&mut Kernel, &[(Kind, u64)], u64) -> u64| {
            let (mut k, mut p, t) = setup(2);
            let slots = one_of_each(&mut k, &mut p, t[0], t[1]);
            let full = |kind: Kind| slots.iter().find(|s| s.0 == kind).unwrap().1;
            let mut args = [0u64; 4];
            // The call's other capability arguments: full rights, right kind.
            for other in CAP_ARGS.iter().filter(|o| o.call == row.call && o.arg != row.arg && o.when.is_none()) {
                args[other.arg] = full(other.kind);
            }
            if let Some((i, v)) = row.when {
                args[i] = v;
            }
            args[row.arg] = take(&mut k, &slots, full(row.kind));
            let before = snapshot(&k, &p, t[0]);
            sys(&mut k, &mut p, t[0], row.call, args[0], args[1], &[args[2], args[3]]);
            (result(&k, t[0]), before, snapshot(&k, &p, t[0]))
        };
        let ti = |k: &Kernel| k.threads[k.current().unwrap_or(0)].task as usize;
        for right in
            [rights::SEND, rights::RECV, rights::GRANT, rights::CONTROL].into_iter().filter(|r| row.needs & r != 0)
        {
            let (r, before, after) = case(&|k, _, full| {
                let t = ti(k);
                k.tasks[t].caps.derive(full, rights::ALL & !right, 0).unwrap() as u64
            });
            assert_eq!(r, Some(Error::NoRights), "{row:?} without right {right:#x}");
            assert_eq!(before, after, "{row:?} without right {right:#x} changed something");
        }
        for kind in Kind::ALL.into_iter().filter(|&k| k != row.kind) {
            let (r, before, after) = case(&|_, slots, _| slots.iter().find(|s| s.0 == kind).unwrap().1);
            assert_eq!(r, Some(Error::WrongType), "{row:?} given a {kind:?}");
            assert_eq!(before, after, "{row:?} given a {kind:?} changed something");
        }
        // Exactly the rights named are enough.
        let (r, _, _) = case(&|k, _, full| {
            let t = ti(k);
            k.tasks[t].caps.derive(full, row.needs, 0).unwrap() as u64
        });
        assert!(
            !matches!(r, Some(Error::NoRights | Error::WrongType | Error::InvalidCap)),
            "{row:?} with exactly its rights: {r:?}"
        );
    }
}

#[test]
fn the_architecture_document_lists_every_capability_argument() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/ARCHITECTURE.md")).unwrap();
    let header = "| call | capability argument | kind | rights needed |";
    let rows: Vec<Vec<String>> = doc
        .lines()
        .skip_while(|l| *l != header)
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split('|').map(str::trim).collect();
            let call = cells[0].split('`').nth(1).unwrap_or("?").to_string();
            vec![call, cells[1].trim_matches('`').to_string(), cells[2].to_string(), cells[3].to_string()]
        })
        .collect();
    let mut want: Vec<Vec<String>> = CAP_ARGS
        .iter()
        .map(|a| {
            let kind = match a.kind {
                Kind::Endpoint => "endpoint",
                Kind::Notification => "notification",
                Kind::Task => "task",
                Kind::BootFile => "boot file",
                Kind::Memory => "memory",
                Kind::Ring => "ring",
                Kind::Machine => "machine",
            };
            let names = [
                (rights::SEND, "SEND"),
                (rights::RECV, "RECV"),
                (rights::GRANT, "GRANT"),
                (rights::CONTROL, "CONTROL"),
                (rights::TRACE, "TRACE"),
            ];
            let needs: Vec<&str> = names.iter().filter(|(r, _)| a.needs & r != 0).map(|(_, n)| *n).collect();
            vec![
                format!("{:?}", a.call),
                ["rdi", "rsi", "rdx", "r10"][a.arg].to_string(),
                kind.to_string(),
                needs.join(", "),
            ]
        })
        .collect();
    let mut got = rows.clone();
    got.sort();
    want.sort();
    assert_eq!(got, want, "docs/ARCHITECTURE.md's capability table and syscall::CAP_ARGS differ");
}

#[test]
fn a_handler_s_decision_fits_in_two_registers() {
    // The slow path returns it from every handler: in rax:rdx up to 16 bytes, bigger
    // through memory.
    assert!(core::mem::size_of::<Next>() <= 16, "{}", core::mem::size_of::<Next>());
}

#[test]
fn the_default_guest_s_tables_hold_256_tasks_1024_threads_4096_endpoints_in_about_1_percent() {
    // l4vmm's default 256 MiB, less the first MiB, the kernel and a few MiB of modules.
    let usable = (256u64 << 20) - (12 << 20);
    let c = Capacity::for_memory(usable);
    assert!(c.tasks >= 256 && c.threads >= 1024 && c.endpoints >= 4096, "{c:?}");
    assert!(c.bytes() * 100 <= 256 << 20 << 1, "{} bytes of tables on 256 MiB: {c:?}", c.bytes());
    assert_eq!(Capacity::for_memory(1 << 20), Capacity::PER_STEP, "the smallest guest gets one step");
    let huge = Capacity::for_memory(1 << 40);
    assert_eq!((huge.tasks, huge.endpoints), (Capacity::MOST, Capacity::MOST), "object numbers stay u16");
}

#[test]
fn init_makes_the_tables_its_memory_pays_for_and_counts_them_used() {
    let (k, _, _) = setup(0);
    let c = Capacity::for_memory(k.frames.total() * crate::mm::PAGE_SIZE);
    assert_eq!(
        (k.tasks.len(), k.threads.len(), k.endpoints.len(), k.notifications.len(), k.memobjs.len(), k.rings.len()),
        (c.tasks, c.threads, c.endpoints, c.notifications, c.memobjs, c.rings)
    );
    assert!(k.frames.used() * crate::mm::PAGE_SIZE >= c.bytes(), "the tables' frames are used");
    assert_eq!(k.frames.free() + k.frames.used(), k.frames.total());
    // Memory too small for the tables: a typed error, no panic.
    let mut p = FakePlatform::booting(Vec::new());
    let mut small = Box::new(Kernel::new());
    let r = small.init(&mut p, &[Range { start: 0x100000, end: 0x140000 }], 0x1000, &[0xcc, 0xc3]);
    assert_eq!(r, Err(Error::OutOfMemory));
}

// ---- quotas ---------------------------------------------------------------------------

/// Where the root task of `root_setup` keeps the quota it spawns with.
const QUOTA_VA: u64 = 0x1000_0000;

/// A root task from the tiny image (its account is the machine): the kernel, its thread,
/// and the slot of an endpoint it made (for the fault and parent capabilities).
fn root_setup() -> (Box<Kernel>, FakePlatform, usize, u64) {
    let (mut k, mut p, _) = setup(0);
    let rt = k.spawn_root(&mut p, 5, b"").unwrap();
    let th = task_thread(&k, rt);
    sys(&mut k, &mut p, th, Sysno::MemMap, QUOTA_VA, 1, &[]);
    sys(&mut k, &mut p, th, Sysno::EndpointCreate, 0, 0, &[]);
    assert_eq!(result(&k, th), None);
    let ep = k.threads[th].regs.rdi;
    (k, p, th, ep)
}

/// The first thread of task `ti`.
fn task_thread(k: &Kernel, ti: usize) -> usize {
    (0..k.threads.len()).find(|&t| k.threads[t].state != ThreadState::Free && k.threads[t].task as usize == ti).unwrap()
}

/// Thread `t` spawns the tiny image from its capability `file` with `quota` (`None`:
/// drawing on its own), at `QUOTA_VA` in its memory: the new task's slot there and its
/// thread.
fn spawn_child(
    k: &mut Kernel,
    p: &mut FakePlatform,
    t: usize,
    (file, ep): (u64, u64),
    quota: Option<Counts>,
) -> Result<(u64, usize), Error> {
    let va = match quota {
        None => 0,
        Some(q) => {
            let (pa, _) = vspace::translate(p, k.threads[t].root, QUOTA_VA).unwrap();
            let bytes: Vec<u8> = q.iter().flat_map(|w| w.to_le_bytes()).collect();
            p.write_bytes(pa, &bytes);
            QUOTA_VA
        }
    };
    sys(k, p, t, Sysno::TaskSpawn, file, 5, &[ep, ep, 0, 0, va]);
    if let Some(e) = result(k, t) {
        return Err(e);
    }
    let slot = k.threads[t].regs.rdi;
    let Object::Task(nt) = k.tasks[k.threads[t].task as usize].caps.to_copy(slot).unwrap().object else { panic!() };
    Ok((slot, task_thread(k, nt as usize)))
}

/// What `QuotaLeft` tells thread `t`.
fn left(k: &mut Kernel, p: &mut FakePlatform, t: usize) -> Counts {
    sys(k, p, t, Sysno::QuotaLeft, 0, 0, &[]);
    assert_eq!(result(k, t), None);
    let r = k.threads[t].regs;
    [r.rdi, r.rsi, r.rdx, r.r10, r.r8, r.r9, r.r12]
}

fn minus(a: Counts, b: Counts) -> Counts {
    core::array::from_fn(|i| a[i] - b[i])
}

/// Makes one thing with call `n` (arguments `rdi`, `rsi`, the next two 0) as thread `t`
/// until refused: how many were made, and the error.
fn until_refused(
    k: &mut Kernel,
    p: &mut FakePlatform,
    t: usize,
    n: Sysno,
    args: impl Fn(u64) -> (u64, u64),
) -> (u64, Error) {
    for i in 0.. {
        let (rdi, rsi) = args(i);
        sys(k, p, t, n, rdi, rsi, &[0, 0]);
        if let Some(e) = result(k, t) {
            return (i, e);
        }
    }
    unreachable!()
}

const FILE: u64 = bootinfo::FIRST_FILE_SLOT as u64;

#[test]
fn a_task_that_takes_until_refused_gets_quota_errors_at_its_quota_and_its_siblings_keep_working() {
    let (mut k, mut p, root, ep) = root_setup();
    let before = left(&mut k, &mut p, root);
    assert_eq!(before[0], k.frames.free(), "the root task's account is the machine");
    let q = [64, 1, 2, 3, 1, 1, 0];
    let (hog_slot, hog) = spawn_child(&mut k, &mut p, root, (FILE, ep), Some(q)).unwrap();
    assert_eq!(left(&mut k, &mut p, root), minus(before, q), "the quota is lent out of the root task's");
    let mine = left(&mut k, &mut p, hog);
    assert_eq!(mine[1..], [0, 1, 3, 1, 1, 0], "the task and its first thread are its own");
    assert!(mine[0] < 64 && mine[0] > 16, "its image, stack and page tables are its own: {mine:?}");

    // Each kind, until refused: with `Quota`, exactly at the quota.
    let (hk, pk) = (&mut k, &mut p);
    assert_eq!(until_refused(hk, pk, hog, Sysno::EndpointCreate, |_| (0, 0)), (3, Error::Quota));
    assert_eq!(until_refused(hk, pk, hog, Sysno::NotifyCreate, |_| (0, 0)), (1, Error::Quota));
    assert_eq!(until_refused(hk, pk, hog, Sysno::MemCreate, |_| (1, 0)), (1, Error::Quota));
    assert_eq!(until_refused(hk, pk, hog, Sysno::RingCreate, |_| (8, 0)), (0, Error::Quota));
    let threads = until_refused(hk, pk, hog, Sysno::ThreadCreate, |i| (0x400000, 0x2000_0000 + i * 0x1000));
    assert_eq!(threads, (1, Error::Quota));
    let (pages, e) = until_refused(hk, pk, hog, Sysno::MemMap, |i| (0x3000_0000 + i * 4096, 1));
    assert_eq!(e, Error::Quota, "after {pages} pages");
    assert!(hk.frames.free() > 1000, "the machine has plenty more");
    let mine = left(hk, pk, hog);
    assert_eq!(mine[1..], [0; 6]);
    assert!(mine[0] < 4, "{mine:?}");
    // A refused call changes nothing.
    let used = hk.frames.used();
    sys(hk, pk, hog, Sysno::MemMap, 0x3800_0000, 8, &[]);
    assert_eq!((result(hk, hog), hk.frames.used()), (Some(Error::Quota), used));

    // A sibling drawing on the root task's account works as if the hog were not there.
    let (sib_slot, sib) = spawn_child(hk, pk, root, (FILE, ep), None).unwrap();
    for (n, rdi, rsi) in [(Sysno::EndpointCreate, 0, 0), (Sysno::NotifyCreate, 0, 0), (Sysno::MemMap, 0x3000_0000, 16)]
    {
        sys(hk, pk, sib, n, rdi, rsi, &[]);
        assert_eq!(result(hk, sib), None, "{n:?}");
    }
    sys(hk, pk, sib, Sysno::RingCreate, 8, 0, &[]);
    assert_eq!(result(hk, sib), None);
    assert_eq!(left(hk, pk, sib), left(hk, pk, root), "the sibling draws on the root task's account");

    // Both end: the root task's account is back where it was, to the frame.
    for slot in [hog_slot, sib_slot] {
        sys(hk, pk, root, Sysno::TaskKill, slot, 0, &[]);
        assert_eq!(result(hk, root), None);
    }
    assert_eq!(left(hk, pk, root), before);
}

#[test]
fn a_quota_that_does_not_fit_or_cannot_pay_for_the_task_changes_nothing() {
    let (mut k, mut p, root, ep) = root_setup();
    let before = left(&mut k, &mut p, root);
    let (used, tasks) = (k.frames.used(), k.tasks.iter().filter(|t| t.alive).count());
    let too_much = [before[0] + 1, 1, 1, 0, 0, 0, 0];
    let no_room = [3, 1, 1, 0, 0, 0, 0];
    let no_thread = [64, 1, 0, 0, 0, 0, 0];
    for q in [too_much, no_room, no_thread] {
        assert_eq!(spawn_child(&mut k, &mut p, root, (FILE, ep), Some(q)).err(), Some(Error::Quota), "{q:?}");
        assert_eq!(left(&mut k, &mut p, root), before, "{q:?}");
        assert_eq!((k.frames.used(), k.tasks.iter().filter(|t| t.alive).count()), (used, tasks), "{q:?}");
    }
    sys(&mut k, &mut p, root, Sysno::TaskSpawn, FILE, 5, &[ep, ep, 0, 0, 0x5000_0000]);
    assert_eq!(result(&k, root), Some(Error::BadAddress), "an unmapped quota");
}

#[test]
fn what_outlives_a_task_is_charged_where_its_quota_came_from() {
    let (mut k, mut p, root, ep) = root_setup();
    let before = left(&mut k, &mut p, root);
    let root_task = k.threads[root].task;
    let (_, child) = spawn_child(&mut k, &mut p, root, (FILE, ep), Some([128, 2, 2, 1, 0, 0, 0])).unwrap();
    let ct = k.threads[child].task as usize;
    // The child may spawn and give capabilities to the root task.
    let file = k.tasks[ct].caps.insert(Cap::new(Object::BootFile(0), rights::SEND)).unwrap() as u64;
    let to_root = k.tasks[ct].caps.insert(Cap::new(Object::Task(root_task), rights::GRANT)).unwrap() as u64;
    // Its endpoint goes to the root task; a grandchild gets part of its quota.
    sys(&mut k, &mut p, child, Sysno::EndpointCreate, 0, 0, &[]);
    let child_ep = k.threads[child].regs.rdi;
    sys(&mut k, &mut p, child, Sysno::CapGrant, to_root, child_ep, &[]);
    assert_eq!(result(&k, child), None);
    let root_copy = k.threads[child].regs.rdi;
    sys(&mut k, &mut p, child, Sysno::MemMap, QUOTA_VA, 1, &[]);
    let gq = [40, 1, 1, 0, 0, 0, 0];
    let (_, grandchild) = spawn_child(&mut k, &mut p, child, (file, child_ep), Some(gq)).unwrap();

    // The child ends itself: the endpoint it made lives on in the root task and is
    // charged there; the grandchild's quota is lent out of the root task's now.
    sys(&mut k, &mut p, child, Sysno::TaskExit, 0, 0, &[]);
    let mut want = minus(before, gq);
    want[3] -= 1;
    assert_eq!(left(&mut k, &mut p, root), want);
    // The grandchild ends, the root task lets the endpoint go: all back.
    sys(&mut k, &mut p, grandchild, Sysno::TaskExit, 0, 0, &[]);
    sys(&mut k, &mut p, root, Sysno::CapDelete, root_copy, 0, &[]);
    assert_eq!(left(&mut k, &mut p, root), before);
}

/// The calls handled before the meter opens are exactly those that make and free
/// nothing (the six `syscall::unmetered` names); every other call is charged.
#[test]
fn only_the_calls_that_make_and_free_nothing_skip_the_meter() {
    let skipped: Vec<u64> = (0..64)
        .filter_map(Sysno::from_u64)
        .filter(|&s| {
            let (mut k, mut p, t) = setup(1);
            prepare(&mut k, t[0], s, 0, 0, &[]);
            k.unmetered(&mut p, t[0], s).is_some()
        })
        .map(|s| s as u64)
        .collect();
    let mut expected: Vec<u64> = [
        Sysno::Null,
        Sysno::Yield,
        Sysno::ThisCpu,
        Sysno::Trace,
        Sysno::FrameStats,
        Sysno::QuotaLeft,
        Sysno::RingEnter,
    ]
    .map(|s| s as u64)
    .to_vec();
    expected.sort();
    assert_eq!(skipped, expected);
}

/// Everything IPC decides about `k`'s threads and endpoints, to compare two kernels:
/// each live thread's registers, state, partner and queue link, each endpoint's queue,
/// the run queue and the current thread.
fn ipc_state(k: &Kernel) -> String {
    let mut s = format!("current {} runq {:?}\n", k.current, k.runqs[0].order());
    for (i, t) in k.threads.iter().enumerate().filter(|(_, t)| t.state != ThreadState::Free) {
        s += &format!("thread {i}: {:?} reply_to {} ep_next {} {:?}\n", t.state, t.reply_to, t.ep_next, t.regs);
    }
    for (i, e) in k.endpoints.iter().enumerate().filter(|(_, e)| e.refs > 0) {
        s += &format!("endpoint {i}: {:?} head {} tail {}\n", e.waiting, e.head, e.tail);
    }
    s
}

/// Issue [fastpath] 3: the fast paths are only a quicker way to the slow path's result.
/// Two kernels built alike run the same random sequences of Call, ReplyRecv, Send, Recv,
/// their non-blocking forms, Reply and Null among six threads (three at a higher priority) on
/// two endpoints, with messages of 0-8 words (and a few that only the slow path takes:
/// more words, a capability): one tries the fast path first, as the arch layer does, the
/// other never does (the arch layer's `Kernel::fast_syscall`). After every call the two must agree on every thread's registers and
/// state, every endpoint's queue, the run queue and the current thread.
#[test]
fn the_fast_path_and_the_slow_path_give_identical_results() {
    let seeds: u64 = std::env::var("L4_FASTPATH_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(200);
    let (mut fast_taken, mut fast_replies, mut steps) = (0, 0, 0);
    for seed in 0..seeds {
        let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let mut rnd = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        let build = || {
            let (mut k, mut p, th) = setup(6);
            sys(&mut k, &mut p, th[0], Sysno::EndpointCreate, 0, 0, &[]);
            sys(&mut k, &mut p, th[0], Sysno::EndpointCreate, 0, 0, &[]);
            // Every thread holds both endpoints with every right, each badged for it.
            for (i, &t) in th.iter().enumerate() {
                for ep in 0..2u16 {
                    give_ep(&mut k, t, ep, rights::ALL, 0x100 * (i as u64 + 1) + u64::from(ep));
                }
            }
            for &t in &th[3..] {
                if k.threads[t].state == ThreadState::Ready {
                    k.runqs[0].remove(t, 5);
                    k.threads[t].prio = 7;
                    k.make_ready(t);
                } else {
                    k.threads[t].prio = 7;
                }
            }
            (k, p, th)
        };
        let (mut a, mut pa, th) = build();
        let (mut b, mut pb, _) = build();
        assert_eq!(ipc_state(&a), ipc_state(&b));
        for step in 0..300 {
            // A thread that could be running: the current one or a ready one.
            let live: Vec<usize> = th
                .iter()
                .copied()
                .filter(|&t| matches!(a.threads[t].state, ThreadState::Running | ThreadState::Ready))
                .collect();
            if live.is_empty() {
                break;
            }
            let t = live[(rnd() % live.len() as u64) as usize];
            let ti = a.threads[t].task as usize;
            // Task ti's slot for endpoint e (it holds both).
            let slot_of = |e: u16| {
                (0..64u64)
                    .find(|&s| a.tasks[ti].caps.lookup(s, Kind::Endpoint, 0).is_ok_and(|(x, _)| x == e))
                    .expect("every task holds both endpoints")
            };
            let receivers = (0..2u16).find(|&e| a.endpoints[e as usize].waiting == Waiting::Receivers);
            let (op, slot) = match (rnd() % 3, receivers) {
                // What a server and its clients do: answer the caller, or call a server
                // that waits (the fast path's cases, taken when they qualify).
                (0, _) if a.threads[t].reply_to != NONE => (Sysno::ReplyRecv, slot_of((rnd() % 2) as u16)),
                (0 | 1, Some(e)) => (Sysno::Call, slot_of(e)),
                _ => (
                    [
                        Sysno::Call,
                        Sysno::ReplyRecv,
                        Sysno::Send,
                        Sysno::Recv,
                        Sysno::SendNB,
                        Sysno::RecvNB,
                        Sysno::Reply,
                        Sysno::SendNB,
                        Sysno::RecvNB,
                        Sysno::Reply,
                        Sysno::Null,
                    ][(rnd() % 11) as usize],
                    match rnd() % 8 {
                        0 => 63,
                        1 => rnd() % 64,
                        _ => slot_of((rnd() % 2) as u16),
                    },
                ),
            };
            let info = match rnd() % 10 {
                0 => MsgInfo::new(rnd() as u32, 9 + (rnd() % 4) as usize).0,
                1 => MsgInfo::new(rnd() as u32, 1).with_cap(slot as u8).0,
                _ => MsgInfo::new(rnd() as u32, (rnd() % 9) as usize).0,
            };
            let words: Vec<u64> = (0..8).map(|_| rnd()).collect();
            // Null's mode: 0, 1 or a bad one, from the slot drawn.
            let slot = if op == Sysno::Null { slot % 3 } else { slot };
            steps += 1;
            let before = ipc_state(&a);
            prepare(&mut a, t, op, slot, info, &words);
            // Registers a call does not name: garbage, the same in both.
            let junk = rnd();
            a.threads[t].regs.r15 = junk;
            if a.fast_syscall(&mut pa, op as u64) {
                fast_taken += 1;
                if op == Sysno::ReplyRecv {
                    fast_replies += 1;
                }
            } else {
                a.syscall(&mut pa);
            }
            prepare(&mut b, t, op, slot, info, &words);
            b.threads[t].regs.r15 = junk;
            b.syscall(&mut pb);
            let (sa, sb) = (ipc_state(&a), ipc_state(&b));
            if std::env::var("L4_FASTPATH_TRACE").is_ok_and(|v| v == seed.to_string()) {
                eprintln!(
                    "step {step}: thread {t} {op:?} slot {slot} info {info:#x} -> {}",
                    sa.lines().map(|l| l.split(" UserRegs").next().unwrap_or(l)).collect::<Vec<_>>().join(" | ")
                );
                eprintln!(
                    "   slow: {}",
                    sb.lines().map(|l| l.split(" UserRegs").next().unwrap_or(l)).collect::<Vec<_>>().join(" | ")
                );
            }
            assert!(
                sa == sb,
                "seed {seed} step {step}: thread {t} {op:?} slot {slot} info {info:#x}: the fast path (left) and \
                 the slow path (right) differ:\n{}",
                sa.lines()
                    .zip(sb.lines())
                    .filter(|(x, y)| x != y)
                    .map(|(x, y)| format!("  {x}\n  {y}\n"))
                    .collect::<String>()
                    + "before:\n"
                    + &before
            );
        }
    }
    assert!(
        fast_taken > 1000 && fast_replies > 300,
        "the fast path was taken only {fast_taken} times ({fast_replies} of them ReplyRecv) in {steps} calls: \
         the sequences test nothing"
    );
}
