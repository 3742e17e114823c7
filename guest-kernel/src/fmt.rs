//! Number formatting without `core::fmt`.
//!
//! `core::fmt`'s padding and float code contains SSE instructions that kill a VM whose
//! ring 0 runs in KVM's emulator (PVM hosts), so the kernel formats numbers itself. Each
//! function writes into a caller-provided buffer and returns the text.

/// Decimal digits of `n`.
pub fn dec(n: u64, buf: &mut [u8; 20]) -> &str {
    let mut i = buf.len();
    let mut n = n;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    core::str::from_utf8(&buf[i..]).unwrap_or("?")
}

/// Lower-case hex digits of `n`, zero-padded to at least `min_digits` (at most 16), no prefix.
pub fn hex(n: u64, min_digits: usize, buf: &mut [u8; 16]) -> &str {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut i = buf.len();
    let mut n = n;
    let stop = buf.len() - min_digits.min(16);
    loop {
        i -= 1;
        buf[i] = DIGITS[(n & 0xf) as usize];
        n >>= 4;
        if n == 0 && i <= stop {
            break;
        }
    }
    core::str::from_utf8(&buf[i..]).unwrap_or("?")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal() {
        let mut b = [0; 20];
        assert_eq!(dec(0, &mut b), "0");
        assert_eq!(dec(1234567890, &mut b), "1234567890");
        assert_eq!(dec(u64::MAX, &mut b), "18446744073709551615");
    }

    #[test]
    fn hexadecimal() {
        let mut b = [0; 16];
        assert_eq!(hex(0, 0, &mut b), "0");
        assert_eq!(hex(0xdead_beef, 0, &mut b), "deadbeef");
        assert_eq!(hex(0x1f, 4, &mut b), "001f");
        assert_eq!(hex(u64::MAX, 0, &mut b), "ffffffffffffffff");
        assert_eq!(hex(1, 99, &mut b), "0000000000000001");
    }
}
