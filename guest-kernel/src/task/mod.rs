//! Tasks and threads: the task object (an address space, a capability table, an
//! account), threads ([`thread`]), run queues and what a system call does next
//! ([`sched`]), and how tasks and threads begin and end ([`lifecycle`]).
//!
//! Invariants: a dead task holds no capability, no frame and no thread; a live task's
//! `account` names a live task (itself or an ancestor) or `NONE` (only tasks the host
//! tests make); its `lender` is where its quota came from (`crate::quota`).

pub mod lifecycle;
pub mod sched;
pub mod schedule;
pub mod thread;

pub use thread::thread_ipc_buffer;

use crate::cap::{CapTable, NONE};
use crate::quota::Account;

/// A task: an address space, a capability table, and the account it draws on.
#[derive(Clone, Copy)]
pub struct Task {
    pub alive: bool,
    pub root: u64,
    pub caps: CapTable,
    pub name: [u8; 32],
    /// The task whose account this one's system calls are charged to: itself if it has
    /// a quota of its own, else the account its spawner drew on (`NONE`: unlimited, only
    /// tasks the kernel's own tests make).
    pub account: u16,
    /// Its own account (when `account` is itself).
    pub acct: Account,
    /// The account its quota was lent out of, which gets it back when it dies (`NONE`
    /// for the root task's).
    pub lender: u16,
}

impl Task {
    pub(crate) const DEAD: Task = Task {
        alive: false,
        root: 0,
        caps: CapTable::EMPTY,
        name: [0; 32],
        account: NONE,
        acct: Account::EMPTY,
        lender: NONE,
    };

    /// The task's name (its boot file's).
    pub fn name(&self) -> &[u8] {
        let n = self.name.iter().position(|&b| b == 0).unwrap_or(self.name.len());
        &self.name[..n]
    }
}
