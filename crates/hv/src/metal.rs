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
/// The interrupt line into the guest: an irqfd on this GSI of the in-kernel irqchip. A guest that
/// cannot take interrupts (one confined to CPL 3, see `TSS_GPA`'s note) uses the event channel
/// below instead; the VMM raises both.
pub const IRQ_GSI: u32 = 5;
/// The interrupt line's event channel, in the manner of Xen's PV event channels: a u64 epoch at
/// this address that the VMM increments (a sequentially consistent read-modify-write, after the
/// monitor's stores) for every interrupt it raises, and the `HALT` hypercall, which blocks the
/// vCPU until the epoch passes a ticket. A guest thread takes the epoch as its ticket before
/// checking its wake condition and halts on that ticket, so an interrupt raised in between ends
/// the halt at once. The page lies between the TSS and the ring-0 stack, which grows down from
/// `KERNEL_STACK_TOP` and never reaches it.
pub const IRQ_EPOCH_GPA: u64 = 0x6000;

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
    /// Halt until the interrupt epoch (`IRQ_EPOCH_GPA`) is greater than `rdi`; returns the
    /// epoch. The vCPU's `hlt`, for a guest that cannot execute one.
    pub const HALT: u64 = 6;
}

/// Planted bugs of the hardware guest's platform layer (its executor and interrupt wait), the
/// metal forms of `hv::sim::planted`.
pub mod planted {
    /// The wait re-reads the interrupt epoch when it halts instead of using the ticket taken
    /// before the check, forgetting an interrupt that landed in between.
    pub const WFI_LOST_WAKEUP: u32 = 1 << 0;
}

/// The most spin-loop hints one jitter pause takes (`BootHeader::jitter_one_in`); a pause is
/// drawn uniformly below it. About 30 µs on this project's CI machines (docs/decisions.md).
pub const JITTER_MAX_SPINS: u32 = 1500;

/// The header of the boot parameters at `PARAMS_GPA`; the program's own encoded plan follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootHeader {
    /// `guest::planted` bits.
    pub bugs: u32,
    /// `ring_pipe::planted` bits for the guest's rings.
    pub ring_bugs: u32,
    /// `planted` bits of the platform layer.
    pub platform_bugs: u32,
    /// Delay injection at the guest's shared-memory accesses: one access in this many is
    /// followed by a seeded pause (0 = off); see `raw_shm::Jitter`.
    pub jitter_one_in: u32,
    /// Seeds the guest's preemption and jitter choices.
    pub seed: u64,
}

impl BootHeader {
    pub const MAGIC: [u8; 4] = *b"MGB2";
    pub const LEN: usize = 4 + 4 * 4 + 8;

    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        out[..4].copy_from_slice(&Self::MAGIC);
        let words = [
            self.bugs,
            self.ring_bugs,
            self.platform_bugs,
            self.jitter_one_in,
        ];
        for (i, w) in words.iter().enumerate() {
            out[4 + 4 * i..8 + 4 * i].copy_from_slice(&w.to_le_bytes());
        }
        out[20..28].copy_from_slice(&self.seed.to_le_bytes());
        out
    }

    /// The header at the start of `params`, and the program after it; `None` if `params` does
    /// not start with one.
    pub fn decode(params: &[u8]) -> Option<(Self, &[u8])> {
        let (head, program) = params.split_at_checked(Self::LEN)?;
        if head[..4] != Self::MAGIC {
            return None;
        }
        let word = |i: usize| {
            let mut w = [0u8; 4];
            w.copy_from_slice(&head[4 + 4 * i..8 + 4 * i]);
            u32::from_le_bytes(w)
        };
        let mut seed = [0u8; 8];
        seed.copy_from_slice(&head[20..28]);
        Some((
            Self {
                bugs: word(0),
                ring_bugs: word(1),
                platform_bugs: word(2),
                jitter_one_in: word(3),
                seed: u64::from_le_bytes(seed),
            },
            program,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::BootHeader;

    #[test]
    fn boot_header_round_trips_and_rejects_what_is_not_one() {
        let head = BootHeader {
            bugs: 1,
            ring_bugs: 2,
            platform_bugs: 3,
            jitter_one_in: 64,
            seed: u64::MAX - 5,
        };
        let mut params = head.encode().to_vec();
        params.extend_from_slice(b"ECHP...");
        assert_eq!(BootHeader::decode(&params), Some((head, &b"ECHP..."[..])));
        assert_eq!(BootHeader::decode(&params[..BootHeader::LEN - 1]), None);
        params[0] = b'X';
        assert_eq!(BootHeader::decode(&params), None);
    }
}
