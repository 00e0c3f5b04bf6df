//! x86-64 bare metal: the entry, exception reporting, hypercalls and doorbells.
//!
//! The guest runs at CPL 3 from its first instruction (see `hv::metal` for why) and reaches the
//! host only through memory-mapped I/O: a doorbell is a 4-byte write KVM matches against an
//! ioeventfd, a hypercall an 8-byte read the VMM answers. The VMM points the IDT at `IDT_GPA`;
//! the guest fills in exception gates whose CPL-0 stubs (a few integer instructions) report the
//! fault with a hypercall. Interrupts reach this guest through the event channel rather than the
//! IDT: on the hosts we run on it cannot execute `hlt` (CPL 0, which such hosts emulate without
//! SSE), so it reads the interrupt epoch the VMM publishes and halts by hypercall (see `rt`).
#![allow(unsafe_code)]

use core::sync::atomic::{AtomicU64, Ordering};
use hv::metal::{DOORBELL_MMIO, HYPERCALL_MMIO, IDT_GPA, IRQ_EPOCH_GPA, hypercall};

const STACK_SIZE: usize = 1 << 20;

#[repr(C, align(16))]
pub struct Stack([u8; STACK_SIZE]);

/// The boot stack (in .bss; the VMM zero-fills it).
pub static mut STACK: Stack = Stack([0; STACK_SIZE]);

core::arch::global_asm!(
    ".section .text.start, \"ax\"",
    ".global _start",
    "_start:",
    "lea rsp, [rip + {stack} + {size}]",
    "call {main}",
    "2: pause",
    "jmp 2b",
    stack = sym STACK,
    size = const STACK_SIZE,
    main = sym crate::metal_main,
);

// Exception stubs, 16 bytes apart: push a zero error code where the CPU pushes none, push the
// vector, and report the fault to the VMM (which stops the vCPU on FAULT).
core::arch::global_asm!(
    ".section .text",
    ".balign 16",
    ".global metal_exception_stubs",
    "metal_exception_stubs:",
    ".irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31",
    ".balign 16",
    ".if (\\v == 8) || (\\v >= 10 && \\v <= 14) || (\\v == 17) || (\\v == 21) || (\\v == 29) || (\\v == 30)",
    ".else",
    "push 0",
    ".endif",
    "push \\v",
    "jmp 3f",
    ".endr",
    "3:",
    "mov rdi, [rsp]",
    "mov rdx, [rsp + 8]",
    "mov rsi, [rsp + 16]",
    "mov r8, {fault}",
    "mov rax, {hypercall}",
    "mov rax, qword ptr [rax]",
    "4: pause",
    "jmp 4b",
    fault = const hypercall::FAULT,
    hypercall = const HYPERCALL_MMIO,
);

unsafe extern "C" {
    fn metal_exception_stubs();
}

/// An interrupt gate (IF cleared on entry) to kernel code selector 0x08.
fn gate(handler: u64) -> [u64; 2] {
    let low = (handler & 0xffff) | (0x08 << 16) | (0x8e00 << 32) | ((handler >> 16) & 0xffff) << 48;
    [low, handler >> 32]
}

/// Fills in the exception gates of the IDT the VMM reserved.
pub fn init_exceptions() {
    let stubs = metal_exception_stubs as *const () as u64;
    let idt = IDT_GPA as *mut [u64; 2];
    for vector in 0..32 {
        // SAFETY: the VMM reserves IDT_GPA..+4 KiB for the IDT (identity-mapped, user pages)
        // and points the vCPU's IDTR at it; nothing else uses that memory.
        unsafe {
            idt.add(vector)
                .write_volatile(gate(stubs + 16 * vector as u64))
        };
    }
}

/// A hypercall: an 8-byte read of `HYPERCALL_MMIO` with the number in `r8` and the arguments in
/// `rdi`, `rsi`, `rdx`, `r10`; the VMM answers the read with the result.
pub fn hypercall(nr: u64, args: [u64; 4]) -> u64 {
    let ret: u64;
    // SAFETY: a read of an address with no RAM behind it, served by the VMM.
    unsafe {
        core::arch::asm!(
            "mov rax, qword ptr [{addr}]",
            addr = in(reg) HYPERCALL_MMIO,
            in("r8") nr,
            in("rdi") args[0],
            in("rsi") args[1],
            in("rdx") args[2],
            in("r10") args[3],
            out("rax") ret,
            options(nostack),
        );
    }
    ret
}

/// Rings doorbell `id`: a 4-byte write to `DOORBELL_MMIO`, which KVM matches against the
/// registered ioeventfds (an unknown id exits to the VMM). The write leaves the vCPU through a
/// VM exit, which is serializing: every earlier store is visible before the host wakes.
pub fn ring_doorbell(id: u32) {
    // SAFETY: a write to an address with no RAM behind it, served by KVM.
    unsafe { (DOORBELL_MMIO as *mut u32).write_volatile(id) };
}

/// Reports `bytes` to the VMM with hypercall `nr` (after a leading argument, if any).
pub fn report(nr: u64, lead: Option<u64>, bytes: &[u8]) {
    let (ptr, len) = (bytes.as_ptr() as u64, bytes.len() as u64);
    match lead {
        Some(first) => hypercall(nr, [first, ptr, len, 0]),
        None => hypercall(nr, [ptr, len, 0, 0]),
    };
}

/// Interrupts raised so far (the event channel's epoch). Acquire: what the host stored before
/// raising is visible once its interrupt is.
pub fn irq_epoch() -> u64 {
    // SAFETY: the VMM reserves the 8-aligned word at IRQ_EPOCH_GPA (identity-mapped, user page)
    // for the epoch and only ever updates it atomically.
    unsafe { AtomicU64::from_ptr(IRQ_EPOCH_GPA as *mut u64) }.load(Ordering::Acquire)
}

/// Halts the vCPU until the interrupt epoch is past `ticket`; returns the epoch.
pub fn halt(ticket: u64) -> u64 {
    hypercall(hypercall::HALT, [ticket, 0, 0, 0])
}

pub fn exit(code: u64) -> ! {
    hypercall(hypercall::EXIT, [code, 0, 0, 0]);
    // The VMM stops the vCPU on EXIT; this is never resumed.
    loop {
        core::hint::spin_loop();
    }
}
