//! The register file gdb sees: x86-64 with SSE (gdbstub_arch's core registers, in gdb's
//! standard order), then the segment bases and the system registers that a kernel
//! developer reads first (`p $cr3`, `info registers cr0`), as QEMU's gdbstub offers them.
//!
//! Invariant: the target description lists the registers in exactly the order
//! [`L4Regs::gdb_serialize`] writes them (gdb numbers registers by their place in the
//! description), and every register has the size the description gives it.

use gdbstub::arch::{Arch, Registers};
use gdbstub_arch::x86::reg::id::X86_64CoreRegId;
use gdbstub_arch::x86::reg::X86_64CoreRegs;

/// The registers after the core set, in their gdb order (all 64 bits).
pub const EXTRA: [&str; 9] = ["fs_base", "gs_base", "k_gs_base", "cr0", "cr2", "cr3", "cr4", "cr8", "efer"];

/// Bytes of gdbstub_arch's core register block (rax..mxcsr).
const CORE_BYTES: usize = 0x218;

/// Every register gdb reads and writes with `g`/`G`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct L4Regs {
    pub core: X86_64CoreRegs,
    /// The values of [`EXTRA`], in that order.
    pub extra: [u64; 9],
}

impl Registers for L4Regs {
    type ProgramCounter = u64;

    fn pc(&self) -> u64 {
        self.core.rip
    }

    fn gdb_serialize(&self, mut write_byte: impl FnMut(Option<u8>)) {
        self.core.gdb_serialize(&mut write_byte);
        for v in self.extra {
            for b in v.to_le_bytes() {
                write_byte(Some(b));
            }
        }
    }

    fn gdb_deserialize(&mut self, bytes: &[u8]) -> Result<(), ()> {
        if bytes.len() != CORE_BYTES + 8 * EXTRA.len() {
            return Err(());
        }
        self.core.gdb_deserialize(&bytes[..CORE_BYTES])?;
        for (v, chunk) in self.extra.iter_mut().zip(bytes[CORE_BYTES..].chunks_exact(8)) {
            *v = u64::from_le_bytes(chunk.try_into().map_err(|_| ())?);
        }
        Ok(())
    }
}

/// x86-64 as l4vmm's stub serves it.
pub enum L4X86_64 {}

impl Arch for L4X86_64 {
    type Usize = u64;
    type Registers = L4Regs;
    // Registers are read and written as a whole (`g`/`G`); single-register packets are
    // not offered, so the core ids are only nominal.
    type RegId = X86_64CoreRegId;
    type BreakpointKind = usize;

    fn target_description_xml() -> Option<&'static str> {
        Some(TARGET_XML)
    }
}

