//! Synchronous IPC over endpoints: send, receive, call and reply-receive, with messages
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

mod fastpath;

use l4_abi::syscall::{rights, Error, MsgInfo, FAULT_LABEL};

use crate::kernel::{Kernel, ThreadState, Waiting, NONE};

impl Kernel {
    // ---- endpoint queues ------------------------------------------------------------

    pub(crate) fn ep_push(&mut self, e: usize, t: usize, kind: Waiting) {
        let ep = &mut self.endpoints[e];
        ep.waiting = kind;
        self.threads[t].ep_next = NONE;
        if ep.tail == NONE {
            ep.head = t as u16;
        } else {
            let tail = ep.tail as usize;
            self.threads[tail].ep_next = t as u16;
        }
        self.endpoints[e].tail = t as u16;
    }

    pub(crate) fn ep_pop(&mut self, e: usize) -> Option<usize> {
        let h = self.endpoints[e].head;
        if h == NONE {
            return None;
        }
        let t = h as usize;
        self.endpoints[e].head = self.threads[t].ep_next;
        if self.endpoints[e].head == NONE {
            self.endpoints[e].tail = NONE;
            self.endpoints[e].waiting = Waiting::Nobody;
        }
        self.threads[t].ep_next = NONE;
        Some(t)
    }

    pub(crate) fn ep_remove(&mut self, e: usize, t: usize) {
        let mut prev = NONE;
        let mut cur = self.endpoints[e].head;
        while cur != NONE {
            if cur as usize == t {
                let next = self.threads[t].ep_next;
                if prev == NONE {
                    self.endpoints[e].head = next;
                } else {
                    self.threads[prev as usize].ep_next = next;
                }
                if self.endpoints[e].tail == cur {
                    self.endpoints[e].tail = prev;
                }
                if self.endpoints[e].head == NONE {
                    self.endpoints[e].waiting = Waiting::Nobody;
                }
                self.threads[t].ep_next = NONE;
                return;
            }
            prev = cur;
            cur = self.threads[cur as usize].ep_next;
        }
    }

    // ---- message transfer ---------------------------------------------------------

    /// Copies the message of `from` (its registers, or its fault) into `to`'s registers,
    /// with `badge`, moving a capability along if the message carries one.
    fn transfer(&mut self, from: usize, to: usize, badge: u64) {
        if let Some(f) = self.threads[from].fault {
            let regs = &mut self.threads[to].regs;
            regs.rdi = badge;
            regs.rsi = MsgInfo::new(FAULT_LABEL, 5).0;
            for (i, w) in f.iter().enumerate() {
                regs.set_word(i, *w);
            }
            regs.rax = 0;
            return;
        }
        let src = self.threads[from].regs;
        let info = MsgInfo(src.rsi);
        let mut out = MsgInfo::new(info.label(), info.words());
        if let Some(slot) = info.cap() {
            let ft = self.threads[from].task as usize;
            let tt = self.threads[to].task as usize;
            if let Ok(cap) = self.tasks[ft].caps.get(slot as u64) {
                if let Ok(new) = self.tasks[tt].caps.insert(cap) {
                    self.add_ref(cap);
                    out = out.with_cap(new);
                }
            }
        }
        let dst = &mut self.threads[to].regs;
        dst.rdi = badge;
        dst.rsi = out.0;
        for i in 0..info.words() {
            dst.set_word(i, src.word(i));
        }
        dst.rax = 0;
    }

    // ---- operations ---------------------------------------------------------------

    /// `send` / `call` from thread `c` on the endpoint in `slot`.
    pub(crate) fn ipc_send(&mut self, c: usize, slot: u64, info: u64, call: bool) -> Option<Result<(), Error>> {
        let ti = self.threads[c].task as usize;
        let need = rights::SEND | if MsgInfo(info).cap().is_some() { rights::GRANT } else { 0 };
        let (e, cap) = match self.tasks[ti].caps.endpoint(slot, need) {
            Ok(x) => x,
            Err(err) => return Some(Err(err)),
        };
        let e = e as usize;
        if self.endpoints[e].waiting == Waiting::Receivers {
            let r = self.ep_pop(e).expect("a waiting receiver");
            self.transfer(c, r, cap.badge);
            self.threads[c].regs.rax = 0;
            if call {
                // Direct switch: the receiver runs now, on the caller's time slice.
                self.threads[c].state = ThreadState::BlockedReply { server: r as u16 };
                self.threads[r].reply_to = c as u16;
                self.switch_to(r);
            } else {
                self.make_ready(r);
            }
            return None;
        }
        self.threads[c].send_badge = cap.badge;
        self.threads[c].state = ThreadState::BlockedSend { ep: e as u16, call };
        self.ep_push(e, c, Waiting::Senders);
        self.current = NONE;
        None
    }

