//! `sim hw --scenario NAME [--iterations K] [--seed N]`: a scenario on real parts instead of
//! simulated ones. Hardware runs are not deterministic: each iteration records a trace in the
//! simulation's format (`t=<ns> <actor> <event> <details>`, real nanoseconds since the start),
//! the same oracles judge it, and a report goes under `reports/hw-<scenario>/`.
//!
//! Hardware forms so far, each with the workload derived from the seed exactly as the simulation
//! derives it:
//! - `cells-siblings` on wasmtime (the `wasmtime` feature; under `cargo run` a build without it
//!   rebuilds with it and hands over): the cells step as tasks on a tokio current-thread runtime,
//!   with real time and OS entropy;
//! - `pipe-echo` in a KVM vCPU (`hw/pipes.rs`): the bare-metal guest against the real monitor;
//! - `pipe-file` in a KVM vCPU (`hw/files.rs`): the monitor's file relay serves real files in a
//!   fresh temp directory, judged with the real files' final contents;
//! - `pipe-tcp` in a KVM vCPU (`hw/tcp.rs`): the monitor's TCP relays reach real loopback sockets,
//!   with the external clients and servers as tokio tasks.
//!
//! `pipe-hostile` has no hardware form yet (its hostile guest thread is not ported to the metal
//! guest); asking for it exits 2 and says so, as does a pipe run where `/dev/kvm` cannot be
//! opened.

pub mod files;
pub mod metal;
pub mod pipes;
pub mod tcp;
pub mod trace;

use crate::exit::{UsageError, verdict_code};
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;
use trace::Outcome;

#[derive(Args)]
pub struct HwArgs {
    /// The scenario: pipe-echo, pipe-file or pipe-tcp (the bare-metal guest in a KVM vCPU
    /// against the real monitor), or cells-siblings (cells on wasmtime).
    #[arg(long)]
    scenario: String,
    /// Runs, each with its own seed (seed, seed+1, ...).
    #[arg(long, default_value_t = 1)]
    iterations: u64,
    /// Seed of the first run's workload.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Where reports go.
    #[arg(long, default_value = "reports")]
    reports: PathBuf,
    /// Print every trace line.
    #[arg(long)]
    trace: bool,
    /// A planted bug with a hardware form (see `sim --list-bugs`; pipe scenarios).
    #[arg(long)]
    plant: Option<String>,
    /// Pipe scenarios: one shared-memory access in N on each side is followed by a seeded
    /// pause of up to ~30 µs, to widen race windows (0: no pauses).
    #[arg(long, default_value_t = 16)]
    jitter: u32,
}

/// Hardware runs take real time (milliseconds to seconds each): a million is more than a day.
const MAX_ITERATIONS: u64 = 1_000_000;

pub fn run(args: HwArgs) -> Result<ExitCode, UsageError> {
    if args.iterations == 0 || args.iterations > MAX_ITERATIONS {
        return Err(UsageError(format!(
            "--iterations {} is out of range: between 1 and {MAX_ITERATIONS} runs",
            args.iterations
        )));
    }
    if args.seed.checked_add(args.iterations).is_none() {
        return Err(UsageError(format!(
            "--seed {} with --iterations {} runs past the last seed ({})",
            args.seed,
            args.iterations,
            u64::MAX
        )));
    }
    if scenarios::find(&args.scenario).is_none() {
        return Err(UsageError(format!(
            "unknown scenario '{}' (see `sim --list`)",
            args.scenario
        )));
    }
    match args.scenario.as_str() {
        "cells-siblings" => cells(&args),
        "pipe-echo" => pipes(
            &args,
            "the pipe-echo guest (crates/metal-guest) in a KVM vCPU; the monitor on tokio (ioeventfd doorbells, irqfd line)",
            crate::hw::pipes::run_once,
        ),
        "pipe-tcp" => pipes(
            &args,
            "the pipe-tcp guest (crates/metal-guest) in a KVM vCPU; the monitor on tokio relaying to real TCP on loopback; clients and servers as tokio tasks",
            crate::hw::tcp::run_once,
        ),
        "pipe-file" => files(&args),
        "pipe-hostile" => Err(UsageError(format!(
            "scenario '{}' has no hardware form yet (pipe-echo, pipe-file and pipe-tcp have one)",
            args.scenario
        ))),
        other => Err(UsageError(format!(
            "scenario '{other}' has no hardware form"
        ))),
    }
}

