//! The l4 user runtime: what every server links.
//!
//! - [`entry!`]: the `_start` entry point, which calls your `main` and exits with its code;
//! - [`sys`]: safe wrappers for every system call (the raw ABI is in `l4_abi::syscall`);
//! - [`ipc`]: typed messages and endpoint operations;
//! - [`println!`]: formatted output through the kernel console;
//! - [`names`]: the root task's name service protocol.
//! - [`thread`]: more threads in the same address space;
#![no_std]

pub mod io;
pub mod ipc;
mod mem;
pub mod names;
pub mod ring;
pub mod ringclient;
pub mod service;
pub mod sys;
pub mod thread;
pub mod time;
pub mod transfer;

pub use l4_abi as abi;

/// Defines the program's entry point: `_start` sets up nothing but a call to `main`, then
/// ends the task with `main`'s return value.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        #[no_mangle]
        #[link_section = ".text._start"]
        pub extern "C" fn _start(arg: u64, arg2: u64) -> ! {
            $crate::START_ARG.store(arg, core::sync::atomic::Ordering::Relaxed);
            $crate::START_ARG2.store(arg2, core::sync::atomic::Ordering::Relaxed);
            let code: u64 = $main();
            $crate::sys::task_exit(code)
        }
    };
}

/// The word the spawner passed to this task (`TaskSpawn`'s `arg`; the root task passes
/// `arg=NAME:N` from the kernel command line). Set by [`entry!`] before `main` runs.
#[doc(hidden)]
pub static START_ARG: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

#[doc(hidden)]
pub static START_ARG2: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// The word the spawner passed to this task (0 if none).
pub fn start_arg() -> u64 {
    START_ARG.load(core::sync::atomic::Ordering::Relaxed)
}

/// Both words the spawner passed (`TaskSpawn`'s two arguments; 0 if none).
pub fn start_args() -> (u64, u64) {
    (start_arg(), START_ARG2.load(core::sync::atomic::Ordering::Relaxed))
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    println!("panic: {}", info);
    sys::task_exit(101)
}

/// libcore's unwind tables name this symbol even with `panic = "abort"`; never called.
#[no_mangle]
pub extern "C" fn rust_eh_personality() {}
