//! SIGINT and SIGTERM for long commands (sweeps, shrinks): the first signal sets a flag the
//! command polls, so it stops starting work, writes what it has (a sweep's summary, a shrink's
//! best result) and exits 130 (SIGINT) or 143 (SIGTERM); a second signal ends the process at
//! once, with the same code. Nothing runs inside the signal handler but signal-hook's own flag
//! stores.

use crate::exit::UsageError;
use signal_hook::consts::{SIGINT, SIGTERM};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

#[derive(Clone)]
pub struct Signals {
    received: Arc<AtomicUsize>,
}

impl Signals {
    /// Installs the handlers (once per command).
    pub fn install() -> Result<Self, UsageError> {
        let received = Arc::new(AtomicUsize::new(0));
        for (signal, code) in [(SIGINT, 130), (SIGTERM, 143)] {
            let seen = Arc::new(AtomicBool::new(false));
            // Registered first, so it sees `seen` as it was before this signal: only a second
            // signal ends the process.
            signal_hook::flag::register_conditional_shutdown(signal, code, seen.clone())
                .and_then(|_| signal_hook::flag::register(signal, seen))
                .and_then(|_| {
                    signal_hook::flag::register_usize(signal, received.clone(), signal as usize)
                })
                .map_err(|e| UsageError(format!("cannot install a signal handler: {e}")))?;
        }
        Ok(Signals { received })
    }

    /// The signal received so far, if any.
    pub fn received(&self) -> Option<i32> {
        match self.received.load(Ordering::Relaxed) {
            0 => None,
            s => Some(s as i32),
        }
    }

    /// The signal's name and the exit code a command stopped by it returns.
    pub fn describe(signal: i32) -> (&'static str, u8) {
        if signal == SIGTERM {
            ("SIGTERM", 143)
        } else {
            ("SIGINT", 130)
        }
    }
}
