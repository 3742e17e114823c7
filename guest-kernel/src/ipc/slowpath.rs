//! The IPC slow path, synchronous IPC over endpoints: send, receive, call and reply-receive, with messages
//! in registers and L4's direct switch.
//!
//! An endpoint holds a FIFO of blocked senders or of blocked receivers (never both). A
//! message is the sender's `MsgInfo` (label, word count, optional capability) and up to
//! eight words, copied register to register; the receiver also gets the badge of the
//! capability the sender used. A `call` leaves the caller waiting for the receiver's
//! reply; the receiver remembers whom to reply to (`reply_to`).
//!
//! Direct switch: when a call finds its receiver waiting, or a reply-receive finds no next
//! message, the kernel runs the partner next on this CPU without a scheduler pass, and
//! the partner inherits the rest of the time slice.
//!
//! Invariants: a thread is in at most one endpoint queue; a message is delivered exactly
//! once; a reply goes only to the thread that is waiting for this server's reply; any
//! failure is an error in the caller's `rax`, never a half-delivered message.

use l4_abi::args::ret;
use l4_abi::syscall::{rights, Error, MsgInfo, FAULT_LABEL, MAX_WORDS, MSG_REGS};

use super::{dequeue, queue_at, unqueue, Endpoint, Waiting};
use crate::cap::{Cap, Kind, Object, NONE};
use crate::kernel::Kernel;
use crate::platform::Platform;
use crate::quota::Res;
use crate::task::sched::Next;
use crate::task::thread::ThreadState;

impl Kernel {
    // ---- endpoint queues (the queue operations are `super`'s) ------------------------

    #[inline]
    pub(crate) fn ep_push(&mut self, e: usize, t: usize, kind: Waiting) {
        queue_at(self.endpoints, self.threads, e, t, kind);
    }

    #[inline]
    pub(crate) fn ep_pop(&mut self, e: usize) -> Option<usize> {
        dequeue(self.endpoints, self.threads, e)
    }

    #[inline]
    pub(crate) fn ep_remove(&mut self, e: usize, t: usize) {
        unqueue(self.endpoints, self.threads, e, t)
    }

    // ---- message transfer ---------------------------------------------------------

    /// Copies the message of `from` (its registers, or its fault) into `to`'s registers,
    /// with `badge`, moving a capability and pages along if the message carries them. On
    /// an error nothing reached `to` (pages are checked before any moves).
    fn transfer<P: Platform>(&mut self, p: &mut P, from: usize, to: usize, badge: u64) -> Result<(), Error> {
        if let Some(f) = self.threads[from].fault {
            let regs = &mut self.threads[to].regs;
            regs.set_received(badge, MsgInfo::new(FAULT_LABEL, 5).0);
            for (i, w) in f.iter().enumerate() {
                regs.set_word(i, *w);
            }
            return Ok(());
        }
        let src = self.threads[from].regs;
        let info = MsgInfo(src.first_args().1);
        let mut out = MsgInfo::new(info.label(), info.words());
        let mut landed = None;
        if let Some(kind) = info.pages() {
            landed = Some(self.transfer_pages(p, from, to, kind)?);
            out = out.with_pages(kind);
        }
        if let Some(slot) = info.cap() {
            let ft = self.threads[from].task as usize;
            let tt = self.threads[to].task as usize;
            if let Ok(cap) = self.tasks[ft].caps.to_copy(slot as u64) {
                if let Ok(new) = self.tasks[tt].caps.insert(cap) {
                    self.add_ref(cap);
                    out = out.with_cap(new);
                }
            }
        }
        // Words 8 and up: buffer to buffer, physical to physical.
        let n = info.words();
        if n > MSG_REGS {
            let (sb, db) = (self.threads[from].ipc_buffer, self.threads[to].ipc_buffer);
            if sb == 0 || db == 0 {
                return Err(Error::BadAddress);
            }
            let mut buf = [0u8; 8 * (MAX_WORDS - MSG_REGS)];
            let len = 8 * (n - MSG_REGS);
            p.read_bytes(sb + 8 * MSG_REGS as u64, &mut buf[..len]);
            p.write_bytes(db + 8 * MSG_REGS as u64, &buf[..len]);
        }
        let dst = &mut self.threads[to].regs;
        dst.set_received(badge, out.0);
        for i in 0..n.min(MSG_REGS) {
            dst.set_word(i, src.word(i));
        }
        if let Some((va, len)) = landed {
            dst.set_word(6, va);
            dst.set_word(7, len);
        }
        Ok(())
    }

