//! Writing to the terminal without ever panicking on its user: a closed pipe (`sim ... | head`)
//! ends output quietly, the command goes on to its normal end (a sweep still writes its report)
//! and exits with its normal code. `println!` would panic there ("failed printing to stdout").

use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

static STDOUT_GONE: AtomicBool = AtomicBool::new(false);
static STDERR_GONE: AtomicBool = AtomicBool::new(false);

fn write_to(gone: &AtomicBool, w: &mut dyn Write, args: fmt::Arguments<'_>) {
    if gone.load(Ordering::Relaxed) {
        return;
    }
    // Any write error (a closed pipe, a full disk behind a redirect) means nobody reads on.
    if w.write_fmt(args).and_then(|()| w.flush()).is_err() {
        gone.store(true, Ordering::Relaxed);
    }
}

/// One line (or more) to stdout.
pub fn out(args: fmt::Arguments<'_>) {
    let stdout = std::io::stdout();
    let mut lock = stdout.lock();
    write_to(&STDOUT_GONE, &mut lock, format_args!("{args}\n"));
}

/// Many lines to stdout, buffered (a long trace), stopping at the first failed write.
pub fn out_lines<'a>(lines: impl IntoIterator<Item = &'a str>) {
    if STDOUT_GONE.load(Ordering::Relaxed) {
        return;
    }
    let stdout = std::io::stdout();
    let mut w = std::io::BufWriter::new(stdout.lock());
    for line in lines {
        if writeln!(w, "{line}").is_err() {
            STDOUT_GONE.store(true, Ordering::Relaxed);
            return;
        }
    }
    if w.flush().is_err() {
        STDOUT_GONE.store(true, Ordering::Relaxed);
    }
}

/// Whether stdout still has a reader.
pub fn stdout_open() -> bool {
    !STDOUT_GONE.load(Ordering::Relaxed)
}

/// One line to stderr.
pub fn err(args: fmt::Arguments<'_>) {
    let stderr = std::io::stderr();
    let mut lock = stderr.lock();
    write_to(&STDERR_GONE, &mut lock, format_args!("{args}\n"));
}

/// Text to stderr without a newline (a progress line redrawn in place).
pub fn err_raw(args: fmt::Arguments<'_>) {
    let stderr = std::io::stderr();
    let mut lock = stderr.lock();
    write_to(&STDERR_GONE, &mut lock, args);
}

/// `println!` that never panics.
#[macro_export]
macro_rules! outln {
    () => { $crate::output::out(format_args!("")) };
    ($($arg:tt)*) => { $crate::output::out(format_args!($($arg)*)) };
}

/// `eprintln!` that never panics.
#[macro_export]
macro_rules! errln {
    () => { $crate::output::err(format_args!("")) };
    ($($arg:tt)*) => { $crate::output::err(format_args!($($arg)*)) };
}
