//! The kernel console: `kprint!`/`kprintln!` over the serial port, without `core::fmt`.
//!
//! Each argument implements [`Show`]. Integers print in decimal; wrap them in [`Hex`] for
//! hex. Output goes straight to the UART: the kernel is single-threaded with interrupts
//! off, so there is no lock.

use crate::arch::serial;
use l4_kernel::fmt;

/// Something the console can print.
pub trait Show {
    fn show(&self);
}

impl Show for &str {
    fn show(&self) {
        serial::write_bytes(self.as_bytes());
    }
}

macro_rules! show_unsigned {
    ($($t:ty),*) => {$(
        impl Show for $t {
            fn show(&self) {
                let mut buf = [0u8; 20];
                serial::write_bytes(fmt::dec(*self as u64, &mut buf).as_bytes());
            }
        }
    )*};
}
show_unsigned!(u8, u16, u32, u64, usize);

/// Prints a number as `0x` and 16 hex digits.
pub struct Hex(pub u64);

impl Show for Hex {
    fn show(&self) {
        let mut buf = [0u8; 16];
        serial::write_bytes(b"0x");
        serial::write_bytes(fmt::hex(self.0, 16, &mut buf).as_bytes());
    }
}

/// Prints raw bytes, replacing anything that is not printable ASCII with `.`.
pub struct Bytes<'a>(pub &'a [u8]);

impl Show for Bytes<'_> {
    fn show(&self) {
        for &b in self.0 {
            serial::write_bytes(&[if (0x20..0x7f).contains(&b) { b } else { b'.' }]);
        }
    }
}

/// Prints a boot-info error by name.
pub struct Debug<'a>(pub &'a l4_kernel::boot::pvh::Error);

impl Show for Debug<'_> {
    fn show(&self) {
        use l4_kernel::boot::pvh::Error;
        match self.0 {
            Error::StartInfoUnreadable => "start info unreadable".show(),
            Error::BadMagic(m) => {
                "bad magic ".show();
                Hex(*m as u64).show();
            }
            Error::MemmapUnreadable => "memory map missing or unreadable".show(),
            Error::ModlistUnreadable => "module list unreadable".show(),
        }
    }
}

/// Prints each argument in turn.
#[macro_export]
macro_rules! kprint {
    ($($arg:expr),* $(,)?) => {{
        $( $crate::console::Show::show(&$arg); )*
    }};
}

/// Prints each argument in turn, then a newline.
#[macro_export]
macro_rules! kprintln {
    ($($arg:expr),* $(,)?) => {{
        $( $crate::console::Show::show(&$arg); )*
        $crate::console::Show::show(&"\n");
    }};
}