    // ---- operations ---------------------------------------------------------------

    /// `send` / `call` from thread `c` on the endpoint in `slot`.
    pub(crate) fn ipc_send<P: Platform>(&mut self, p: &mut P, c: usize, slot: u64, info: u64, call: bool) -> Next {
        let ti = self.threads[c].task as usize;
        let need = rights::SEND | if MsgInfo(info).cap().is_some() { rights::GRANT } else { 0 };
        let (e, cap) = match self.tasks[ti].caps.lookup(slot, Kind::Endpoint, need) {
            Ok(x) => x,
            Err(err) => return Next::Return(Err(err)),
        };
        let e = e as usize;
        if self.endpoints[e].waiting == Waiting::Closed {
            return Next::Return(Err(Error::PartnerGone));
        }
        if self.endpoints[e].waiting == Waiting::Receivers {
            let r = self.endpoints[e].head as usize;
            if let Err(err) = self.transfer(p, c, r, cap.badge) {
                return Next::Return(Err(err));
            }
            self.ep_pop(e);
            if call {
                // Direct switch: the receiver runs now, on the caller's time slice.
                self.threads[r].reply_to = c as u16;
                return Next::Switch { to: r as u16, caller: ThreadState::BlockedReply { server: r as u16 } };
            }
            self.make_ready(r);
            return Next::Return(Ok(()));
        }
        self.threads[c].send_badge = cap.badge;
        self.ep_push(e, c, Waiting::Senders);
        Next::Block(ThreadState::BlockedSend { ep: e as u16, call })
    }

    /// Queues the faulted thread `c`'s fault message on endpoint `e`, or delivers it.
    pub(crate) fn send_fault<P: Platform>(&mut self, p: &mut P, c: usize, e: usize) {
        if self.endpoints[e].refs == 0 || self.endpoints[e].waiting == Waiting::Closed {
            return;
        }
        if self.endpoints[e].waiting == Waiting::Receivers {
            let r = self.ep_pop(e).expect("a waiting receiver");
            let badge = self.threads[c].send_badge;
            let _ = self.transfer(p, c, r, badge); // a fault message carries no pages
            self.make_ready(r);
            return;
        }
        self.threads[c].state = ThreadState::BlockedSend { ep: e as u16, call: false };
        self.ep_push(e, c, Waiting::Senders);
    }

    /// `recv` by thread `c` on the endpoint in `slot`.
    pub(crate) fn ipc_recv<P: Platform>(&mut self, p: &mut P, c: usize, slot: u64) -> Next {
        self.ipc_recv_inner(p, c, slot, true)
    }

    /// `RecvNB`: like `Recv`, but `WouldBlock` instead of waiting.
    pub(crate) fn ipc_recv_nb<P: Platform>(&mut self, p: &mut P, c: usize, slot: u64) -> Next {
        self.ipc_recv_inner(p, c, slot, false)
    }

    /// `SendNB`: like `Send`, but `WouldBlock` instead of waiting for a receiver. Its
    /// capability needs what `Send`'s does (GRANT with a capability in the message)
    /// whether or not a receiver waits.
    pub(crate) fn ipc_send_nb<P: Platform>(&mut self, p: &mut P, c: usize, slot: u64, info: u64) -> Next {
        let ti = self.threads[c].task as usize;
        let need = rights::SEND | if MsgInfo(info).cap().is_some() { rights::GRANT } else { 0 };
        match self.tasks[ti].caps.lookup(slot, Kind::Endpoint, need) {
            Ok((e, _)) if self.endpoints[e as usize].waiting == Waiting::Closed => {
                Next::Return(Err(Error::PartnerGone))
            }
            Ok((e, _)) if self.endpoints[e as usize].waiting != Waiting::Receivers => {
                Next::Return(Err(Error::WouldBlock))
            }
            Ok(_) => self.ipc_send(p, c, slot, info, false),
            Err(err) => Next::Return(Err(err)),
        }
    }

