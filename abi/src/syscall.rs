//! The system-call ABI: one entry, registers in, registers out.
//!
//! User code enters the kernel by calling the *entry page* at [`ENTRY_VA`] (mapped
//! read+execute in every address space). The kernel fills it at boot with `syscall; ret`
//! where `syscall` enters ring 0 (hardware KVM, QEMU) or `int3; ret` where it does not
//! (PVM hosts): user binaries are the same everywhere.
//!
//! | register | in | out |
//! |---|---|---|
//! | `rax` | [`Sysno`] | 0 or an [`Error`] code |
//! | `rdi` | argument 0 (usually a capability slot) | value 0 (a new slot, a badge, ...) |
//! | `rsi` | argument 1 ([`MsgInfo`] for IPC) | value 1 ([`MsgInfo`] for IPC) |
//! | `rdx`, `r10`, `r8`, `r9`, `r12`, `r13`, `r14`, `r15` | arguments 2-9 / message words 0-7 | values 2-9 / message words 0-7 |
//!
//! `rcx` and `r11` are clobbered; every other register is preserved.

/// Virtual address of the kernel entry page in every address space.
pub const ENTRY_VA: u64 = 0x0000_7fff_ffff_f000;

/// Number of message words carried in registers.
pub const MSG_REGS: usize = 8;
/// The most words in one message: words 0-7 in registers, 8-119 in the sender's and the
/// receiver's IPC buffers (at [`crate::layout::IPC_BUFFER_VA`], word `i` at byte `8 * i`).
pub const MAX_WORDS: usize = 120;

