//! The l4 kernel's portable logic.
//!
//! Everything here is plain `no_std` Rust with no inline assembly and no knowledge of the
//! machine beyond the [`platform::Platform`] trait, and with no `unsafe` but in the IPC
//! fast path ([`ipc::fastpath`], which indexes the tables without bounds checks; its
//! invariants are `debug_assert!`ed): it is unit-tested on the host with `cargo test`,
//! against a fake platform (debug assertions on). The freestanding kernel binary
//! (`main.rs` and `arch/`) drives it and supplies the hardware.
//!
//! Design principles (after Hubris and seL4):
//! - mechanism in the kernel, policy in user space (the root task);
//! - the kernel runs with interrupts off and is never preempted;
//! - every value that comes from outside (boot loader, user space) is validated before
//!   use; user memory is only touched through [`mm::umem`];
//! - kernel objects live in tables sized from memory at boot: no heap; every task draws
//!   on a quota ([`quota`]) that bounds what it holds of them and of memory;
//! - no `core::fmt` in the kernel: on PVM hosts ring 0 runs in KVM's instruction emulator,
//!   which dies on the SSE code that the precompiled `core::fmt` contains.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]

pub mod boot;
pub mod cap;
pub mod elf;
pub mod fmt;
pub mod ipc;
pub mod kernel;
pub mod machine;
pub mod mm;
pub mod platform;
pub mod quota;
pub mod ring;
pub mod syscall;
pub mod task;