    fn ipc_recv_inner<P: Platform>(&mut self, p: &mut P, c: usize, slot: u64, block: bool) -> Next {
        let ti = self.threads[c].task as usize;
        let e = match self.tasks[ti].caps.lookup(slot, Kind::Endpoint, rights::RECV) {
            Ok((e, _)) => e as usize,
            Err(err) => return Next::Return(Err(err)),
        };
        if self.endpoints[e].waiting == Waiting::Closed {
            return Next::Return(Err(Error::PartnerGone));
        }
        while self.endpoints[e].waiting == Waiting::Senders {
            let s = self.ep_pop(e).expect("a waiting sender");
            let badge = self.threads[s].send_badge;
            if let Err(err) = self.transfer(p, s, c, badge) {
                // The sender's message cannot be delivered (e.g. no room for its pages):
                // its send fails, and this receiver tries the next one.
                self.threads[s].regs.set_result(Err(err));
                self.make_ready(s);
                continue;
            }
            match self.threads[s].state {
                _ if self.threads[s].fault.is_some() => self.threads[s].state = ThreadState::Faulted,
                ThreadState::BlockedSend { call: true, .. } => {
                    self.threads[s].state = ThreadState::BlockedReply { server: c as u16 };
                    self.threads[c].reply_to = s as u16;
                }
                _ => {
                    self.threads[s].regs.set_result(Ok(()));
                    self.make_ready(s);
                }
            }
            // The message is in this thread's registers.
            return Next::Return(Ok(()));
        }
        if !block {
            return Next::Return(Err(Error::WouldBlock));
        }
        self.ep_push(e, c, Waiting::Receivers);
        Next::Block(ThreadState::BlockedRecv { ep: e as u16 })
    }

    /// `reply` by server thread `c`: answer its caller, who becomes ready; `c` goes on.
    pub(crate) fn ipc_reply<P: Platform>(&mut self, p: &mut P, c: usize) -> Result<(), Error> {
        let client = self.threads[c].reply_to;
        self.threads[c].reply_to = NONE;
        if client == NONE || self.threads[client as usize].state != (ThreadState::BlockedReply { server: c as u16 }) {
            return Err(Error::PartnerGone);
        }
        if let Err(e) = self.transfer(p, c, client as usize, 0) {
            self.threads[c].reply_to = client;
            return Err(e);
        }
        self.make_ready(client as usize);
        Ok(())
    }

    /// `reply_recv` by server thread `c`: reply to its caller, then receive on `slot`.
    pub(crate) fn ipc_reply_recv<P: Platform>(&mut self, p: &mut P, c: usize, slot: u64) -> Next {
        let client = self.threads[c].reply_to;
        // Check the receive capability before replying, so an error leaves nothing done.
        let ti = self.threads[c].task as usize;
        if let Err(err) = self.tasks[ti].caps.lookup(slot, Kind::Endpoint, rights::RECV) {
            return Next::Return(Err(err));
        }
        if client == NONE || self.threads[client as usize].state != (ThreadState::BlockedReply { server: c as u16 }) {
            self.threads[c].reply_to = NONE;
            return Next::Return(Err(Error::PartnerGone));
        }
        let client = client as usize;
        if let Err(e) = self.transfer(p, c, client, 0) {
            return Next::Return(Err(e));
        }
        self.threads[c].reply_to = NONE;
        match self.ipc_recv(p, c, slot) {
            // Direct switch back to the client.
            Next::Block(caller) => Next::Switch { to: client as u16, caller },
            // A message was waiting: the server goes on; the client waits its turn.
            next => {
                self.make_ready(client);
                next
            }
        }
    }

    pub(crate) fn endpoint_create(&mut self, ti: usize) -> Result<ret::EndpointCreate, Error> {
        let e = self.endpoints.iter().position(|e| e.refs == 0).ok_or(Error::NoSlots)?;
        self.take(Res::Endpoints)?;
        let slot = self.tasks[ti].caps.insert(Cap::new(Object::Endpoint(e as u16), rights::ALL)).inspect_err(|_| {
            self.put(Res::Endpoints);
        })?;
        self.endpoints[e] = Endpoint { refs: 1, owner: ti as u16, ..Endpoint::FREE };
        Ok(ret::EndpointCreate { slot: slot as u64 })
    }
}