/// System-call numbers.
#[repr(u64)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sysno {
    /// `(ptr, len)`: print bytes from this address space on the console.
    DebugWrite = 0,
    /// `(code)`: end the calling task (all its threads).
    TaskExit = 1,
    /// Give up the rest of the time slice.
    Yield = 2,
    /// `() -> slot`: a new endpoint, full rights.
    EndpointCreate = 3,
    /// `(slot, rights, badge) -> new slot`: a copy with fewer rights and, if the source
    /// has none, a badge.
    CapDerive = 4,
    /// `(slot)`: delete a capability.
    CapDelete = 5,
    /// `(endpoint, info, words...)`: send, blocking until a receiver takes it.
    Send = 6,
    /// `(endpoint) -> (badge, info, words...)`: receive, blocking.
    Recv = 7,
    /// `(endpoint, info, words...) -> (badge, info, words...)`: send and wait for the reply.
    Call = 8,
    /// `(endpoint, info, words...) -> (badge, info, words...)`: reply to the last caller, then
    /// receive the next message.
    ReplyRecv = 9,
    /// `(va, pages)`: map zeroed read-write memory at `va` in the caller's address space.
    MemMap = 10,
    /// `(boot file slot, priority, fault endpoint slot, parent slot, arg, arg2, quota)
    /// -> task slot`: load an ELF boot file into a new task and start its first thread
    /// with `rdi = arg`, `rsi = arg2`. Needs SEND on the boot file and on the fault
    /// endpoint; the parent capability is copied into the new task's slot 0. The new
    /// task's capability has every right. `quota` points to a [`crate::quota::Quota`]
    /// taken out of the caller's (`Quota` if it does not fit), which pays for the new
    /// task and everything it makes; 0 lets the new task draw on the caller's.
    TaskSpawn = 11,
    /// `(task slot, my slot) -> their slot`: copy a capability into another task. Needs
    /// GRANT on the task capability; any capability can be copied (with its rights).
    CapGrant = 12,
    /// `() -> (free frames, used frames)`.
    FrameStats = 13,
    /// `(task slot)`: end a task. Needs CONTROL.
    TaskKill = 14,
    /// `(machine slot, code)`: end the virtual machine with an exit code. Needs CONTROL.
    MachineExit = 15,
    /// `(va, pages)`: unmap and free memory from the caller's address space.
    MemUnmap = 16,
    /// `(_, info, words...)`: reply to the last caller without waiting for a next message.
    Reply = 17,
    /// `() -> slot`: a new notification (a word of signal bits), full rights.
    NotifyCreate = 18,
    /// `(notification, bits)`: set bits; wakes the waiter, if any. Needs SEND.
    Signal = 19,
    /// `(notification) -> bits`: wait until some bit is set, take and clear them all.
    /// Needs RECV.
    Wait = 20,
    /// `(machine, op) -> count`: this CPU's ring-0 instruction-count window, which the VMM
    /// counts (a machine capability with TRACE): op 0 opens it (`WouldBlock`: a timer tick
    /// is pending, try again), 1 closes it, 2 reads the last count (`u32::MAX`: not
    /// available, because the VMM cannot count or the kernel's watchdog ended the window),
    /// 3 the window's state (0 closed, 1 open, 2 ended by the watchdog). The watchdog ends
    /// a window left open for 10 s: preemption stops while one is open.
    Trace = 21,
    /// `(va, pages)`: where this thread receives pages sent copy-on-write or granted;
    /// `(0, 0)` removes the window.
    SetRecvWindow = 22,
    /// `(pages) -> slot`: a new memory object of zeroed pages (SEND: map read-only,
    /// RECV: map writable, GRANT: pass on).
    MemCreate = 23,
    /// `(memory slot, va) -> pages`: map the whole object at `va`, writable if the
    /// capability has RECV; returns its size in pages (what a server maps a client's
    /// object with is its true size, whatever the client says).
    MemMapObj = 24,
    /// Like `Send`, but fails with `WouldBlock` instead of waiting for a receiver.
    SendNB = 25,
    /// Like `Recv`, but fails with `WouldBlock` instead of waiting for a sender.
    RecvNB = 26,
    /// `(task slot, cpu)`: run the task's threads on that CPU. Needs CONTROL.
    SetAffinity = 27,
    /// `(entries, data pages) -> (client ring slot, memory slot, server ring slot)`: a ring
    /// channel (see [`crate::ring`]), the memory object holding it (full rights), a client
    /// capability (SEND, GRANT) and a server capability (RECV, GRANT). When every client
    /// capability is gone a waiting server gets `PartnerGone`, and the reverse.
    RingCreate = 28,
    /// `(ring slot, _, min, flags) -> pending`: the one ring call. A client (capability
    /// with SEND, `flags` 0) wakes a sleeping server, then waits until at least `min`
    /// completions are pending; a server (capability with RECV, `flags`
    /// [`RING_SERVER`]) wakes a client whose completions are there, then waits until at
    /// least `min` submissions are pending. `min` 0 returns at once. Returns the pending
    /// count; `BadArgument` if the ring's indices are garbage.
    RingEnter = 29,
    /// `(entry, stack top, arg, cpu) -> ipc buffer va`: a new thread in the caller's
    /// task (same address space and capabilities, the caller's priority and fault
    /// endpoint) on `cpu`, starting at `entry` with `rsp = stack top - 8` (as if called;
    /// the top must be 16-byte aligned), `rdi = arg` and `rsi` = its own IPC buffer,
    /// mapped by the kernel at [`crate::layout::thread_ipc_buffer`].
    ThreadCreate = 30,
    /// `(code)`: end the calling thread; the last thread of a task ends the task with
    /// `code`, as `TaskExit` would.
    ThreadExit = 31,
    /// `(mode) -> ()`: the floor of every IPC path. Mode 0 enters the kernel and
    /// returns; mode 1 also switches to another address space and back on the way (the
    /// two page-table switches of a round trip between two address spaces).
    Null = 32,
    /// `() -> (cpu, cpus online)`: the CPU the calling thread runs on (it stays there
    /// until `SetAffinity` moves it). A server can tell its clients where it runs, so no
    /// one has to guess placement from timing.
    ThisCpu = 33,
    /// `() -> (frames, tasks, threads, endpoints, notifications, memory objects, rings)`:
    /// what is left of the quota the caller draws on (see [`crate::quota`]).
    QuotaLeft = 34,
}

/// `RingEnter` flag: the caller is the ring's server.
pub const RING_SERVER: u64 = 1;

impl Sysno {
    /// Decodes `rax`.
    pub fn from_u64(n: u64) -> Option<Self> {
        use Sysno::*;
        Some(match n {
            0 => DebugWrite,
            1 => TaskExit,
            2 => Yield,
            3 => EndpointCreate,
            4 => CapDerive,
            5 => CapDelete,
            6 => Send,
            7 => Recv,
            8 => Call,
            9 => ReplyRecv,
            10 => MemMap,
            11 => TaskSpawn,
            12 => CapGrant,
            13 => FrameStats,
            14 => TaskKill,
            15 => MachineExit,
            16 => MemUnmap,
            17 => Reply,
            18 => NotifyCreate,
            19 => Signal,
            20 => Wait,
            21 => Trace,
            22 => SetRecvWindow,
            23 => MemCreate,
            24 => MemMapObj,
            25 => SendNB,
            26 => RecvNB,
            27 => SetAffinity,
            28 => RingCreate,
            29 => RingEnter,
            30 => ThreadCreate,
            31 => ThreadExit,
            32 => Null,
            33 => ThisCpu,
            34 => QuotaLeft,
            _ => return None,
        })
    }
}