/// A pipe scenario's guest in a KVM vCPU (`run_once(seed, plant, jitter)` is one run); exits 2
/// with the reason where `/dev/kvm` cannot be used.
fn pipes(
    args: &HwArgs,
    parts: &str,
    run_once: fn(u64, Option<&str>, u32) -> Result<Outcome, UsageError>,
) -> Result<ExitCode, UsageError> {
    if let Err(e) = hv_kvm::available() {
        return Err(UsageError(format!("hw --scenario {}: {e}", args.scenario)));
    }
    iterate(args, parts, |seed| {
        run_once(seed, args.plant.as_deref(), args.jitter)
    })
}

/// pipe-file in a KVM vCPU, its file relay serving real files in a temp directory; exits 2 with
/// the reason where `/dev/kvm` cannot be used.
fn files(args: &HwArgs) -> Result<ExitCode, UsageError> {
    if let Err(e) = hv_kvm::available() {
        return Err(UsageError(format!("hw --scenario {}: {e}", args.scenario)));
    }
    iterate(
        args,
        "the pipe-file guest (crates/metal-guest) in a KVM vCPU; the monitor on tokio, its file relay serving real files in a fresh directory under the OS temp dir",
        |seed| crate::hw::files::run_once(seed, args.plant.as_deref(), args.jitter),
    )
}

/// Runs `run_one` for each seed (stopping at the first failure when a bug is planted), prints
/// violations and the last verdict line, and writes the report.
fn iterate(
    args: &HwArgs,
    parts: &str,
    mut run_one: impl FnMut(u64) -> Result<Outcome, UsageError>,
) -> Result<ExitCode, UsageError> {
    let mut rows = Vec::new();
    let mut all_pass = true;
    let mut last = String::new();
    for i in 0..args.iterations {
        let seed = args.seed + i;
        let o = run_one(seed)?;
        if args.trace {
            for line in &o.trace {
                crate::outln!("{line}");
            }
        }
        for v in &o.violations {
            crate::outln!("violation: [{}] {}", v.oracle, v.message);
        }
        let pass = o.violations.is_empty();
        all_pass &= pass;
        last = format!(
            "seed={seed} scenario={} strategy=hw events={} trace={:016x} verdict={}",
            args.scenario,
            o.trace.len(),
            o.hash,
            if pass { "pass" } else { "fail" }
        );
        let first = o
            .violations
            .first()
            .map(|v| format!("[{}] {}", v.oracle, v.message))
            .unwrap_or_default();
        rows.push(Row {
            seed,
            events: o.trace.len(),
            hash: o.hash,
            wall_ms: o.wall_ms,
            pass,
            first,
            trace: o.trace,
        });
        if !pass && args.plant.is_some() {
            break;
        }
    }
    let dir = write_report(args, parts, &rows)?;
    crate::outln!("report: {}", dir.display());
    crate::outln!("{last}");
    Ok(verdict_code(all_pass))
}

/// One iteration of a hardware run, for the report.
struct Row {
    seed: u64,
    events: usize,
    hash: u64,
    wall_ms: f64,
    pass: bool,
    first: String,
    trace: Vec<String>,
}

/// Set on the rebuilt `sim` that `cells` hands over to, so it never hands over again.
#[cfg(not(feature = "wasmtime"))]
const HANDED_OVER: &str = "SIM_WASMTIME_HANDOVER";

/// Hardware cells need wasmtime, which this build lacks (it is a feature, since it adds minutes
/// to a fresh build). Under `cargo run`, rebuild with the feature and hand the same arguments
/// over; otherwise say how.
#[cfg(not(feature = "wasmtime"))]
fn cells(_: &HwArgs) -> Result<ExitCode, UsageError> {
    let hint = "cells run on wasmtime in hardware mode; build with `--features wasmtime` (cargo run -p sim --features wasmtime -- hw ...)";
    let (Some(cargo), Some(manifest_dir)) = (
        std::env::var_os("CARGO"),
        std::env::var_os("CARGO_MANIFEST_DIR"),
    ) else {
        return Err(UsageError(hint.into()));
    };
    if std::env::var_os(HANDED_OVER).is_some() {
        return Err(UsageError(hint.into()));
    }
    crate::errln!(
        "sim: hardware cells run on wasmtime; rebuilding sim with `--features wasmtime` (a few minutes the first time)"
    );
    let release = std::env::current_exe()
        .ok()
        .is_some_and(|exe| exe.components().any(|c| c.as_os_str() == "release"));
    let mut cargo = std::process::Command::new(cargo);
    cargo
        .arg("run")
        .arg("--quiet")
        .arg("--manifest-path")
        .arg(PathBuf::from(manifest_dir).join("Cargo.toml"))
        .args(["--features", "wasmtime"]);
    if release {
        cargo.arg("--release");
    }
    let status = cargo
        .arg("--")
        .args(std::env::args_os().skip(1))
        .env(HANDED_OVER, "1")
        .status()
        .map_err(|e| UsageError(format!("running cargo to rebuild sim with wasmtime: {e}")))?;
    Ok(match status.code() {
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(2)),
        None => ExitCode::from(2),
    })
}

