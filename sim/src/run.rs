//! What every subcommand shares: the run's shape on the command line, turning it into a
//! [`RunSpec`] and printing a report (as text or JSON, its trace filtered or not).

use crate::exit::UsageError;
use crate::trace_filter::TraceFilter;
use crate::{json, outln};
use clap::Args;
use harness::{Catalogue, RunReport, RunSpec, StrategyName};
use simkit::{DecisionMode, MemMode};

#[derive(Args, Debug)]
pub struct Shape {
    /// Scheduling strategy.
    #[arg(long, default_value = "random", value_parser = ["random", "pct"])]
    pub strategy: String,
    /// PCT depth d (bugs needing d orderings); default 3, at most the scenario's step budget.
    #[arg(long, value_name = "D")]
    pub pct_depth: Option<u32>,
    /// Memory model (default tso, or the weakest mode the planted bug needs).
    #[arg(long, value_parser = ["sc", "tso", "relaxed"])]
    pub mem: Option<String>,
    /// Switch on a planted bug (see --list-bugs).
    #[arg(long, value_name = "BUG")]
    pub plant: Option<String>,
}

/// How a run's report is shown.
#[derive(Args, Debug, Clone, Default)]
pub struct Show {
    /// Print every trace line.
    #[arg(long)]
    pub trace: bool,
    /// Show only trace lines of these actors and event kinds (implies --trace):
    /// `actor=vcpu0|monitor,event=park|wake|halt`. An actor includes its sub-actors.
    #[arg(long, value_name = "FILTER")]
    pub trace_filter: Option<String>,
    /// One JSON object per run on stdout, for tools, instead of text lines.
    #[arg(long)]
    pub json: bool,
}

impl Show {
    pub fn wants_trace(&self) -> bool {
        self.trace || self.trace_filter.is_some()
    }

    pub fn filter(&self) -> Result<Option<TraceFilter>, UsageError> {
        self.trace_filter
            .as_deref()
            .map(TraceFilter::parse)
            .transpose()
    }
}

/// The spec for `scenario` (default: the planted bug's scenario, or the catalogue's default)
/// with the given shape, checked against the catalogue.
pub fn spec_from(
    catalogue: &Catalogue,
    scenario: Option<String>,
    shape: &Shape,
    source: DecisionMode,
) -> Result<RunSpec, UsageError> {
    let scenario = match (scenario, &shape.plant) {
        (Some(s), _) => s,
        (None, Some(bug)) => catalogue
            .find_bug(bug)
            .map(|b| b.scenario.to_string())
            .ok_or_else(|| {
                UsageError(format!(
                    "unknown planted bug '{bug}' (see `sim --list-bugs`)"
                ))
            })?,
        (None, None) => catalogue.default_scenario().to_string(),
    };
    let spec = RunSpec {
        scenario,
        source,
        // clap has already restricted these to known names.
        strategy: StrategyName::parse(&shape.strategy).unwrap_or(StrategyName::Random),
        pct_depth: shape.pct_depth,
        mem: shape.mem.as_deref().and_then(MemMode::parse),
        plant: shape.plant.clone(),
        capture_trace: false,
    };
    harness::validate(catalogue, &spec)?;
    Ok(spec)
}

/// The trace lines `show` asks for.
pub fn shown_trace<'a>(
    report: &'a RunReport,
    show: &Show,
    filter: Option<&TraceFilter>,
) -> Option<Vec<&'a str>> {
    if !show.wants_trace() {
        return None;
    }
    Some(
        report
            .trace_lines
            .iter()
            .flatten()
            .map(String::as_str)
            .filter(|l| filter.is_none_or(|f| f.keeps(l)))
            .collect(),
    )
}

pub fn print_report(report: &RunReport, show: &Show) -> Result<(), UsageError> {
    let filter = show.filter()?;
    let trace = shown_trace(report, show, filter.as_ref());
    if show.json {
        json::print(&json::run(report, trace));
        return Ok(());
    }
    if let Some(lines) = trace {
        crate::output::out_lines(lines);
    }
    let opts: Vec<String> = report
        .options
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    outln!("options: {}", opts.join(" "));
    outln!(
        "steps={} sim_time_ns={} decisions={}",
        report.steps,
        report.sim_ns,
        report.draws
    );
    for v in &report.violations {
        outln!("violation: {v}");
    }
    outln!("{}", report.verdict_line());
    Ok(())
}
