//! The user address-space layout every task starts with.

/// Lowest user address a task may map (the null page region stays unmapped).
pub const USER_MIN: u64 = 0x0000_0000_0001_0000;
/// One past the highest user address a task may map itself (the top of the lower half
/// holds the stack, the boot-info page and the entry page).
pub const USER_MAP_MAX: u64 = 0x0000_7fff_0000_0000;
/// Where server ELFs are linked.
pub const ELF_BASE: u64 = 0x0000_0000_0040_0000;
/// Top of the first thread's stack. The first thread starts with `rsp = STACK_TOP - 8`,
/// as if its entry point had been called (the SysV stack alignment).
pub const STACK_TOP: u64 = 0x0000_7fff_ffff_0000;
/// Size of the first thread's stack.
pub const STACK_SIZE: u64 = 64 * 1024;
/// The first thread's IPC buffer: message words 8-119 (word `i` at byte `8 * i`).
pub const IPC_BUFFER_VA: u64 = 0x0000_7fff_ffff_a000;
/// The boot-info page (root task only): [`crate::bootinfo`].
pub const BOOTINFO_VA: u64 = 0x0000_7fff_ffff_8000;
/// IPC buffers of threads made with `ThreadCreate`: one page per kernel thread slot,
/// above [`USER_MAP_MAX`] so that a task cannot unmap them, and room for
/// [`THREAD_SLOTS_MAX`] of them below the first thread's stack.
pub const THREAD_IPC_BUFFERS_VA: u64 = 0x0000_7fff_c000_0000;
/// The most thread slots a kernel may have (thread numbers are u16; u16::MAX is none).
pub const THREAD_SLOTS_MAX: u64 = 0xffff;
const _: () = assert!(
    THREAD_IPC_BUFFERS_VA >= USER_MAP_MAX && THREAD_IPC_BUFFERS_VA + THREAD_SLOTS_MAX * 4096 <= STACK_TOP - STACK_SIZE
);

/// The IPC buffer of the thread in kernel slot `slot` (made with `ThreadCreate`).
pub const fn thread_ipc_buffer(slot: usize) -> u64 {
    THREAD_IPC_BUFFERS_VA + slot as u64 * 4096
}