#[cfg(feature = "wasmtime")]
fn cells(args: &HwArgs) -> Result<ExitCode, UsageError> {
    iterate(
        args,
        "wasmtime 48 (Cranelift), tokio current-thread runtime, real time",
        cells_hw::run_once,
    )
}

fn write_report(args: &HwArgs, parts: &str, rows: &[Row]) -> Result<PathBuf, UsageError> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let dir = args
        .reports
        .join(format!("hw-{}", args.scenario))
        .join(format!("{stamp}-seed{}-x{}", args.seed, args.iterations));
    std::fs::create_dir_all(&dir)?;
    let plant = args
        .plant
        .as_deref()
        .map(|p| format!(" --plant {p}"))
        .unwrap_or_default();
    let mut md = format!(
        "# Hardware run of `{}`\n\n- command: `sim hw --scenario {} --seed {} --iterations {}{plant}`\n- parts: {parts}\n\n| seed | events | trace | wall ms | verdict | first violation |\n|---|---:|---|---:|---|---|\n",
        args.scenario, args.scenario, args.seed, args.iterations
    );
    for r in rows {
        md.push_str(&format!(
            "| {} | {} | `{:016x}` | {:.2} | {} | {} |\n",
            r.seed,
            r.events,
            r.hash,
            r.wall_ms,
            if r.pass { "pass" } else { "fail" },
            r.first
        ));
        std::fs::write(
            dir.join(format!("seed-{}.trace", r.seed)),
            r.trace.join("\n") + "\n",
        )?;
    }
    std::fs::write(dir.join("summary.md"), md)?;
    Ok(dir)
}

#[cfg(feature = "wasmtime")]
mod cells_hw {
    use crate::exit::UsageError;
    use crate::hw::trace::{Outcome, Trace, spawn};
    use cellhost::engine::wasmtime::WasmtimeEngine;
    use cellhost::{CellHost, HostConfig, HostServices, Pacing, Registry};
    use models::Violation;
    use scenarios::cells::siblings::{self, Observed, SiblingsPlan};
    use scenarios::cells::world::{CellStores, Logs, ObservedEngine};
    use simkit::DecisionSource;
    use std::cell::RefCell;
    use std::fmt;
    use std::future::Future;
    use std::io::Read;
    use std::pin::Pin;
    use std::rc::Rc;
    use std::time::{Duration, Instant};

    /// Host services on the real host: wall clock, OS entropy.
    struct RealServices {
        trace: Rc<Trace>,
        stores: CellStores,
    }

