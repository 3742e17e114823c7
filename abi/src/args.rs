//! Every system call's arguments, by name, and the register each one travels in: the one
//! definition that the kernel decodes, `l4-rt` encodes and the fuzzer fills, so the ABI
//! cannot drift between them. Message words beyond the named arguments (IPC) travel in
//! [`Regs::words`] as they are.
//!
//! Each call's results when it succeeds (`rax` = 0) are named the same way, in
//! [`ret`], and [`Args::Ret`] ties a call to them.
//!
//! ```
//! use l4_abi::args::{Args, Regs, TaskSpawn};
//! let a = TaskSpawn { file: 3, prio: 5, fault: 7, parent: 9, arg0: 1, arg1: 2, quota: 0x1000 };
//! let r: Regs = a.into_regs();
//! assert_eq!((r.rdi, r.rsi, r.words[0], r.words[1], r.words[2], r.words[3]), (3, 5, 7, 9, 1, 2));
//! assert_eq!(r.words[4], 0x1000);
//! assert_eq!(TaskSpawn::from_regs(&r), a);
//! ```

use crate::syscall::Sysno;

/// A system call's input registers: `rdi`, `rsi`, and the eight words `rdx`, `r10`, `r8`,
/// `r9`, `r12`, `r13`, `r14`, `r15` (see [`crate::syscall`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Regs {
    pub rdi: u64,
    pub rsi: u64,
    pub words: [u64; 8],
}

impl Regs {
    /// Argument `i`: 0 `rdi`, 1 `rsi`, 2.. the words.
    pub const fn arg(&self, i: usize) -> u64 {
        match i {
            0 => self.rdi,
            1 => self.rsi,
            _ => self.words[i - 2],
        }
    }

    fn set_arg(&mut self, i: usize, v: u64) {
        match i {
            0 => self.rdi = v,
            1 => self.rsi = v,
            _ => self.words[i - 2] = v,
        }
    }
}

/// A system call's named arguments.
pub trait Args: Sized + Copy {
    /// The call they are for.
    const SYSNO: Sysno;
    /// The argument names, in register order (`rdi`, `rsi`, `rdx`, `r10`, `r8`, `r9`).
    const NAMES: &'static [&'static str];
    /// What the call gives back when it succeeds.
    type Ret: Results;
    /// Into registers (the rest zero).
    fn into_regs(self) -> Regs;
    /// From registers (what else they hold is ignored).
    fn from_regs(r: &Regs) -> Self;
}

/// A system call's named results, after `rax` = 0: in `rdi`, `rsi`, then the words, as
/// the arguments are.
pub trait Results: Sized + Copy {
    /// The result names, in register order.
    const NAMES: &'static [&'static str];
    /// Into registers (the rest zero).
    fn into_regs(self) -> Regs;
    /// From registers.
    fn from_regs(r: &Regs) -> Self;
}

macro_rules! named {
    ($trait:ident for $name:ident { $($field:ident),* } $($extra:tt)*) => {
        impl $trait for $name {
            $($extra)*
            const NAMES: &'static [&'static str] = &[$(stringify!($field)),*];
            #[allow(unused_mut, unused_variables, unused_assignments)]
            fn into_regs(self) -> Regs {
                let mut r = Regs::default();
                let mut i = 0;
                $( r.set_arg(i, self.$field); i += 1; )*
                r
            }
            #[allow(unused_mut, unused_variables, unused_assignments)]
            fn from_regs(r: &Regs) -> Self {
                let mut i = 0;
                $( let $field = r.arg(i); i += 1; )*
                $name { $($field),* }
            }
        }
    };
}

