//! Sending a block of bytes to a server by the cheapest path for its size:
//!
//! - **copy**: the bytes travel in the message words (registers and IPC buffers), up to
//!   952 bytes per message, chunked beyond that;
//! - **copy-on-write**: the bytes are put in a page-aligned staging buffer whose pages the
//!   kernel maps read-only into the server's receive window (only pages written later are
//!   ever copied);
//! - **shared**: the bytes are put in a memory object both sides have mapped; the message
//!   carries only an offset and a length.
//!
//! [`Thresholds`] picks the path by size. [`MEASURED`] holds the crossover sizes that
//! `ipcbench` measured on this project's PVM development host (see docs/ARCHITECTURE.md);
//! pass your own [`Thresholds`] to override them.
//!
//! The protocol (labels [`SINK_COPY`]...) is what the `echo` server implements: it answers
//! each transfer with the XOR of the transferred bytes taken as little-endian u64 words.

use l4_abi::syscall::{Error, MsgInfo, MAX_WORDS};

use crate::ipc::{self, Msg};
use crate::sys;

/// Bytes per copy message: words 1-119 (word 0 is the byte count).
pub const COPY_CHUNK: usize = 8 * (MAX_WORDS - 1);
/// `SINK_COPY(len, bytes...)`: bytes in message words 1 and up.
pub const SINK_COPY: u32 = 0x200;
/// `SINK_PAGES(.., va, len)` + pages copy-on-write.
pub const SINK_PAGES: u32 = 0x201;
/// `SINK_SHARED_SETUP(bytes) + memory capability`: map the shared region.
pub const SINK_SHARED_SETUP: u32 = 0x202;
/// `SINK_SHARED(offset, len)`: bytes in the shared region.
pub const SINK_SHARED: u32 = 0x203;
/// `WHO()`: the server answers with the badge of the capability the caller used.
pub const WHO: u32 = 0x204;
/// `COW_WRITE(offset, byte)`: the server reads the byte at `offset` of its receive window
/// (the last pages it received), answers it, then writes `byte` there.
pub const COW_WRITE: u32 = 0x205;
/// `COW_READ(offset)`: like `COW_WRITE` without the write.
pub const COW_READ: u32 = 0x206;
/// `SHARED_WRITE(offset, byte)`: the server writes `byte` into the shared region.
pub const SHARED_WRITE: u32 = 0x207;
/// `KV_PUT(key, value)`: the echo server's key-value store (`l4_rt::service::Kv`, the same
/// logic the ring server runs); answers 0, or 1 if full.
pub const KV_PUT: u32 = 0x208;
/// `KV_GET(key)`: answers `[found, value]`.
pub const KV_GET: u32 = 0x209;
/// `CRASH()`: the server faults while handling it (after ~1 ms of work, so that other
/// callers queue meanwhile): fault injection for the supervisor's tests.
pub const CRASH: u32 = 0x20a;
/// Where the server maps the shared region and where it receives pages.
pub const SERVER_SHARED_VA: u64 = 0x0000_0040_0000_0000;
pub const SERVER_WINDOW_VA: u64 = 0x0000_0030_0000_0000;
/// The largest transfer the server accepts by pages or shared region (its window size).
pub const MAX_PAGES_BYTES: usize = 64 << 20;

/// Where each path starts to pay off.
#[derive(Clone, Copy, Debug)]
pub struct Thresholds {
    /// Sizes from this on go copy-on-write.
    pub cow_from: usize,
    /// Sizes from this on go through the shared region (if the sender has one).
    pub shared_from: usize,
}

/// The crossovers `ipcbench` measured on the PVM development host (2026-11-23, medians of
/// round trips to `echo`): copying through message words costs ~5.2M cycles for 1 KiB and
/// grows linearly (952 bytes a message, each one emulated ring-0 work); copy-on-write
/// costs ~2.3M cycles for one page and beats copying from 1 KiB on; a message naming a
/// shared region costs ~0.88M cycles whatever the size (the server's reading aside).
/// Below 1 KiB one copy message is cheapest when no shared region exists yet.
pub const MEASURED: Thresholds = Thresholds { cow_from: 1024, shared_from: 1024 };

/// The path a transfer took.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    Copy,
    Cow,
    Shared,
}

/// XOR of `bytes` as little-endian u64 words (zero-padded).
pub fn checksum(bytes: &[u8]) -> u64 {
    let mut x = 0u64;
    for c in bytes.chunks(8) {
        let mut w = [0u8; 8];
        w[..c.len()].copy_from_slice(c);
        x ^= u64::from_le_bytes(w);
    }
    x
}

fn bytes_mut(va: u64, len: usize) -> &'static mut [u8] {
    // SAFETY: callers pass ranges this task mapped for exactly this use (the staging
    // buffer or the shared region), which nothing else in the task refers to.
    unsafe { core::slice::from_raw_parts_mut(va as *mut u8, len) }
}

