//! Threads and scheduling.

pub mod sched;
