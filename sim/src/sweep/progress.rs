//! The sweep's progress line on stderr: done/total, failures so far, seeds/s and the time left.
//! Redrawn in place on a terminal; elsewhere (a log file, CI) one line every half minute.

use crate::output::err_raw;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

pub struct Progress {
    tty: bool,
    total: u64,
    started: Instant,
    last: Option<Instant>,
}

fn eta(secs: f64) -> String {
    if !secs.is_finite() || secs > 1e7 {
        return "?".into();
    }
    let s = secs.round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

impl Progress {
    pub fn new(total: u64, started: Instant) -> Self {
        Progress {
            tty: std::io::stderr().is_terminal(),
            total,
            started,
            last: None,
        }
    }

    fn line(&self, done: u64, failures: u64) -> String {
        let elapsed = self.started.elapsed().as_secs_f64().max(1e-9); // determinism-ok: the sweep driver's wall clock, outside every run.
        let rate = done as f64 / elapsed;
        let left = (self.total - done.min(self.total)) as f64 / rate.max(1e-9);
        format!(
            "{done}/{} seeds, {failures} failing, {rate:.0} seeds/s, ETA {}",
            self.total,
            if done == 0 { "?".into() } else { eta(left) }
        )
    }

    /// Shows the state if it is time to.
    pub fn tick(&mut self, done: u64, failures: u64) {
        let now = Instant::now(); // determinism-ok: paces the progress line only.
        let every = if self.tty {
            Duration::from_millis(100)
        } else {
            Duration::from_secs(30)
        };
        if self.last.is_some_and(|l| now.duration_since(l) < every) {
            return;
        }
        if self.last.is_none() && !self.tty {
            // The first line off a terminal waits a whole period: short sweeps stay quiet.
            self.last = Some(now);
            return;
        }
        self.last = Some(now);
        let width = 30usize;
        let filled = ((done as f64 / self.total.max(1) as f64) * width as f64) as usize;
        let line = self.line(done, failures);
        if self.tty {
            err_raw(format_args!(
                "\r[{}{}] {line} \x1b[K",
                "#".repeat(filled.min(width)),
                ".".repeat(width - filled.min(width))
            ));
        } else {
            err_raw(format_args!("sweep: {line}\n"));
        }
    }

    /// Clears the redrawn line before other output goes to the terminal.
    pub fn clear(&self) {
        if self.tty && self.last.is_some() {
            err_raw(format_args!("\r\x1b[K"));
        }
    }

    /// The last state, on its own line (a terminal only).
    pub fn finish(&mut self, done: u64, failures: u64) {
        if self.tty {
            self.last = None;
            self.tick(done, failures);
            err_raw(format_args!("\n"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eta_reads_well() {
        assert_eq!(eta(5.2), "5s");
        assert_eq!(eta(75.0), "1m15s");
        assert_eq!(eta(7300.0), "2h01m");
        assert_eq!(eta(f64::INFINITY), "?");
    }
}
