//! One run of one scenario of a catalogue.

use crate::{Catalogue, PlantedBug, RunReport, RunSpec, Scenario, Setup, SpecError, StrategyName};
use simkit::{DecisionSource, MemMode, Sim, StrategyKind};

fn resolve(
    catalogue: &Catalogue,
    spec: &RunSpec,
) -> Result<(&'static dyn Scenario, Option<&'static PlantedBug>), SpecError> {
    let scenario = catalogue
        .find(&spec.scenario)
        .ok_or_else(|| SpecError::UnknownScenario(spec.scenario.clone()))?;
    let bug = match &spec.plant {
        None => None,
        Some(name) => {
            let bug = catalogue
                .find_bug(name)
                .ok_or_else(|| SpecError::UnknownBug(name.clone()))?;
            if bug.scenario != scenario.name() {
                return Err(SpecError::BugInOtherScenario {
                    bug: name.clone(),
                    scenario: bug.scenario.to_string(),
                    wanted: scenario.name().to_string(),
                });
            }
            if !cfg!(feature = "planted-bugs") {
                return Err(SpecError::PlantedBugsNotCompiled(name.clone()));
            }
            Some(bug)
        }
    };
    if let (StrategyName::Pct, Some(depth)) = (spec.strategy, spec.pct_depth) {
        let max = scenario.kernel_options().max_steps;
        if depth == 0 || u64::from(depth) > max {
            return Err(SpecError::PctDepth {
                depth,
                scenario: scenario.name().to_string(),
                max,
            });
        }
    }
    Ok((scenario, bug))
}

/// Checks names without running anything.
pub fn validate(catalogue: &Catalogue, spec: &RunSpec) -> Result<(), SpecError> {
    resolve(catalogue, spec).map(|_| ())
}

/// The memory model `spec` runs under: as given, else the weakest its planted bug needs, else
/// TSO.
pub fn resolved_mem(catalogue: &Catalogue, spec: &RunSpec) -> Result<MemMode, SpecError> {
    let (_, bug) = resolve(catalogue, spec)?;
    Ok(mem_of(spec, bug))
}

fn mem_of(spec: &RunSpec, bug: Option<&'static PlantedBug>) -> MemMode {
    spec.mem
        .or(bug.and_then(|b| b.needs_mem))
        .unwrap_or(MemMode::Tso)
}

/// Runs the scenario `spec` names, from its decision source, and judges it: the scenario's
/// own oracles, and the harness's liveness and crash oracle before them.
pub fn run(catalogue: &Catalogue, spec: &RunSpec) -> Result<RunReport, SpecError> {
    let (scenario, bug) = resolve(catalogue, spec)?;
    let mem = mem_of(spec, bug);
    let mut opts = scenario.kernel_options();
    opts.capture_trace = spec.capture_trace;
    let mut options = vec![("mem".to_string(), mem.name().to_string())];
    let strategy = match spec.strategy {
        StrategyName::Random => StrategyKind::Random,
        StrategyName::Pct => {
            let depth = spec.pct_depth.unwrap_or(3);
            let steps = scenario.expected_steps();
            options.push(("pct_depth".into(), depth.to_string()));
            options.push(("pct_steps".into(), steps.to_string()));
            StrategyKind::Pct { depth, steps }
        }
    };
    options.extend(opts.describe());
    let sim = Sim::new(
        DecisionSource::new(spec.source.clone()),
        strategy.build(),
        mem,
        opts,
    );
    let mut setup = Setup {
        sim,
        options,
        plant: bug.map(|b| b.name),
        metrics: Vec::new(),
        liveness: None,
        end_at: None,
    };
    if let Some(b) = bug {
        setup.option("plant", b.name);
    }
    let own = scenario.run(&mut setup);
    if setup.liveness.is_none() {
        // The scenario judged without running its world: run it, so liveness is judged.
        setup.run();
    }
    let Setup {
        mut sim,
        options,
        metrics,
        liveness,
        end_at,
        ..
    } = setup;
    let mut violations = liveness.unwrap_or_default();
    // The scenario's own oracles judge after the world has run: unless one said where it could
    // tell, it could tell at the end.
    let end = end_at.unwrap_or_else(|| sim.with_kernel(|k| k.position()));
    violations.extend(own.into_iter().map(|v| match v.at {
        Some(_) => v,
        None => v.at(end),
    }));
    let (steps, sim_ns) = sim.with_kernel(|k| (k.step(), k.now()));
    let seen = sim.take_observations();
    let observed = crate::report::Observed {
        features: seen.features(),
        goals: seen.goals().iter().map(|(g, n)| (*g, *n)).collect(),
        faults: seen.faults().iter().map(|(k, c)| (k.clone(), *c)).collect(),
    };
    Ok(RunReport {
        scenario: scenario.name(),
        source: spec.source.clone(),
        strategy: spec.strategy,
        mem,
        plant: bug.map(|b| b.name),
        options,
        trace_hash: sim.trace_hash(),
        events: sim.trace_events(),
        trace_lines: sim.take_trace_lines(),
        violations,
        decisions: sim.recorded_decisions(),
        draws: sim.decision_count(),
        steps,
        sim_ns,
        metrics,
        observed,
    })
}
