//! Threads and scheduling.

pub mod sched;
pub mod thread;

pub use thread::thread_ipc_buffer;
