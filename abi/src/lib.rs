//! The ABI shared by the l4 guest kernel, its user-space servers, the VMM (`l4vmm`) and the
//! benchmark harness.
//!
//! Everything that two of those parts must agree on is defined here, once: I/O ports of the
//! VMM's devices, the guest exit codes, the trace markers, and (as they arrive) the system
//! call numbers, IPC message layout and ring layout. `no_std`, no dependencies.
#![no_std]

pub mod exit;
pub mod port;
