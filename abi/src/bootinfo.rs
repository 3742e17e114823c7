//! The boot-info page the kernel maps read-only into the root task at
//! [`crate::layout::BOOTINFO_VA`]: which capabilities the root task holds and which boot
//! files there are.
//!
//! Layout (little-endian u64 words): 0 magic, 1 number of boot files, 2 the machine
//! capability's slot, 3 the root task's own task slot, then per boot file
//! [`FILE_WORDS`] words: capability slot, size in bytes, then the name (NUL-padded,
//! [`NAME_BYTES`] bytes).

/// Word 0.
pub const MAGIC: u64 = 0x6c34_626f_6f74_0001;
/// Words per boot file entry.
pub const FILE_WORDS: usize = 2 + NAME_BYTES / 8;
/// Bytes of name per boot file.
pub const NAME_BYTES: usize = 48;
/// The most boot files described.
pub const MAX_FILES: usize = (CMDLINE_LEN_OFFSET / 8 - 4) / FILE_WORDS;
/// Byte offset of the command line's length.
pub const CMDLINE_LEN_OFFSET: usize = 2040;
/// Byte offset of the kernel command line.
pub const CMDLINE_OFFSET: usize = 2048;
/// The longest command line passed on.
pub const CMDLINE_MAX: usize = 2048;
/// Slot of the first boot-file capability in the root task's table.
pub const FIRST_FILE_SLOT: u8 = 8;
/// Slot of the machine capability in the root task's table.
pub const MACHINE_SLOT: u8 = 1;
/// Slot where every task finds the endpoint its parent gave it (the root task's name
/// service for servers started by root).
pub const PARENT_SLOT: u8 = 0;
