//! The l4 kernel's portable logic.
//!
//! Everything here is plain `no_std` Rust with no `unsafe`, no inline assembly and no
//! knowledge of x86_64: it is unit-tested on the host with `cargo test`. The freestanding
//! kernel binary (`main.rs` and `arch/`) drives it and supplies the hardware.
//!
//! Design principles (after Hubris and seL4):
//! - mechanism in the kernel, policy in user space;
//! - the kernel runs with interrupts off and is never preempted;
//! - every value that comes from outside (boot loader, user space) is validated before use;
//! - no `core::fmt` in the kernel: on PVM hosts ring 0 runs in KVM's instruction emulator,
//!   which dies on the SSE code that the precompiled `core::fmt` contains.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod boot;
pub mod fmt;
