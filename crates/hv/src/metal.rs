//! The hardware guest's ABI with its VMM (`hv-kvm` on the host, `metal-guest` inside the vCPU):
//! where things sit in guest-physical memory, which ports exit, and what the hypercalls mean.
//! Guest-physical memory is identity-mapped below 1 GiB, so these are also guest addresses.

/// The GDT the VMM writes: null, kernel code 0x08, kernel data 0x10, user data 0x18, user code
/// 0x20, and the TSS at 0x28.
pub const GDT_GPA: u64 = 0x1000;
/// The guest runs at CPL 3 from its first instruction; only exception entries run at CPL 0, on
/// the TSS's `rsp0` stack. Hosts like this project's CI (KVM's PVM flavour, for nested runs
/// without VMX) run CPL-3 guest code natively but CPL-0 code through KVM's instruction emulator,
/// which lacks SSE; they refuse port I/O at CPL 3 whatever IOPL says, and cannot emulate `int n`
/// in long mode. So the guest's Rust code stays at CPL 3 and talks to the host only through
/// memory-mapped I/O (see docs/decisions.md).
pub const USER_CODE_SELECTOR: u16 = 0x23;
pub const USER_DATA_SELECTOR: u16 = 0x1b;
pub const TSS_SELECTOR: u16 = 0x28;
/// The 64-bit TSS (only `rsp0` is used) and the ring-0 stack it names.
pub const TSS_GPA: u64 = 0x5000;
pub const KERNEL_STACK_TOP: u64 = 0xf000;
/// The IDT the VMM points the vCPU at; the guest fills in its gates (`lidt` is privileged).
pub const IDT_GPA: u64 = 0xf000;
/// Page tables: PML4, one PDPT, one page directory of 2 MiB pages mapping the first 1 GiB.
pub const PML4_GPA: u64 = 0x2000;
pub const PDPT_GPA: u64 = 0x3000;
pub const PD_GPA: u64 = 0x4000;
/// Boot parameters (the workload), handed to the guest's entry in `rdi` (address) and `rsi`
/// (length).
pub const PARAMS_GPA: u64 = 0x1_0000;
pub const PARAMS_MAX: u64 = 0x10_0000 - PARAMS_GPA;
/// The guest image is linked here (`crates/metal-guest/link.ld`) and must end below the shared
/// region.
pub const IMAGE_GPA: u64 = 0x10_0000;
/// The shared region for the ring pipes, handed to the entry in `rdx` (address) and `rcx`
/// (length).
pub const SHM_GPA: u64 = 0x400_0000;

/// A 4-byte write of a doorbell id to this guest-physical address (no RAM behind it) rings that
/// doorbell: an MMIO ioeventfd with the id as its datamatch (Arca's doorbell shape). An id with
/// no ioeventfd exits to the VMM.
pub const DOORBELL_MMIO: u64 = 0x3000_0000;
/// An 8-byte read of this address is a hypercall: number in `r8`, arguments in `rdi`, `rsi`,
/// `rdx`, `r10`; the VMM answers the read with the result.
pub const HYPERCALL_MMIO: u64 = 0x3000_1000;
/// The interrupt line into the guest: an irqfd on this GSI of the in-kernel irqchip. (The guest
/// does not take interrupts yet; see `crates/metal-guest/src/arch.rs`.)
pub const IRQ_GSI: u32 = 5;

/// Hypercall numbers.
pub mod hypercall {
    /// The guest is done: `rdi` = exit code (0 = the workload ran to its end).
    pub const EXIT: u64 = 0;
    /// A log line: `rdi` = address, `rsi` = length (UTF-8).
    pub const LOG: u64 = 1;
    /// The bytes a receiver got on a pipe: `rdi` = workload pipe index, `rsi` = address,
    /// `rdx` = length.
    pub const RECEIVED: u64 = 2;
    /// An error the workload observed: `rdi` = address, `rsi` = length (UTF-8).
    pub const ERROR: u64 = 3;
    /// A CPU exception: `rdi` = vector, `rsi` = faulting `rip`, `rdx` = error code. The VMM
    /// stops the vCPU.
    pub const FAULT: u64 = 4;
    /// The guest panicked: `rdi` = address, `rsi` = length of the message.
    pub const PANIC: u64 = 5;
}
