//! The root task's name service, and the small protocols its children speak with it.
//!
//! Every task the root task starts finds, in slot [`l4_abi::bootinfo::PARENT_SLOT`], a
//! badged capability to the root task's endpoint (send + grant). Names are up to 16 bytes,
//! packed little-endian into two words.

use l4_abi::bootinfo::PARENT_SLOT;
use l4_abi::syscall::Error;

use crate::ipc::{self, Msg};

/// `REGISTER(name0, name1) + cap`: publish an endpoint under a name. Reply: `OK`;
/// `TAKEN` if another task registered the name (a name is its registrant's until that
/// task dies); `FULL` if this task has [`NAMES_PER_TASK`] names already or root's table
/// is full; `UNFIT` if the capability is badged or lacks SEND or GRANT. Registering one's
/// own name again replaces its capability. Root keeps a copy with SEND and GRANT only.
pub const REGISTER: u32 = 1;
/// `LOOKUP(name0, name1)`: reply `OK + cap`, or `NOT_FOUND` (`FULL`: root's table is
/// full for now). The capability can send (and pass capabilities) but never receive, and
/// carries a badge root minted for this client (the same on every lookup by one task):
/// the server always knows who called, and no client can choose the badge.
pub const LOOKUP: u32 = 2;
/// `DONE(status)`: a task reports it finished its work (0: success). Reply: `OK`.
pub const DONE: u32 = 3;
/// `TRACE`: ask for a machine capability with TRACE only (the instruction-count window).
/// Reply: `OK + cap` if root's policy names this task (`trace=NAME,...` on the command
/// line; `ipcbench` by default), else `DENIED`.
pub const TRACE: u32 = 4;
pub const OK: u32 = 0x100;
pub const NOT_FOUND: u32 = 0x101;
pub const TAKEN: u32 = 0x102;
pub const FULL: u32 = 0x103;
pub const DENIED: u32 = 0x104;
pub const UNFIT: u32 = 0x105;

/// The most names one task may hold.
pub const NAMES_PER_TASK: usize = 4;

/// Packs a name into two words.
pub fn pack(name: &str) -> [u64; 2] {
    let mut b = [0u8; 16];
    let n = name.len().min(16);
    b[..n].copy_from_slice(&name.as_bytes()[..n]);
    [
        u64::from_le_bytes(b[..8].try_into().unwrap_or_default()),
        u64::from_le_bytes(b[8..].try_into().unwrap_or_default()),
    ]
}

/// Unpacks a name (up to its first NUL).
pub fn unpack(w: [u64; 2], out: &mut [u8; 16]) -> &str {
    out[..8].copy_from_slice(&w[0].to_le_bytes());
    out[8..].copy_from_slice(&w[1].to_le_bytes());
    let n = out.iter().position(|&b| b == 0).unwrap_or(16);
    core::str::from_utf8(&out[..n]).unwrap_or("?")
}

/// Publishes my capability `slot` as `name`: `Exists` if another task holds the name,
/// `NoSlots` if I hold as many names as I may (or root's table is full), `NoRights` if
/// the capability cannot be lent (badged, or without SEND or GRANT).
pub fn register(name: &str, slot: u8) -> Result<(), Error> {
    let r = ipc::call(PARENT_SLOT, &Msg::new(REGISTER, &pack(name)).with_cap(slot))?;
    match r.label {
        OK => Ok(()),
        TAKEN => Err(Error::Exists),
        FULL => Err(Error::NoSlots),
        UNFIT => Err(Error::NoRights),
        _ => Err(Error::BadArgument),
    }
}

/// Looks `name` up; `Ok(None)` if nobody registered it (yet).
pub fn lookup(name: &str) -> Result<Option<u8>, Error> {
    let r = ipc::call(PARENT_SLOT, &Msg::new(LOOKUP, &pack(name)))?;
    Ok(if r.label == OK { r.cap } else { None })
}

/// Looks `name` up, yielding while it is not registered yet, for at most `seconds`
/// (measured in time-stamp-counter cycles at an assumed 1 GHz or faster, so at most that
/// long: the server may run on another CPU, where yielding here does not help it along).
pub fn wait_for(name: &str, seconds: u64) -> Result<Option<u8>, Error> {
    let start = crate::time::cycles();
    loop {
        if let Some(c) = lookup(name)? {
            return Ok(Some(c));
        }
        if crate::time::cycles().wrapping_sub(start) > seconds * 1_000_000_000 {
            return Ok(None);
        }
        crate::sys::yield_now();
    }
}

/// A machine capability for the instruction-count window ([`crate::sys::count_start`]):
/// `NoRights` if root's policy does not give this task one.
pub fn trace() -> Result<u8, Error> {
    let r = ipc::call(PARENT_SLOT, &Msg::new(TRACE, &[]))?;
    match (r.label, r.cap) {
        (OK, Some(c)) => Ok(c),
        (DENIED, _) => Err(Error::NoRights),
        _ => Err(Error::BadArgument),
    }
}

/// Reports that this task finished with `status`.
pub fn done(status: u64) -> Result<(), Error> {
    ipc::call(PARENT_SLOT, &Msg::new(DONE, &[status])).map(|_| ())
}
