//! Memory objects: zeroed frames a task can map, share and send. The operations on them
//! (`MemCreate`, `MemMapObj`, sending their pages, copy-on-write) are in [`super::share`].
//!
//! Invariants: a free object (`refs` 0) has no pages and no list; a live one lives while
//! a capability names it, and each of its frames while the object or a mapping owns it.

/// The largest memory object and the largest page transfer: 1 GiB.
pub const MAX_OBJ_PAGES: u64 = 512 * 512;

/// A memory object: `pages` zeroed frames, listed in a two-level table (`list` is a frame
/// of up to 512 frames of up to 512 frame addresses each). Lives while a capability names
/// it; each of its frames lives while the object or a mapping owns it.
#[derive(Clone, Copy, Debug)]
pub struct MemObj {
    pub refs: u32,
    pub pages: u64,
    pub list: u64,
}

impl MemObj {
    pub(crate) const FREE: MemObj = MemObj { refs: 0, pages: 0, list: 0 };
}