/// What a system call can fail with (the value in `rax`).
#[repr(u64)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// `rax` named no system call.
    InvalidSyscall = 1,
    /// The slot is out of range or empty.
    InvalidCap = 2,
    /// The capability is of the wrong type for this call.
    WrongType = 3,
    /// The capability lacks a right this call needs.
    NoRights = 4,
    /// An argument is out of range.
    BadArgument = 5,
    /// A user address is unaligned, unmapped, not user memory, or overlaps the kernel.
    BadAddress = 6,
    /// No free frames.
    OutOfMemory = 7,
    /// No free capability slot or kernel object.
    NoSlots = 8,
    /// The partner is gone (killed, exited, or never there).
    PartnerGone = 9,
    /// The boot file is not a loadable ELF.
    BadElf = 10,
    /// Already mapped.
    Exists = 11,
    /// A non-blocking call found no partner.
    WouldBlock = 12,
    /// The receiver has no receive window, or one too small for the pages sent.
    WindowTooSmall = 13,
    /// The quota the caller draws on has none left of what the call needs (see
    /// [`crate::quota`]); the machine may still have some.
    Quota = 14,
    /// A page sent copy-on-write is shared writably with something else (a memory
    /// object's page): a copy of it would not be a snapshot.
    Shared = 15,
}

impl Error {
    /// Decodes `rax` (0 is success: `None`).
    pub fn from_u64(n: u64) -> Option<Self> {
        use Error::*;
        Some(match n {
            1 => InvalidSyscall,
            2 => InvalidCap,
            3 => WrongType,
            4 => NoRights,
            5 => BadArgument,
            6 => BadAddress,
            7 => OutOfMemory,
            8 => NoSlots,
            9 => PartnerGone,
            10 => BadElf,
            11 => Exists,
            12 => WouldBlock,
            13 => WindowTooSmall,
            14 => Quota,
            15 => Shared,
            _ => return None,
        })
    }

    /// A short name.
    pub fn name(self) -> &'static str {
        use Error::*;
        match self {
            InvalidSyscall => "invalid syscall",
            InvalidCap => "invalid capability",
            WrongType => "wrong capability type",
            NoRights => "missing rights",
            BadArgument => "bad argument",
            BadAddress => "bad address",
            OutOfMemory => "out of memory",
            NoSlots => "no free slot",
            PartnerGone => "partner gone",
            BadElf => "bad ELF",
            Exists => "already exists",
            WouldBlock => "would block",
            WindowTooSmall => "receive window too small",
            Quota => "quota used up",
            Shared => "page shared writably elsewhere",
        }
    }
}

/// Capability rights (a bit set).
pub mod rights {
    /// May send on an endpoint / read memory.
    pub const SEND: u64 = 1 << 0;
    /// May receive on an endpoint / write memory.
    pub const RECV: u64 = 1 << 1;
    /// May transfer capabilities with messages (on an endpoint), into a task (on a task).
    pub const GRANT: u64 = 1 << 2;
    /// May control the object: kill a task or place its threads, end the machine.
    pub const CONTROL: u64 = 1 << 3;
    /// May open the ring-0 instruction-count window (`Trace`, on the machine), which
    /// stops preemption on its CPU for up to the kernel's watchdog period.
    pub const TRACE: u64 = 1 << 4;
    /// Everything.
    pub const ALL: u64 = SEND | RECV | GRANT | CONTROL | TRACE;
}

/// The message descriptor in `rsi`: label, word count, an optional capability and
/// optional pages.
///
/// bits 0-31 label; bits 32-38 number of words (0-120; beyond 8 they are in the IPC
/// buffers); bit 40 a capability travels with
/// the message; bits 48-55 its slot (the sender's slot on send, the receiver's new slot on
/// receive); bit 41 pages travel copy-on-write, bit 42 pages are granted (moved): then
/// words 6 and 7 are the buffer's address and length in bytes (page-aligned, page
/// multiple) in the sender, and where they landed (in the receive window) and the length
/// in the receiver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct MsgInfo(pub u64);

impl MsgInfo {
    const CAP_FLAG: u64 = 1 << 40;

    /// A message with `label` and `words` words (capped at [`MAX_WORDS`]).
    pub const fn new(label: u32, words: usize) -> Self {
        let w = if words > MAX_WORDS { MAX_WORDS } else { words };
        MsgInfo(label as u64 | ((w as u64) << 32))
    }

