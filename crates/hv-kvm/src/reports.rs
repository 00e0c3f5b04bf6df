//! The metal guest's side of the conversation with its VMM: the boot parameters it is started
//! with (its header, then one program's plan) and the hypercalls through which it reports what
//! it observed, collected on the vCPU thread for the oracles.

use crate::{ExitHandler, Hypercall};
use hv::metal::{BootHeader, hypercall};
use std::sync::{Arc, Mutex};

/// The boot parameters for a program: the metal guest's header, then the program's plan.
pub fn boot_params(header: &BootHeader, program: &[u8]) -> Vec<u8> {
    let mut params = header.encode().to_vec();
    params.extend_from_slice(program);
    params
}

/// Hypercalls a program's guest makes, collected on the vCPU thread.
#[derive(Default)]
pub struct GuestReports {
    pub received: Vec<(u64, Vec<u8>)>,
    pub errors: Vec<String>,
    pub exit_code: Option<u64>,
    pub fault: Option<[u64; 3]>,
}

/// Serves the metal guest's hypercalls, reading what it reports out of guest RAM.
pub struct ReportingHandler {
    pub ram: crate::GuestRam,
    pub reports: Arc<Mutex<GuestReports>>,
}

/// The most a guest can make the VMM copy out per hypercall.
const MAX_REPORT: u64 = 16 << 20;

impl ExitHandler for ReportingHandler {
    fn hypercall(&mut self, nr: u64, args: [u64; 4]) -> Hypercall {
        let Ok(mut reports) = self.reports.lock() else {
            return Hypercall::Stop;
        };
        let text =
            |ram: &crate::GuestRam, at: u64, len: u64| match ram.read_vec(at, len, MAX_REPORT) {
                Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                Err(e) => format!("<unreadable report: {e}>"),
            };
        match nr {
            hypercall::EXIT => {
                reports.exit_code = Some(args[0]);
                Hypercall::Stop
            }
            hypercall::RECEIVED => {
                match self.ram.read_vec(args[1], args[2], MAX_REPORT) {
                    Ok(bytes) => reports.received.push((args[0], bytes)),
                    Err(e) => reports.errors.push(format!("RECEIVED report: {e}")),
                }
                Hypercall::Return(0)
            }
            hypercall::ERROR | hypercall::LOG => {
                let line = text(&self.ram, args[0], args[1]);
                if nr == hypercall::ERROR {
                    reports.errors.push(line);
                }
                Hypercall::Return(0)
            }
            hypercall::PANIC => {
                let line = text(&self.ram, args[0], args[1]);
                reports.errors.push(format!("guest panic: {line}"));
                Hypercall::Return(0)
            }
            hypercall::FAULT => {
                reports.fault = Some([args[0], args[1], args[2]]);
                Hypercall::Stop
            }
            other => {
                reports.errors.push(format!("unknown hypercall {other}"));
                Hypercall::Return(u64::MAX)
            }
        }
    }

    fn stray_write(&mut self, address: u64, data: &[u8]) {
        if let Ok(mut reports) = self.reports.lock() {
            reports
                .errors
                .push(format!("write to {address:#x} with no device: {data:?}"));
        }
    }
}
