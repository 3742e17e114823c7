//! Ring channels: io_uring-style submission and completion rings in a memory object that
//! a client and a server both map.
//!
//! Layout (offsets in bytes from the start of the object; every index is a free-running
//! u32, masked with `entries - 1` to find the slot; producers publish with a release
//! store of the tail, consumers read it with an acquire load):
//!
//! | offset | what | written by |
//! |---|---|---|
//! | [`SQ_HEAD`] | submission head | server (consumer) |
//! | [`SQ_TAIL`] | submission tail | client (producer) |
//! | [`SQ_FLAGS`] | [`NEED_WAKEUP`] when the polling server sleeps | server |
//! | [`CQ_HEAD`] | completion head | client (consumer) |
//! | [`CQ_TAIL`] | completion tail | server (producer) |
//! | [`ENTRIES`] | number of submission and completion slots (power of two) | creator |
//! | [`SQES`] | `entries` × [`Sqe`] (64 bytes) | client |
//! | `SQES + 64 entries` | `entries` × [`Cqe`] (32 bytes) | server |
//! | [`data_offset`] | the data region, to the end of the object | either |
//!
//! Each index lives on its own cache line. Every entry also carries a sequence number
//! (`seq`: the index of the entry plus one, in 16 bits for a submission and 32 for a
//! completion), stored last with a release store: a polling consumer waits on the entry
//! itself instead of on the producer's tail, and each side keeps its own copy of the other
//! side's head (read again only when the ring looks full), so that a request and its
//! answer move two cache lines between the CPUs (the submission's and the completion's),
//! as a ping-pong on one shared word moves one. The tails and heads are still published
//! for the kernel (`RingEnter` waits on them) and for the other side's checks.
//!
//! Nothing in the ring is trusted: the consumer of each ring checks that `tail - head`
//! does not exceed `entries`, that an entry the tail says is published carries its
//! sequence number, and that every entry's data range lies inside the data region.

pub const SQ_HEAD: usize = 0;
pub const SQ_TAIL: usize = 64;
pub const SQ_FLAGS: usize = 128;
pub const CQ_HEAD: usize = 192;
pub const CQ_TAIL: usize = 256;
pub const ENTRIES: usize = 320;
/// The submission ring starts on the second page.
pub const SQES: usize = 4096;
/// Set in `SQ_FLAGS` by a polling server that is about to sleep in `RingEnter`: the
/// client must call `RingEnter` after its next submission.
pub const NEED_WAKEUP: u32 = 1;
/// The most slots per ring.
pub const MAX_ENTRIES: u32 = 4096;

/// Opcodes.
pub mod op {
    /// Answer with the same inline payload.
    pub const ECHO: u8 = 1;
    /// Store `value` (inline word 1) under `key` (inline word 0).
    pub const KV_PUT: u8 = 2;
    /// Answer the value stored under `key` (inline word 0).
    pub const KV_GET: u8 = 3;
    /// Answer the checksum of `len` bytes at `offset` of the data region.
    pub const SUM: u8 = 4;
}

/// Completion results (`Cqe::result`) for requests the server refused.
pub mod status {
    pub const OK: i32 = 0;
    pub const BAD_OPCODE: i32 = -1;
    pub const BAD_RANGE: i32 = -2;
    pub const NOT_FOUND: i32 = -3;
    pub const FULL: i32 = -4;
}

/// A submission-queue entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sqe {
    pub opcode: u8,
    pub flags: u8,
    /// The entry's index plus one (low 16 bits), written last: see the module doc. Set by the ring code, not by the submitter.
    pub seq: u16,
    /// Length of the data range for data operations.
    pub len: u32,
    /// Returned unchanged in the completion.
    pub user_data: u64,
    /// Offset of the data range in the data region.
    pub offset: u64,
    /// Inline payload.
    pub inline: [u64; 5],
}

/// A completion-queue entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cqe {
    pub user_data: u64,
    /// [`status`]: 0 or a negative refusal.
    pub result: i32,
    /// The entry's index plus one, written last: see the module doc. Set by the ring
    /// code, not by the service.
    pub seq: u32,
    /// Inline answer.
    pub value: [u64; 2],
}

/// Byte size of an object holding `entries` slots per ring and `data` bytes of data.
pub const fn object_size(entries: u32, data: usize) -> usize {
    data_offset(entries) + data
}

/// Where the data region starts (page-aligned).
pub const fn data_offset(entries: u32) -> usize {
    let end = SQES + entries as usize * (64 + 32);
    end.div_ceil(4096) * 4096
}

/// Offset of completion slot `i`.
pub const fn cqe_offset(entries: u32, i: u32) -> usize {
    SQES + entries as usize * 64 + (i & (entries - 1)) as usize * 32
}

/// Where in an entry its sequence number lies (bytes from the entry's start).
pub const SQE_SEQ: usize = 2;
pub const CQE_SEQ: usize = 12;

const _: () = {
    assert!(core::mem::size_of::<Sqe>() == 64 && core::mem::offset_of!(Sqe, seq) == SQE_SEQ);
    assert!(core::mem::size_of::<Cqe>() == 32 && core::mem::offset_of!(Cqe, seq) == CQE_SEQ);
};

/// Offset of submission slot `i`.
pub const fn sqe_offset(entries: u32, i: u32) -> usize {
    SQES + (i & (entries - 1)) as usize * 64
}

/// How many entries lie between `head` and `tail`, if that is a possible number: up to
/// `entries`; none while the consumer is ahead of the published tail, by at most `entries`
/// (it took entries by their sequence numbers before the producer stored the tail that
/// covers them, which it does right after); `None` for anything else (garbage).
pub const fn pending(head: u32, tail: u32, entries: u32) -> Option<u32> {
    let n = tail.wrapping_sub(head);
    if n <= entries {
        Some(n)
    } else if head.wrapping_sub(tail) <= entries {
        Some(0)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_fits_and_wraps() {
        assert_eq!(core::mem::size_of::<Sqe>(), 64);
        assert_eq!(core::mem::size_of::<Cqe>(), 32);
        assert_eq!(data_offset(64), 12288, "4096 + 64 * (64 + 32) = 10240, page-aligned");
        assert_eq!(sqe_offset(64, 65), sqe_offset(64, 1));
        assert_eq!(cqe_offset(64, u32::MAX), cqe_offset(64, 63));
        // Free-running indices across the 2^32 wrap.
        assert_eq!(pending(u32::MAX - 1, 3, 64), Some(5));
        assert_eq!(pending(10, 5, 64), Some(0), "a consumer ahead of the published tail");
        assert_eq!(pending(2, u32::MAX - 61, 64), Some(0), "ahead by a full ring, across the wrap");
        assert_eq!(pending(100, 5, 64), None, "further ahead than a ring holds is garbage");
        assert_eq!(pending(0, 65, 64), None, "more than the ring holds is garbage");
    }
}
