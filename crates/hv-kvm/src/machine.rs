//! One VM with one vCPU: KVM system and VM handles, guest RAM as memory slot 0, the in-kernel
//! irqchip (created before the vCPU, as x86 requires), the interrupt line (an irqfd) and the
//! doorbells (ioeventfds on the doorbell port, one datamatch per doorbell id).

use crate::doorbells::Doorbells;
use crate::events::EventChannel;
use crate::ram::GuestRam;
use crate::signals::{DoorbellWaiter, IrqLine};
use crate::vcpu::{ExitHandler, VcpuThread};
use crate::{KvmError, boot, elf};
use hv::metal::{IMAGE_GPA, IRQ_GSI, PARAMS_GPA, PARAMS_MAX, SHM_GPA};
use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use raw_shm::RawShm;
use std::sync::{Arc, Mutex};
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

/// Where the TSS pages of the VMX real-mode emulation go (three pages below the BIOS area; the
/// guest never touches them).
const TSS_ADDRESS: usize = 0xfffb_d000;

/// Whether this machine can run hardware runs, or why not.
pub fn available() -> Result<(), KvmError> {
    Kvm::new().map(|_| ()).map_err(KvmError::NoKvm)
}

pub struct Machine {
    kvm: Kvm,
    vm: Arc<VmFd>,
    ram: GuestRam,
    shm_len: u64,
    /// Taken by `start`.
    vcpu: Mutex<Option<VcpuFd>>,
    loaded: bool,
    doorbells: Arc<Doorbells>,
    events: Arc<EventChannel>,
}

impl Machine {
    /// A VM whose RAM holds the boot area, the image and a shared region of `shm_len` bytes.
    pub fn new(shm_len: u64) -> Result<Self, KvmError> {
        let kvm = Kvm::new().map_err(KvmError::NoKvm)?;
        let vm = kvm
            .create_vm()
            .map_err(|e| KvmError::Ioctl("KVM_CREATE_VM", e))?;
        vm.set_tss_address(TSS_ADDRESS)
            .map_err(|e| KvmError::Ioctl("KVM_SET_TSS_ADDR", e))?;
        vm.create_irq_chip()
            .map_err(|e| KvmError::Ioctl("KVM_CREATE_IRQCHIP", e))?;
        // Whole 2 MiB pages, so the identity map covers RAM exactly.
        let ram_len = (SHM_GPA + shm_len).next_multiple_of(2 << 20);
        let ram = GuestRam::new(ram_len as usize)?;
        let region = kvm_userspace_memory_region {
            slot: 0,
            flags: 0,
            guest_phys_addr: 0,
            memory_size: ram_len,
            userspace_addr: ram.host_address(),
        };
        // SAFETY: the region is our live mapping of `ram_len` bytes; the VM fd is dropped
        // (and with it the slot) before the mapping, whose owner `ram` lives in this struct
        // and in every shared-memory view.
        #[allow(unsafe_code)]
        unsafe { vm.set_user_memory_region(region) }
            .map_err(|e| KvmError::Ioctl("KVM_SET_USER_MEMORY_REGION", e))?;
        boot::write_tables(&ram)?;
        let vcpu = vm
            .create_vcpu(0)
            .map_err(|e| KvmError::Ioctl("KVM_CREATE_VCPU", e))?;
        let vm = Arc::new(vm);
        let events = Arc::new(EventChannel::new(&ram)?);
        Ok(Self {
            kvm,
            vm: vm.clone(),
            ram,
            shm_len,
            vcpu: Mutex::new(Some(vcpu)),
            loaded: false,
            doorbells: Arc::new(Doorbells {
                vm,
                fds: Mutex::default(),
            }),
            events,
        })
    }

    pub fn ram(&self) -> &GuestRam {
        &self.ram
    }

    /// The shared region, as the host sees it.
    pub fn shm(&self) -> Result<RawShm, KvmError> {
        self.ram.shm(SHM_GPA, self.shm_len)
    }

    /// Loads the guest image and its boot parameters, and points the vCPU at the entry in long
    /// mode. Once per machine: the image's `.bss` relies on fresh RAM being zero.
    pub fn load(&mut self, image: &[u8], params: &[u8]) -> Result<(), KvmError> {
        if self.loaded {
            return Err(KvmError::AlreadyLoaded);
        }
        self.loaded = true;
        let entry = elf::load_fresh(&self.ram, image, IMAGE_GPA, SHM_GPA)?;
        if params.len() as u64 > PARAMS_MAX {
            return Err(KvmError::ParamsTooLarge(params.len()));
        }
        self.ram.write(PARAMS_GPA, params)?;
        let vcpu = self.vcpu.lock().map_err(|_| KvmError::Poisoned("vcpu"))?;
        let vcpu = vcpu.as_ref().ok_or(KvmError::AlreadyStarted)?;
        boot::enter_long_mode(
            &self.kvm,
            vcpu,
            entry,
            [PARAMS_GPA, params.len() as u64, SHM_GPA, self.shm_len],
        )
    }

    /// The interrupt line into the guest: irqfd on `IRQ_GSI`, and the event channel's epoch for
    /// a guest that halts by hypercall.
    pub fn irq_line(&self) -> Result<IrqLine, KvmError> {
        let fd = EventFd::new(EFD_NONBLOCK).map_err(|e| KvmError::Os("eventfd", e))?;
        self.vm
            .register_irqfd(&fd, IRQ_GSI)
            .map_err(|e| KvmError::Ioctl("KVM_IRQFD", e))?;
        Ok(IrqLine::new(fd, self.events.clone()))
    }

    /// The host side of doorbell `id`: an ioeventfd matching a 4-byte write of `id` to
    /// `DOORBELL_MMIO`. Asking again for the same id gives another handle on the same counter.
    /// Needs a tokio reactor.
    pub fn doorbell(&self, id: u64) -> Result<DoorbellWaiter, KvmError> {
        DoorbellWaiter::new(self.doorbells.handle(id)?)
    }

    /// Whether the vCPU is halted now, waiting for an interrupt (the `HALT` hypercall).
    pub fn is_halted(&self) -> bool {
        self.events.is_halted()
    }

    /// Starts the vCPU on its own thread; `handler` serves its exits. Once per machine.
    pub fn start(&self, handler: impl ExitHandler) -> Result<VcpuThread, KvmError> {
        let vcpu = self
            .vcpu
            .lock()
            .map_err(|_| KvmError::Poisoned("vcpu"))?
            .take()
            .ok_or(KvmError::AlreadyStarted)?;
        VcpuThread::spawn(vcpu, self.doorbells.clone(), self.events.clone(), handler)
    }
}
