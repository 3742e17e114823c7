//! The root task's name service, and the small protocols its children speak with it.
//!
//! Every task the root task starts finds, in slot [`l4_abi::bootinfo::PARENT_SLOT`], a
//! badged capability to the root task's endpoint (send + grant). Names are up to 16 bytes,
//! packed little-endian into two words.

use l4_abi::bootinfo::PARENT_SLOT;
use l4_abi::syscall::Error;

use crate::ipc::{self, Msg};

/// `REGISTER(name0, name1) + cap`: publish a capability under a name. Reply: `OK`;
/// `TAKEN` if another task registered the name (a name is its registrant's until that
/// task dies); `FULL` if this task has [`NAMES_PER_TASK`] names already or root's table
/// is full. Registering one's own name again replaces its capability.
pub const REGISTER: u32 = 1;
/// `LOOKUP(name0, name1)`: reply `OK + cap`, or `NOT_FOUND`.
pub const LOOKUP: u32 = 2;
/// `DONE(status)`: a task reports it finished its work (0: success). Reply: `OK`.
pub const DONE: u32 = 3;
pub const OK: u32 = 0x100;
pub const NOT_FOUND: u32 = 0x101;
pub const TAKEN: u32 = 0x102;
pub const FULL: u32 = 0x103;

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
/// `NoSlots` if I hold as many names as I may (or root's table is full).
pub fn register(name: &str, slot: u8) -> Result<(), Error> {
    let r = ipc::call(PARENT_SLOT, &Msg::new(REGISTER, &pack(name)).with_cap(slot))?;
    match r.label {
        OK => Ok(()),
        TAKEN => Err(Error::Exists),
        FULL => Err(Error::NoSlots),
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

/// Reports that this task finished with `status`.
pub fn done(status: u64) -> Result<(), Error> {
    ipc::call(PARENT_SLOT, &Msg::new(DONE, &[status])).map(|_| ())
}