macro_rules! calls {
    ($( $(#[$doc:meta])* $name:ident { $($field:ident),* } -> { $($out:ident),* } )*) => {
        $(
            $(#[$doc])*
            #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
            pub struct $name { $(pub $field: u64),* }

            named!(Args for $name { $($field),* } const SYSNO: Sysno = Sysno::$name; type Ret = ret::$name;);
        )*

        /// Every call's results when it succeeds, by name (see [`Results`]).
        pub mod ret {
            use super::{Regs, Results};
            $(
                #[doc = concat!("What `", stringify!($name), "` gives back.")]
                #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
                pub struct $name { $(pub $out: u64),* }

                named!(Results for $name { $($out),* });
            )*
        }

        /// Every call, its argument names and its result names.
        pub const CALLS: &[(Sysno, &[&str], &[&str])] =
            &[$((Sysno::$name, <$name as Args>::NAMES, <ret::$name as Results>::NAMES)),*];
    };
}

calls! {
    /// Print `len` bytes at `ptr` on the console (at most 4096).
    DebugWrite { ptr, len } -> {}
    /// End the calling task with `code`.
    TaskExit { code } -> {}
    /// Give up the rest of the time slice.
    Yield {} -> {}
    /// A new endpoint, full rights.
    EndpointCreate {} -> { slot }
    /// A copy of `slot` with at most `rights` and, if the source has none, `badge`.
    CapDerive { slot, rights, badge } -> { slot }
    /// Delete the capability in `slot`.
    CapDelete { slot } -> {}
    /// Send on `endpoint`; the message is `info` and the words.
    Send { endpoint, info } -> {}
    /// Receive on `endpoint`: the sender's badge, the message's `info` and its words.
    Recv { endpoint } -> { badge, info }
    /// Send on `endpoint` and wait for the reply (its `info` and words).
    Call { endpoint, info } -> { badge, info }
    /// Reply to the last caller with `info` and the words, then receive on `endpoint`.
    ReplyRecv { endpoint, info } -> { badge, info }
    /// Map `pages` zeroed pages at `va`.
    MemMap { va, pages } -> {}
    /// Load boot file `file` into a new task at priority `prio` whose faults go to
    /// endpoint `fault`, with `parent` copied into its slot 0; its first thread starts
    /// with `rdi = arg0`, `rsi = arg1`. `quota` points to the [`crate::quota::Quota`]
    /// the task gets out of the caller's (0: it draws on the caller's). Gives the new
    /// task's capability.
    TaskSpawn { file, prio, fault, parent, arg0, arg1, quota } -> { task }
    /// Copy the capability in `slot` into the task `task`; gives its slot there.
    CapGrant { task, slot } -> { slot }
    /// Free and used frames.
    FrameStats {} -> { free, used }
    /// End the task `task`.
    TaskKill { task } -> {}
    /// End the virtual machine with `code`.
    MachineExit { machine, code } -> {}
    /// Unmap and free `pages` pages at `va`.
    MemUnmap { va, pages } -> {}
    /// Reply to the last caller with `info` and the words.
    Reply { unused, info } -> {}
    /// A new notification, full rights.
    NotifyCreate {} -> { slot }
    /// Set `bits` in `notification`.
    Signal { notification, bits } -> {}
    /// Wait for bits of `notification`; gives them (and clears them).
    Wait { notification } -> { bits }
    /// The ring-0 instruction counter: `op` 0 start, 1 stop, 2 read (`count`).
    Trace { machine, op } -> { count }
    /// Receive transferred pages at `va` (`pages` of them); (0, 0) removes the window.
    SetRecvWindow { va, pages } -> {}
    /// A new memory object of `pages` zeroed pages.
    MemCreate { pages } -> { slot }
    /// Map the memory object `memory` at `va`.
    MemMapObj { memory, va } -> { pages }
    /// `Send` that fails with `WouldBlock` instead of waiting.
    SendNB { endpoint, info } -> {}
    /// `Recv` that fails with `WouldBlock` instead of waiting.
    RecvNB { endpoint } -> { badge, info }
    /// Run the threads of task `task` on `cpu`.
    SetAffinity { task, cpu } -> {}
    /// A ring of `entries` entries and `data_pages` data pages: the client's capability,
    /// the memory object's and the server's.
    RingCreate { entries, data_pages } -> { client, memory, server }
    /// Wake the other side of `ring`, then wait until `min` entries are pending
    /// (`flags`: [`crate::syscall::RING_SERVER`] for the server); gives how many are.
    RingEnter { ring, unused, min, flags } -> { pending }
    /// A new thread at `entry` with stack top `stack`, `rdi = arg`, on `cpu`; gives its
    /// IPC buffer's address.
    ThreadCreate { entry, stack, arg, cpu } -> { ipc_buffer }
    /// End the calling thread with `code`.
    ThreadExit { code } -> {}
    /// Enter the kernel and return (`mode` 1: through another address space).
    Null { mode } -> {}
    /// The calling thread's CPU and the CPUs online.
    ThisCpu {} -> { cpu, cpus }
    /// What is left of the quota the caller draws on ([`crate::quota::Quota`]'s order;
    /// `u64::MAX`: no limit).
    QuotaLeft {} -> { frames, tasks, threads, endpoints, notifications, memobjs, rings }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_call_round_trips_through_its_registers() {
        let r = Regs { rdi: 1, rsi: 2, words: [3, 4, 5, 6, 7, 8, 9, 10] };
        let a = RingEnter::from_regs(&r);
        assert_eq!(a, RingEnter { ring: 1, unused: 2, min: 3, flags: 4 });
        assert_eq!(RingEnter::from_regs(&a.into_regs()), a);
        assert_eq!(ThreadCreate::NAMES, ["entry", "stack", "arg", "cpu"]);
        assert_eq!(TaskSpawn::SYSNO, Sysno::TaskSpawn);
        assert_eq!(Yield::default().into_regs(), Regs::default());
        let out = ret::RingCreate { client: 4, memory: 5, server: 6 }.into_regs();
        assert_eq!((out.rdi, out.rsi, out.words[0]), (4, 5, 6));
        assert_eq!(<ret::FrameStats as Results>::NAMES, ["free", "used"]);
    }

    #[test]
    fn every_system_call_has_its_arguments_defined_once() {
        for n in 0..256u64 {
            let defined = CALLS.iter().filter(|(s, _, _)| *s as u64 == n).count();
            assert_eq!(defined, usize::from(Sysno::from_u64(n).is_some()), "call {n}");
        }
    }
}
