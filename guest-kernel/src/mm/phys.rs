//! Access to physical memory, which the platform provides: the kernel's direct map on the
//! machine, a byte array in host tests.

/// Physical memory as the portable kernel sees it.
pub trait PhysMem {
    /// Reads the u64 at `pa` (8-byte aligned).
    fn read_u64(&self, pa: u64) -> u64;
    /// Writes the u64 at `pa` (8-byte aligned).
    fn write_u64(&mut self, pa: u64, value: u64);
    /// Copies bytes out of physical memory.
    fn read_bytes(&self, pa: u64, buf: &mut [u8]);
    /// Copies bytes into physical memory.
    fn write_bytes(&mut self, pa: u64, bytes: &[u8]);
    /// Zeroes the frame at `pa` (4 KiB aligned). The platform picks the cheapest way: on
    /// l4vmm it asks the VMM, so no bulk stores run in (possibly emulated) ring 0.
    fn zero_frame(&mut self, pa: u64);
    /// Copies the frame at `src` to the frame at `dst` (both 4 KiB aligned).
    fn copy_frame(&mut self, dst: u64, src: u64) {
        let mut buf = [0u8; 512];
        for off in (0..4096).step_by(512) {
            self.read_bytes(src + off, &mut buf);
            self.write_bytes(dst + off, &buf);
        }
    }
}

#[cfg(test)]
pub mod fake {
    //! A sparse fake physical memory for host tests.
    use super::PhysMem;
    use std::collections::HashMap;

    #[derive(Default)]
    pub struct FakeMem {
        pub pages: HashMap<u64, Box<[u8; 4096]>>,
        pub zeroed: usize,
    }

    impl FakeMem {
        fn page(&mut self, pa: u64) -> &mut [u8; 4096] {
            self.pages.entry(pa & !0xfff).or_insert_with(|| Box::new([0; 4096]))
        }
    }

    impl PhysMem for FakeMem {
        fn read_u64(&self, pa: u64) -> u64 {
            let mut b = [0u8; 8];
            self.read_bytes(pa, &mut b);
            u64::from_le_bytes(b)
        }
        fn write_u64(&mut self, pa: u64, value: u64) {
            self.write_bytes(pa, &value.to_le_bytes());
        }
        fn read_bytes(&self, pa: u64, buf: &mut [u8]) {
            for (i, b) in buf.iter_mut().enumerate() {
                let a = pa + i as u64;
                *b = self.pages.get(&(a & !0xfff)).map_or(0, |p| p[(a & 0xfff) as usize]);
            }
        }
        fn write_bytes(&mut self, pa: u64, bytes: &[u8]) {
            for (i, b) in bytes.iter().enumerate() {
                let a = pa + i as u64;
                self.page(a)[(a & 0xfff) as usize] = *b;
            }
        }
        fn zero_frame(&mut self, pa: u64) {
            self.zeroed += 1;
            *self.page(pa) = [0; 4096];
        }
    }
}
