//! The kernel command line: whitespace-separated `key=value` pairs and bare flags.
//!
//! Invariant: parsing never fails; unknown keys are the caller's business. A key given
//! twice resolves to its last value, as on Linux.

/// A borrowed command line.
#[derive(Clone, Copy, Debug)]
pub struct Cmdline<'a> {
    text: &'a str,
}

impl<'a> Cmdline<'a> {
    /// Wraps a command line. Bytes that are not UTF-8 end the usable part.
    pub fn new(bytes: &'a [u8]) -> Self {
        let text = match core::str::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => core::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or(""),
        };
        Cmdline { text }
    }

    /// The whole command line.
    pub fn as_str(&self) -> &'a str {
        self.text
    }

    /// The tokens, in order.
    pub fn tokens(&self) -> impl Iterator<Item = &'a str> {
        self.text.split_ascii_whitespace()
    }

    /// The value of the last `key=value` token for `key`; `Some("")` for a bare `key`.
    pub fn get(&self, key: &str) -> Option<&'a str> {
        let mut found = None;
        for tok in self.tokens() {
            match tok.split_once('=') {
                Some((k, v)) if k == key => found = Some(v),
                None if tok == key => found = Some(""),
                _ => {}
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_values_and_flags() {
        let c = Cmdline::new(b"  ktest=hang quiet  seed=12 ktest=spin ");
        assert_eq!(c.get("ktest"), Some("spin"));
        assert_eq!(c.get("quiet"), Some(""));
        assert_eq!(c.get("seed"), Some("12"));
        assert_eq!(c.get("missing"), None);
        assert_eq!(c.tokens().count(), 4);
    }

    #[test]
    fn invalid_utf8_truncates() {
        let c = Cmdline::new(b"a=1 \xff b=2");
        assert_eq!(c.as_str(), "a=1 ");
        assert_eq!(c.get("b"), None);
    }
}
