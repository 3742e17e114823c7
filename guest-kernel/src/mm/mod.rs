//! Memory: physical frames with exact accounting, and page tables.

pub mod frames;
pub mod map;
pub mod memobj;
pub mod phys;
pub mod share;
pub mod umem;
pub mod vspace;

pub use phys::PhysMem;

/// Size of a page and a frame.
pub const PAGE_SIZE: u64 = 4096;