    /// The same message carrying the capability in `slot`.
    pub const fn with_cap(self, slot: u8) -> Self {
        MsgInfo((self.0 & !(0xff << 48)) | Self::CAP_FLAG | ((slot as u64) << 48))
    }

    /// Pages sent copy-on-write (words 6, 7: address, length).
    pub const COW: u64 = 1 << 41;
    /// Pages granted: moved to the receiver (words 6, 7: address, length).
    pub const GRANT: u64 = 1 << 42;

    /// The same message with pages: `kind` is [`MsgInfo::COW`] or [`MsgInfo::GRANT`].
    pub const fn with_pages(self, kind: u64) -> Self {
        MsgInfo(self.0 | (kind & (Self::COW | Self::GRANT)))
    }

    /// The page-transfer kind, if any.
    pub const fn pages(self) -> Option<u64> {
        let k = self.0 & (Self::COW | Self::GRANT);
        if k == 0 {
            None
        } else {
            Some(k)
        }
    }

    pub const fn label(self) -> u32 {
        self.0 as u32
    }

    /// Number of words (at most [`MAX_WORDS`]).
    pub const fn words(self) -> usize {
        let w = ((self.0 >> 32) & 0x7f) as usize;
        if w > MAX_WORDS {
            MAX_WORDS
        } else {
            w
        }
    }

    /// Whether the message is registers only: no capability, no pages, at most
    /// [`MSG_REGS`] words (the fast path's test). One mask and one compare: the flags lie
    /// above the word count, so the masked value is small only if they are all clear.
    pub const fn registers_only(self) -> bool {
        const MASK: u64 = (0x7f << 32) | MsgInfo::CAP_FLAG | MsgInfo::COW | MsgInfo::GRANT;
        self.0 & MASK <= (MSG_REGS as u64) << 32
    }

    /// What the receiver of a registers-only message ([`MsgInfo::registers_only`]) is
    /// told: its label and word count, nothing else. One mask: for such a message this is
    /// `MsgInfo::new(self.label(), self.words())`, without the clamp.
    pub const fn registers_only_received(self) -> MsgInfo {
        MsgInfo(self.0 & ((0x7f << 32) | 0xffff_ffff))
    }

    /// The capability slot, if a capability travels with the message.
    pub const fn cap(self) -> Option<u8> {
        if self.0 & Self::CAP_FLAG != 0 {
            Some((self.0 >> 48) as u8)
        } else {
            None
        }
    }
}

/// The label of the message the kernel sends to a fault handler when a thread faults.
/// Words: 0 vector, 1 error code, 2 rip, 3 faulting address (cr2 for #PF), 4 task id.
pub const FAULT_LABEL: u32 = 0xfa17;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_only_is_no_capability_no_pages_and_at_most_eight_words() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for i in 0..20_000u64 {
            // Every combination of the flags and word counts around the limit, over
            // random labels and slots, and random descriptors.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v =
                if i < 10_000 { (x & 0xff00_0000_ffff_ffff) | ((i % 130) << 32) | ((i / 130 % 8) << 40) } else { x };
            let m = MsgInfo(v);
            let long = m.cap().is_none() && m.pages().is_none() && m.words() <= MSG_REGS;
            assert_eq!(m.registers_only(), long, "{v:#x}");
            if long {
                assert_eq!(m.registers_only_received(), MsgInfo::new(m.label(), m.words()), "{v:#x}");
            }
        }
    }

    #[test]
    fn msginfo_round_trips() {
        let m = MsgInfo::new(0xdead_beef, 5).with_cap(17);
        assert_eq!(m.label(), 0xdead_beef);
        assert_eq!(m.words(), 5);
        assert_eq!(m.cap(), Some(17));
        assert_eq!(MsgInfo::new(1, 99).words(), 99);
        assert_eq!(MsgInfo::new(1, 500).words(), MAX_WORDS);
        assert_eq!(MsgInfo::new(1, 2).cap(), None);
        assert_eq!(MsgInfo(u64::MAX).words(), MAX_WORDS);
        assert_eq!(MsgInfo::new(1, 8).with_pages(MsgInfo::COW).pages(), Some(MsgInfo::COW));
    }

    #[test]
    fn numbers_decode() {
        for n in 0..=34 {
            assert_eq!(Sysno::from_u64(n).map(|s| s as u64), Some(n));
        }
        assert_eq!(Sysno::from_u64(35), None);
        for n in 1..=15 {
            assert_eq!(Error::from_u64(n).map(|e| e as u64), Some(n));
        }
        assert_eq!(Error::from_u64(0), None);
        assert_eq!(Error::from_u64(16), None);
    }
}