    impl HostServices for RealServices {
        fn now_ns(&self) -> u64 {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0)
        }
        fn entropy(&self, buf: &mut [u8]) {
            let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(buf));
            if read.is_err() {
                buf.fill(0);
            }
        }
        fn log(&self, cell: &str, message: &str) {
            self.trace
                .line("cell-log", format_args!("{cell}: {message}"));
        }
        fn sleep(&self, ns: u64) -> Pin<Box<dyn Future<Output = ()>>> {
            Box::pin(tokio::time::sleep(Duration::from_nanos(ns)))
        }
        fn kv_get(&self, cell: &str, key: &[u8]) -> Option<Vec<u8>> {
            self.stores.kv_get(cell, key)
        }
        fn kv_put(&self, cell: &str, key: &[u8], value: &[u8]) {
            self.stores.kv_put(cell, key, value);
        }
        fn send(&self, _: &str, to: &str, message: &[u8]) -> bool {
            self.stores.send(to, message)
        }
        fn recv(&self, cell: &str) -> Option<Vec<u8>> {
            self.stores.recv(cell)
        }
    }

    /// Fixed slices; a yield to the tokio scheduler between them.
    struct TokioPacing {
        trace: Rc<Trace>,
    }

    impl Pacing for TokioPacing {
        fn fuel_slice(&self) -> u64 {
            2_000
        }
        fn preempt(&self) -> Pin<Box<dyn Future<Output = ()>>> {
            Box::pin(tokio::task::yield_now())
        }
        fn trace(&self, event: &str, details: fmt::Arguments<'_>) {
            self.trace.line(event, details);
        }
    }

    type Host = CellHost<ObservedEngine<WasmtimeEngine>, TokioPacing>;

    /// A hardware run has a wall-clock bound in place of the kernel's deadlock detection.
    const DEADLINE: Duration = Duration::from_secs(30);

    pub fn run_once(seed: u64) -> Result<Outcome, UsageError> {
        let mut ds = DecisionSource::seeded(seed);
        let plan = siblings::plan(&mut |_, lo, hi| ds.range_inclusive(lo, hi));
        let trace = Rc::new(Trace::new());
        let logs: Logs = Rc::default();
        let services = Rc::new(RealServices {
            trace: trace.clone(),
            stores: CellStores::default(),
        });
        let host: Rc<Host> = Rc::new(CellHost::new(
            ObservedEngine::new(WasmtimeEngine::default(), logs.clone()),
            Registry::standard(),
            services.clone(),
            TokioPacing {
                trace: trace.clone(),
            },
            HostConfig::default(),
        ));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()?;
        let local = tokio::task::LocalSet::new();
        let observed: Rc<RefCell<Observed>> = Rc::default();
        let mut violations = Vec::new();
        let started = Instant::now();
        let finished = local.block_on(&runtime, async {
            tokio::time::timeout(
                DEADLINE,
                workload(&host, &services, plan, &observed, &trace),
            )
            .await
        });
        let wall_ms = started.elapsed().as_secs_f64() * 1e3;
        match finished {
            Ok(problems) => violations.extend(problems),
            Err(_) => violations.push(Violation::new(
                "liveness",
                format!("the workload did not finish within {}s", DEADLINE.as_secs()),
            )),
        }
        for (cell, log) in logs.borrow().iter() {
            violations.extend(models::cells::check_instance(cell, log, true));
        }
        violations.extend(siblings::judge(&observed.borrow()));
        let lines = trace.lines.borrow().clone();
        let hash = Trace::hash(&lines);
        Ok(Outcome {
            trace: lines,
            hash,
            violations,
            wall_ms,
        })
    }

    async fn workload(
        host: &Rc<Host>,
        services: &Rc<RealServices>,
        plan: SiblingsPlan,
        observed: &Rc<RefCell<Observed>>,
        trace: &Rc<Trace>,
    ) -> Vec<Violation> {
        let mut problems = Vec::new();
        for m in &plan.manifests {
            let loaded = cellhost::manifest::parse(m)
                .map_err(|e| e.to_string())
                .and_then(|spec| {
                    let wasm = cellhost::cells::wasm("node")?;
                    host.engine().name_next(&spec.name);
                    let name = spec.name.clone();
                    host.load(spec, &wasm).map_err(|e| e.to_string())?;
                    services.stores.open_mailbox(&name);
                    Ok(())
                });
            if let Err(e) = loaded {
                problems.push(Violation::new("cell-load", e));
            }
        }
        let mut tasks = Vec::new();
        for (me, steps) in plan.names.iter().copied().zip(plan.steps) {
            let (host, o, t) = (host.clone(), observed.clone(), trace.clone());
            tasks.push(spawn(&format!("step-{me}"), async move {
                let now = || t.start.elapsed().as_nanos() as u64;
                siblings::run_stepper(&host, me, &steps, &o, now).await;
            }));
        }
        {
            let (host, o) = (host.clone(), observed.clone());
            let (external, pause) = (plan.external, plan.external_pause_ns);
            tasks.push(spawn("external", async move {
                tokio::time::sleep(Duration::from_nanos(pause)).await;
                siblings::run_external_calls(&host, &external, &o).await;
            }));
        }
        for t in tasks {
            if t.await.is_err() {
                problems.push(Violation::new("no-panic", "a task panicked"));
            }
        }
        siblings::finish_all(host, &plan.names, observed).await;
        problems
    }
}
