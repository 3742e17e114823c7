//! Typed synchronous IPC: a [`Msg`] is a label, up to eight words, and optionally one
//! capability; it travels in registers.

use l4_abi::layout::IPC_BUFFER_VA;
use l4_abi::syscall::{Error, MsgInfo, Sysno, MAX_WORDS, MSG_REGS};

use crate::sys;

/// A message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Msg {
    pub label: u32,
    /// Number of words; beyond [`MSG_REGS`] they are in the IPC buffer ([`buffer`]).
    pub len: usize,
    pub words: [u64; MSG_REGS],
    /// Sending: my slot to pass along. Received: where the passed capability landed.
    pub cap: Option<u8>,
    /// Pages travelling with the message: `MsgInfo::COW` or `MsgInfo::GRANT`; their
    /// address and length are words 6 and 7.
    pub pages: Option<u64>,
}

/// This thread's IPC buffer: message words 8 to 119 live at indices 8 to 119.
pub fn buffer() -> &'static mut [u64; 512] {
    // SAFETY: the kernel maps one zeroed, writable page at IPC_BUFFER_VA for the task's
    // thread before it starts; each task has one thread, so nothing else aliases it.
    unsafe { &mut *(IPC_BUFFER_VA as *mut [u64; 512]) }
}

impl Msg {
    /// A message with `label` and `words`.
    pub fn new(label: u32, words: &[u64]) -> Self {
        let mut m = Msg { label, len: words.len().min(MSG_REGS), ..Msg::default() };
        m.words[..m.len].copy_from_slice(&words[..m.len]);
        m
    }

    /// A message of up to 120 words: the first 8 in registers, the rest copied into the
    /// IPC buffer now.
    pub fn long(label: u32, words: &[u64]) -> Self {
        let n = words.len().min(MAX_WORDS);
        let mut m = Msg::new(label, &words[..n.min(MSG_REGS)]);
        m.len = n;
        if n > MSG_REGS {
            buffer()[MSG_REGS..n].copy_from_slice(&words[MSG_REGS..n]);
        }
        m
    }

    /// A message carrying the pages `[va, va + len)`, copy-on-write or granted (`kind`).
    pub fn with_pages(mut self, kind: u64, va: u64, len: u64) -> Self {
        self.pages = Some(kind);
        self.words[6] = va;
        self.words[7] = len;
        self.len = self.len.max(MSG_REGS);
        self
    }

    /// Word `i` of a received message (from the IPC buffer beyond the registers).
    pub fn word(&self, i: usize) -> u64 {
        if i < MSG_REGS {
            self.words[i]
        } else {
            buffer()[i]
        }
    }

    /// The same message carrying my capability `slot`.
    pub fn with_cap(mut self, slot: u8) -> Self {
        self.cap = Some(slot);
        self
    }

    /// The words in registers.
    pub fn words(&self) -> &[u64] {
        &self.words[..self.len.min(MSG_REGS)]
    }

    fn info(&self) -> u64 {
        let mut i = MsgInfo::new(self.label, self.len);
        if let Some(s) = self.cap {
            i = i.with_cap(s);
        }
        if let Some(k) = self.pages {
            i = i.with_pages(k);
        }
        i.0
    }

    fn from_ret(r: &sys::Ret) -> Self {
        let i = MsgInfo(r.rsi);
        Msg { label: i.label(), len: i.words(), words: r.words, cap: i.cap(), pages: i.pages() }
    }
}

/// A received message and the badge of the capability its sender used.
#[derive(Clone, Copy, Debug)]
pub struct Received {
    pub badge: u64,
    pub msg: Msg,
}

fn op(n: Sysno, ep: u8, m: &Msg) -> Result<Received, Error> {
    let r = sys::raw(n, ep as u64, m.info(), m.words).ok()?;
    Ok(Received { badge: r.rdi, msg: Msg::from_ret(&r) })
}

/// Sends `m` and waits for the reply.
pub fn call(ep: u8, m: &Msg) -> Result<Msg, Error> {
    op(Sysno::Call, ep, m).map(|r| r.msg)
}

/// Sends `m`, blocking until a receiver takes it.
pub fn send(ep: u8, m: &Msg) -> Result<(), Error> {
    op(Sysno::Send, ep, m).map(|_| ())
}

/// Sends `m` if a receiver is waiting; `WouldBlock` otherwise.
pub fn send_nb(ep: u8, m: &Msg) -> Result<(), Error> {
    op(Sysno::SendNB, ep, m).map(|_| ())
}

/// Takes a message if one is waiting; `WouldBlock` otherwise.
pub fn recv_nb(ep: u8) -> Result<Received, Error> {
    op(Sysno::RecvNB, ep, &Msg::default())
}

/// Waits for a message.
pub fn recv(ep: u8) -> Result<Received, Error> {
    op(Sysno::Recv, ep, &Msg::default())
}

/// Replies `m` to the last caller without waiting for another message.
pub fn reply(m: &Msg) -> Result<(), Error> {
    op(Sysno::Reply, 0, m).map(|_| ())
}

/// Replies `m` to the last caller, then waits for the next message. If the caller is gone
/// the reply fails with `PartnerGone` and nothing is received.
pub fn reply_recv(ep: u8, m: &Msg) -> Result<Received, Error> {
    op(Sysno::ReplyRecv, ep, m)
}
