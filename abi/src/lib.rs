//! The ABI shared by the l4 guest kernel, its user-space servers, the VMM (`l4vmm`) and the
//! benchmark harness.
//!
//! Everything that two of those parts must agree on is defined here, once: I/O ports of the
//! VMM's devices, the guest exit codes, the trace markers, the system-call ABI, the user
//! address-space layout, quotas and the root task's boot-info page. `no_std`, no dependencies.
#![no_std]

pub mod args;
pub mod bootinfo;
pub mod exit;
pub mod layout;
pub mod port;
pub mod quota;
pub mod ring;
pub mod syscall;