/// A sender to one server.
pub struct Sender {
    ep: u8,
    thresholds: Thresholds,
    staging: Option<(u64, usize)>,
    shared: Option<(u64, usize)>,
}

impl Sender {
    /// A sender to the server behind `ep`, with copy only.
    pub fn new(ep: u8, thresholds: Thresholds) -> Self {
        Sender { ep, thresholds, staging: None, shared: None }
    }

    /// Maps a page-aligned staging buffer of `bytes` at `va` for copy-on-write transfers.
    pub fn with_staging(mut self, va: u64, bytes: usize) -> Result<Self, Error> {
        sys::mem_map(va, (bytes as u64).div_ceil(4096))?;
        self.staging = Some((va, bytes));
        Ok(self)
    }

    /// Creates a memory object of `bytes`, maps it at `va` and hands it to the server.
    pub fn with_shared(mut self, va: u64, bytes: usize) -> Result<Self, Error> {
        let slot = sys::mem_create((bytes as u64).div_ceil(4096))?;
        sys::mem_map_obj(slot, va)?;
        ipc::call(self.ep, &Msg::new(SINK_SHARED_SETUP, &[bytes as u64]).with_cap(slot))?;
        self.shared = Some((va, bytes));
        Ok(self)
    }

    /// The path [`send`](Self::send) takes for `len` bytes.
    pub fn path(&self, len: usize) -> Path {
        if len >= self.thresholds.shared_from && self.shared.is_some_and(|(_, n)| len <= n) {
            Path::Shared
        } else if len >= self.thresholds.cow_from && self.staging.is_some_and(|(_, n)| len <= n) {
            Path::Cow
        } else {
            Path::Copy
        }
    }

    /// Sends `data` by the path its size calls for; returns the server's checksum.
    pub fn send(&mut self, data: &[u8]) -> Result<u64, Error> {
        self.send_by(self.path(data.len()), data)
    }

    /// Sends `data` by a given path.
    pub fn send_by(&mut self, path: Path, data: &[u8]) -> Result<u64, Error> {
        match path {
            Path::Copy => {
                let mut x = 0;
                for chunk in data.chunks(COPY_CHUNK) {
                    let mut words = [0u64; MAX_WORDS];
                    words[0] = chunk.len() as u64;
                    for (i, c) in chunk.chunks(8).enumerate() {
                        let mut w = [0u8; 8];
                        w[..c.len()].copy_from_slice(c);
                        words[1 + i] = u64::from_le_bytes(w);
                    }
                    let n = 1 + chunk.len().div_ceil(8);
                    x ^= ipc::call(self.ep, &Msg::long(SINK_COPY, &words[..n]))?.words[0];
                }
                Ok(x)
            }
            Path::Cow => {
                let (va, cap) = self.staging.ok_or(Error::BadArgument)?;
                if data.len() > cap {
                    return Err(Error::BadArgument);
                }
                let buf = bytes_mut(va, data.len());
                buf.copy_from_slice(data);
                let len = (data.len() as u64).div_ceil(4096) * 4096;
                let m = Msg::new(SINK_PAGES, &[data.len() as u64]).with_pages(MsgInfo::COW, va, len);
                Ok(ipc::call(self.ep, &m)?.words[0])
            }
            Path::Shared => {
                let (va, cap) = self.shared.ok_or(Error::BadArgument)?;
                if data.len() > cap {
                    return Err(Error::BadArgument);
                }
                bytes_mut(va, data.len()).copy_from_slice(data);
                Ok(ipc::call(self.ep, &Msg::new(SINK_SHARED, &[0, data.len() as u64]))?.words[0])
            }
        }
    }

    /// Sends `len` bytes already in place (staging buffer or shared region, by path).
    pub fn send_in_place(&mut self, path: Path, len: usize) -> Result<u64, Error> {
        match path {
            Path::Cow => {
                let (va, _) = self.staging.ok_or(Error::BadArgument)?;
                let bytes = (len as u64).div_ceil(4096) * 4096;
                let m = Msg::new(SINK_PAGES, &[len as u64]).with_pages(MsgInfo::COW, va, bytes);
                Ok(ipc::call(self.ep, &m)?.words[0])
            }
            Path::Shared => Ok(ipc::call(self.ep, &Msg::new(SINK_SHARED, &[0, len as u64]))?.words[0]),
            Path::Copy => Err(Error::BadArgument),
        }
    }

    /// The staging buffer or shared region, to fill before [`send_in_place`](Self::send_in_place).
    pub fn region(&mut self, path: Path) -> Option<&'static mut [u8]> {
        match path {
            Path::Cow => self.staging.map(|(va, n)| bytes_mut(va, n)),
            Path::Shared => self.shared.map(|(va, n)| bytes_mut(va, n)),
            Path::Copy => None,
        }
    }
}