    /// Queues the faulted thread `c`'s fault message on endpoint `e`, or delivers it.
    pub(crate) fn send_fault(&mut self, c: usize, e: usize) {
        if self.endpoints[e].refs == 0 {
            return;
        }
        if self.endpoints[e].waiting == Waiting::Receivers {
            let r = self.ep_pop(e).expect("a waiting receiver");
            let badge = self.threads[c].send_badge;
            self.transfer(c, r, badge);
            self.make_ready(r);
            return;
        }
        self.threads[c].state = ThreadState::BlockedSend { ep: e as u16, call: false };
        self.ep_push(e, c, Waiting::Senders);
    }

    /// `recv` by thread `c` on the endpoint in `slot`.
    pub(crate) fn ipc_recv(&mut self, c: usize, slot: u64) -> Option<Result<(), Error>> {
        let ti = self.threads[c].task as usize;
        let e = match self.tasks[ti].caps.endpoint(slot, rights::RECV) {
            Ok((e, _)) => e as usize,
            Err(err) => return Some(Err(err)),
        };
        if self.endpoints[e].waiting == Waiting::Senders {
            let s = self.ep_pop(e).expect("a waiting sender");
            let badge = self.threads[s].send_badge;
            self.transfer(s, c, badge);
            match self.threads[s].state {
                _ if self.threads[s].fault.is_some() => self.threads[s].state = ThreadState::Faulted,
                ThreadState::BlockedSend { call: true, .. } => {
                    self.threads[s].state = ThreadState::BlockedReply { server: c as u16 };
                    self.threads[c].reply_to = s as u16;
                }
                _ => {
                    self.threads[s].regs.rax = 0;
                    self.make_ready(s);
                }
            }
            return None;
        }
        self.threads[c].state = ThreadState::BlockedRecv { ep: e as u16 };
        self.ep_push(e, c, Waiting::Receivers);
        self.current = NONE;
        None
    }

    /// `reply` by server thread `c`: answer its caller, who becomes ready; `c` goes on.
    pub(crate) fn ipc_reply(&mut self, c: usize) -> Result<(), Error> {
        let client = self.threads[c].reply_to;
        self.threads[c].reply_to = NONE;
        if client == NONE || self.threads[client as usize].state != (ThreadState::BlockedReply { server: c as u16 }) {
            return Err(Error::PartnerGone);
        }
        self.transfer(c, client as usize, 0);
        self.make_ready(client as usize);
        Ok(())
    }

    /// `reply_recv` by server thread `c`: reply to its caller, then receive on `slot`.
    pub(crate) fn ipc_reply_recv(&mut self, c: usize, slot: u64, _info: u64) -> Option<Result<(), Error>> {
        let client = self.threads[c].reply_to;
        // Check the receive capability before replying, so an error leaves nothing done.
        let ti = self.threads[c].task as usize;
        if let Err(err) = self.tasks[ti].caps.endpoint(slot, rights::RECV) {
            return Some(Err(err));
        }
        if client == NONE || self.threads[client as usize].state != (ThreadState::BlockedReply { server: c as u16 }) {
            self.threads[c].reply_to = NONE;
            return Some(Err(Error::PartnerGone));
        }
        let client = client as usize;
        self.threads[c].reply_to = NONE;
        self.transfer(c, client, 0);
        let r = self.ipc_recv(c, slot);
        if self.threads[c].state == ThreadState::Running {
            // A message was waiting: the server goes on; the client waits its turn.
            self.make_ready(client);
        } else {
            // Direct switch back to the client.
            self.switch_to(client);
        }
        r
    }
}
