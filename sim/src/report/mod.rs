//! `sim report FILE`: a failing (or passing) run as a picture: a self-contained HTML page with
//! a lane per actor, arrows for what links events, the violation marked where it was first
//! visible, and the trace below, searchable. Sweeps write one for each failure they find.

mod html;
pub mod layout;

use crate::exit::UsageError;
use crate::files::write_atomic;
use crate::replay_file::ReplayFile;
use crate::{errln, outln};
use clap::Args;
use harness::Catalogue;
pub use html::render;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct ReportArgs {
    /// A replay file (from a sweep, `sim --seed N --save FILE` or `sim shrink`).
    file: PathBuf,
    /// Where to write the page (default: next to FILE, `.html`).
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn run(catalogue: &Catalogue, args: ReportArgs) -> Result<ExitCode, UsageError> {
    let file = ReplayFile::read(&args.file)?;
    let mut spec = file.spec()?;
    spec.capture_trace = true;
    let report = harness::run(catalogue, &spec)?;
    if format!("{:016x}", report.trace_hash) != file.trace_hash {
        errln!(
            "sim: report: this run's trace ({:016x}) differs from the file's ({}); drawing this run (see `sim replay` for the difference)",
            report.trace_hash,
            file.trace_hash
        );
    }
    let out = args.out.unwrap_or_else(|| args.file.with_extension("html"));
    let page = render(&report, &file, Some(&args.file));
    write_atomic(&out, page.as_bytes())
        .map_err(|e| UsageError(format!("cannot write {}: {e}", out.display())))?;
    outln!("report: {}", out.display());
    outln!("{}", report.verdict_line());
    Ok(ExitCode::SUCCESS)
}
