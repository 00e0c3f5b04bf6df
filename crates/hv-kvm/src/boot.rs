//! Long-mode boot: the VMM builds what firmware and a boot loader would (a flat GDT with kernel
//! and user segments and a TSS, page tables identity-mapping the first 1 GiB with 2 MiB user
//! pages) and starts the vCPU directly in 64-bit mode at CPL 3 at the image's entry, with SSE
//! enabled because the guest is compiled for the host target (see `hv::metal` for why CPL 3).

use crate::KvmError;
use crate::ram::GuestRam;
use hv::metal::{
    GDT_GPA, IDT_GPA, KERNEL_STACK_TOP, PD_GPA, PDPT_GPA, PML4_GPA, TSS_GPA, TSS_SELECTOR,
    USER_CODE_SELECTOR, USER_DATA_SELECTOR,
};
use kvm_bindings::{KVM_MAX_CPUID_ENTRIES, kvm_segment};
use kvm_ioctls::{Kvm, VcpuFd};

const CR0_PE: u64 = 1;
const CR0_MP: u64 = 1 << 1;
const CR0_ET: u64 = 1 << 4;
const CR0_NE: u64 = 1 << 5;
const CR0_WP: u64 = 1 << 16;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const CR4_OSFXSR: u64 = 1 << 9;
const CR4_OSXMMEXCPT: u64 = 1 << 10;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;
const PRESENT_WRITABLE_USER: u64 = 0b111;
const HUGE_PAGE: u64 = 1 << 7;
const TSS_LIMIT: u64 = 0x67;

/// The 16-byte system descriptor of an available 64-bit TSS at `base`.
fn tss_descriptor(base: u64) -> [u64; 2] {
    let low = (TSS_LIMIT & 0xffff)
        | ((base & 0xff_ffff) << 16)
        | (0x89 << 40)
        | (((base >> 24) & 0xff) << 56);
    [low, base >> 32]
}

/// Writes the GDT, the TSS and the page tables into guest RAM.
pub fn write_tables(ram: &GuestRam) -> Result<(), KvmError> {
    let [tss_low, tss_high] = tss_descriptor(TSS_GPA);
    for (i, entry) in [
        0u64,
        0x00af_9a00_0000_ffff, // kernel code: 64-bit, DPL 0
        0x00cf_9200_0000_ffff, // kernel data
        0x00cf_f200_0000_ffff, // user data: DPL 3
        0x00af_fa00_0000_ffff, // user code: 64-bit, DPL 3
        tss_low,
        tss_high,
    ]
    .into_iter()
    .enumerate()
    {
        ram.write_u64(GDT_GPA + 8 * i as u64, entry)?;
    }
    // rsp0 at offset 4; the I/O map base past the limit: no port is open to CPL 3.
    ram.write(TSS_GPA + 4, &KERNEL_STACK_TOP.to_le_bytes())?;
    ram.write(TSS_GPA + 102, &((TSS_LIMIT + 1) as u16).to_le_bytes())?;
    ram.write_u64(PML4_GPA, PDPT_GPA | PRESENT_WRITABLE_USER)?;
    ram.write_u64(PDPT_GPA, PD_GPA | PRESENT_WRITABLE_USER)?;
    for i in 0..512u64 {
        ram.write_u64(
            PD_GPA + 8 * i,
            (i << 21) | PRESENT_WRITABLE_USER | HUGE_PAGE,
        )?;
    }
    Ok(())
}

fn segment(selector: u16, code: bool) -> kvm_segment {
    kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector,
        type_: if code { 0b1011 } else { 0b0011 },
        present: 1,
        dpl: (selector & 3) as u8,
        db: u8::from(!code),
        s: 1,
        l: u8::from(code),
        g: 1,
        avl: 0,
        unusable: 0,
        padding: 0,
    }
}

/// Puts the vCPU in long mode at `entry` with `args` in `rdi`, `rsi`, `rdx`, `rcx` (the System V
/// argument registers, so the entry can call a Rust function directly).
pub fn enter_long_mode(
    kvm: &Kvm,
    vcpu: &VcpuFd,
    entry: u64,
    args: [u64; 4],
) -> Result<(), KvmError> {
    let cpuid = kvm
        .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(|e| KvmError::Ioctl("KVM_GET_SUPPORTED_CPUID", e))?;
    vcpu.set_cpuid2(&cpuid)
        .map_err(|e| KvmError::Ioctl("KVM_SET_CPUID2", e))?;
    let mut sregs = vcpu
        .get_sregs()
        .map_err(|e| KvmError::Ioctl("KVM_GET_SREGS", e))?;
    sregs.cr3 = PML4_GPA;
    sregs.cr4 = CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT;
    sregs.cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_PG;
    sregs.efer = EFER_LME | EFER_LMA;
    sregs.gdt.base = GDT_GPA;
    sregs.gdt.limit = 7 * 8 - 1;
    sregs.idt.base = IDT_GPA;
    sregs.idt.limit = 256 * 16 - 1;
    sregs.cs = segment(USER_CODE_SELECTOR, true);
    let data = segment(USER_DATA_SELECTOR, false);
    (sregs.ds, sregs.es, sregs.fs, sregs.gs, sregs.ss) = (data, data, data, data, data);
    sregs.tr = kvm_segment {
        base: TSS_GPA,
        limit: TSS_LIMIT as u32,
        selector: TSS_SELECTOR,
        type_: 0b1011, // busy 64-bit TSS
        present: 1,
        dpl: 0,
        db: 0,
        s: 0,
        l: 0,
        g: 0,
        avl: 0,
        unusable: 0,
        padding: 0,
    };
    vcpu.set_sregs(&sregs)
        .map_err(|e| KvmError::Ioctl("KVM_SET_SREGS", e))?;
    let mut regs = vcpu
        .get_regs()
        .map_err(|e| KvmError::Ioctl("KVM_GET_REGS", e))?;
    // Interrupts off.
    regs.rflags = 2;
    regs.rip = entry;
    (regs.rdi, regs.rsi, regs.rdx, regs.rcx) = (args[0], args[1], args[2], args[3]);
    vcpu.set_regs(&regs)
        .map_err(|e| KvmError::Ioctl("KVM_SET_REGS", e))
}
