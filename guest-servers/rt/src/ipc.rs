//! Typed synchronous IPC: a [`Msg`] is a label, up to eight words, and optionally one
//! capability; it travels in registers.

use l4_abi::syscall::{Error, MsgInfo, Sysno, MSG_REGS};

use crate::sys;

/// A message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Msg {
    pub label: u32,
    pub len: usize,
    pub words: [u64; MSG_REGS],
    /// Sending: my slot to pass along. Received: where the passed capability landed.
    pub cap: Option<u8>,
}

impl Msg {
    /// A message with `label` and `words`.
    pub fn new(label: u32, words: &[u64]) -> Self {
        let mut m = Msg { label, len: words.len().min(MSG_REGS), ..Msg::default() };
        m.words[..m.len].copy_from_slice(&words[..m.len]);
        m
    }

    /// The same message carrying my capability `slot`.
    pub fn with_cap(mut self, slot: u8) -> Self {
        self.cap = Some(slot);
        self
    }

    pub fn words(&self) -> &[u64] {
        &self.words[..self.len]
    }

    fn info(&self) -> u64 {
        let i = MsgInfo::new(self.label, self.len);
        match self.cap {
            Some(s) => i.with_cap(s).0,
            None => i.0,
        }
    }

    fn from_ret(r: &sys::Ret) -> Self {
        let i = MsgInfo(r.rsi);
        Msg { label: i.label(), len: i.words(), words: r.words, cap: i.cap() }
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