/// The target description: gdb's standard i386 core and SSE features (whose register
/// names gdb requires), the segment-base feature gdb knows for x86-64, and the system
/// registers with their bits named.
const TARGET_XML: &str = r#"<?xml version="1.0"?>
<!DOCTYPE target SYSTEM "gdb-target.dtd">
<target version="1.0">
<architecture>i386:x86-64</architecture>
<feature name="org.gnu.gdb.i386.core">
<flags id="i386_eflags" size="4">
<field name="CF" start="0" end="0"/><field name="" start="1" end="1"/><field name="PF" start="2" end="2"/>
<field name="AF" start="4" end="4"/><field name="ZF" start="6" end="6"/><field name="SF" start="7" end="7"/>
<field name="TF" start="8" end="8"/><field name="IF" start="9" end="9"/><field name="DF" start="10" end="10"/>
<field name="OF" start="11" end="11"/><field name="NT" start="14" end="14"/><field name="RF" start="16" end="16"/>
<field name="VM" start="17" end="17"/><field name="AC" start="18" end="18"/><field name="VIF" start="19" end="19"/>
<field name="VIP" start="20" end="20"/><field name="ID" start="21" end="21"/>
</flags>
<reg name="rax" bitsize="64" type="int64"/>
<reg name="rbx" bitsize="64" type="int64"/>
<reg name="rcx" bitsize="64" type="int64"/>
<reg name="rdx" bitsize="64" type="int64"/>
<reg name="rsi" bitsize="64" type="int64"/>
<reg name="rdi" bitsize="64" type="int64"/>
<reg name="rbp" bitsize="64" type="data_ptr"/>
<reg name="rsp" bitsize="64" type="data_ptr"/>
<reg name="r8" bitsize="64" type="int64"/>
<reg name="r9" bitsize="64" type="int64"/>
<reg name="r10" bitsize="64" type="int64"/>
<reg name="r11" bitsize="64" type="int64"/>
<reg name="r12" bitsize="64" type="int64"/>
<reg name="r13" bitsize="64" type="int64"/>
<reg name="r14" bitsize="64" type="int64"/>
<reg name="r15" bitsize="64" type="int64"/>
<reg name="rip" bitsize="64" type="code_ptr"/>
<reg name="eflags" bitsize="32" type="i386_eflags"/>
<reg name="cs" bitsize="32" type="int32"/>
<reg name="ss" bitsize="32" type="int32"/>
<reg name="ds" bitsize="32" type="int32"/>
<reg name="es" bitsize="32" type="int32"/>
<reg name="fs" bitsize="32" type="int32"/>
<reg name="gs" bitsize="32" type="int32"/>
<reg name="st0" bitsize="80" type="i387_ext"/>
<reg name="st1" bitsize="80" type="i387_ext"/>
<reg name="st2" bitsize="80" type="i387_ext"/>
<reg name="st3" bitsize="80" type="i387_ext"/>
<reg name="st4" bitsize="80" type="i387_ext"/>
<reg name="st5" bitsize="80" type="i387_ext"/>
<reg name="st6" bitsize="80" type="i387_ext"/>
<reg name="st7" bitsize="80" type="i387_ext"/>
<reg name="fctrl" bitsize="32" type="int" group="float"/>
<reg name="fstat" bitsize="32" type="int" group="float"/>
<reg name="ftag" bitsize="32" type="int" group="float"/>
<reg name="fiseg" bitsize="32" type="int" group="float"/>
<reg name="fioff" bitsize="32" type="int" group="float"/>
<reg name="foseg" bitsize="32" type="int" group="float"/>
<reg name="fooff" bitsize="32" type="int" group="float"/>
<reg name="fop" bitsize="32" type="int" group="float"/>
</feature>
<feature name="org.gnu.gdb.i386.sse">
<vector id="v8bf16" type="bfloat16" count="8"/>
<vector id="v4f" type="ieee_single" count="4"/>
<vector id="v2d" type="ieee_double" count="2"/>
<vector id="v16i8" type="int8" count="16"/>
<vector id="v8i16" type="int16" count="8"/>
<vector id="v4i32" type="int32" count="4"/>
<vector id="v2i64" type="int64" count="2"/>
<union id="vec128">
<field name="v8_bfloat16" type="v8bf16"/><field name="v4_float" type="v4f"/><field name="v2_double" type="v2d"/>
<field name="v16_int8" type="v16i8"/><field name="v8_int16" type="v8i16"/><field name="v4_int32" type="v4i32"/>
<field name="v2_int64" type="v2i64"/><field name="uint128" type="uint128"/>
</union>
<flags id="i386_mxcsr" size="4">
<field name="IE" start="0" end="0"/><field name="DE" start="1" end="1"/><field name="ZE" start="2" end="2"/>
<field name="OE" start="3" end="3"/><field name="UE" start="4" end="4"/><field name="PE" start="5" end="5"/>
<field name="DAZ" start="6" end="6"/><field name="IM" start="7" end="7"/><field name="DM" start="8" end="8"/>
<field name="ZM" start="9" end="9"/><field name="OM" start="10" end="10"/><field name="UM" start="11" end="11"/>
<field name="PM" start="12" end="12"/><field name="FZ" start="15" end="15"/>
</flags>
<reg name="xmm0" bitsize="128" type="vec128"/>
<reg name="xmm1" bitsize="128" type="vec128"/>
<reg name="xmm2" bitsize="128" type="vec128"/>
<reg name="xmm3" bitsize="128" type="vec128"/>
<reg name="xmm4" bitsize="128" type="vec128"/>
<reg name="xmm5" bitsize="128" type="vec128"/>
<reg name="xmm6" bitsize="128" type="vec128"/>
<reg name="xmm7" bitsize="128" type="vec128"/>
<reg name="xmm8" bitsize="128" type="vec128"/>
<reg name="xmm9" bitsize="128" type="vec128"/>
<reg name="xmm10" bitsize="128" type="vec128"/>
<reg name="xmm11" bitsize="128" type="vec128"/>
<reg name="xmm12" bitsize="128" type="vec128"/>
<reg name="xmm13" bitsize="128" type="vec128"/>
<reg name="xmm14" bitsize="128" type="vec128"/>
<reg name="xmm15" bitsize="128" type="vec128"/>
<reg name="mxcsr" bitsize="32" type="i386_mxcsr" group="vector"/>
</feature>
<feature name="org.gnu.gdb.i386.segments">
<reg name="fs_base" bitsize="64" type="int"/>
<reg name="gs_base" bitsize="64" type="int"/>
</feature>
<feature name="org.l4vmm.x86_64.sys">
<flags id="l4_cr0" size="8">
<field name="PE" start="0" end="0"/><field name="MP" start="1" end="1"/><field name="EM" start="2" end="2"/>
<field name="TS" start="3" end="3"/><field name="ET" start="4" end="4"/><field name="NE" start="5" end="5"/>
<field name="WP" start="16" end="16"/><field name="AM" start="18" end="18"/><field name="NW" start="29" end="29"/>
<field name="CD" start="30" end="30"/><field name="PG" start="31" end="31"/>
</flags>
<flags id="l4_cr4" size="8">
<field name="VME" start="0" end="0"/><field name="PVI" start="1" end="1"/><field name="TSD" start="2" end="2"/>
<field name="DE" start="3" end="3"/><field name="PSE" start="4" end="4"/><field name="PAE" start="5" end="5"/>
<field name="MCE" start="6" end="6"/><field name="PGE" start="7" end="7"/><field name="PCE" start="8" end="8"/>
<field name="OSFXSR" start="9" end="9"/><field name="OSXMMEXCPT" start="10" end="10"/>
<field name="UMIP" start="11" end="11"/><field name="LA57" start="12" end="12"/>
<field name="FSGSBASE" start="16" end="16"/><field name="PCIDE" start="17" end="17"/>
<field name="OSXSAVE" start="18" end="18"/><field name="SMEP" start="20" end="20"/>
<field name="SMAP" start="21" end="21"/><field name="PKE" start="22" end="22"/>
</flags>
<flags id="l4_efer" size="8">
<field name="SCE" start="0" end="0"/><field name="LME" start="8" end="8"/><field name="LMA" start="10" end="10"/>
<field name="NXE" start="11" end="11"/><field name="SVME" start="12" end="12"/>
<field name="FFXSR" start="14" end="14"/>
</flags>
<reg name="k_gs_base" bitsize="64" type="int"/>
<reg name="cr0" bitsize="64" type="l4_cr0"/>
<reg name="cr2" bitsize="64" type="int"/>
<reg name="cr3" bitsize="64" type="int"/>
<reg name="cr4" bitsize="64" type="l4_cr4"/>
<reg name="cr8" bitsize="64" type="int"/>
<reg name="efer" bitsize="64" type="l4_efer"/>
</feature>
</target>"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_round_trip_and_match_the_description() {
        let mut r = L4Regs::default();
        r.core.rip = 0x1234;
        r.core.regs[3] = 7;
        for (i, v) in r.extra.iter_mut().enumerate() {
            *v = 0x1000 + i as u64;
        }
        let mut bytes = Vec::new();
        r.gdb_serialize(|b| bytes.push(b.unwrap_or(0)));
        let mut back = L4Regs::default();
        back.gdb_deserialize(&bytes).unwrap();
        assert_eq!(back, r);
        assert!(back.gdb_deserialize(&bytes[1..]).is_err(), "a short G packet is refused");
        // The description's sizes add up to the serialized block, in the same order.
        let sizes: u64 = TARGET_XML
            .lines()
            .filter(|l| l.starts_with("<reg "))
            .map(|l| l.split("bitsize=\"").nth(1).unwrap().split('"').next().unwrap().parse::<u64>().unwrap())
            .sum();
        assert_eq!(sizes / 8, bytes.len() as u64);
        let names: Vec<&str> = TARGET_XML
            .lines()
            .filter(|l| l.starts_with("<reg "))
            .map(|l| l.split("name=\"").nth(1).unwrap().split('"').next().unwrap())
            .collect();
        let order = ["fs_base", "gs_base", "k_gs_base", "cr0", "cr2", "cr3", "cr4", "cr8", "efer"];
        assert_eq!(&names[names.len() - 9..], &order);
        assert_eq!(EXTRA, order);
    }
}
