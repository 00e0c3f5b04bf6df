//! `cells-hostile`: malicious modules and manifests next to healthy cells.
//!
//! Workload (derived per seed): two healthy `node` cells, `ok-kv` (declares `storage.kv`) and
//! `ok-plain` (does not), take 4–10 steps each: idle ticks, key-value writes, and calls into the
//! hostile cells. Hostile cells, each present or not: `trap` (traps from its second step),
//! `spin` (loops forever), `hog` (allocates 256 KiB per step, never frees), `badptr` (wild
//! pointers in its allocator, its responses and its log call). A loader actor also feeds the
//! host 1–3 malformed manifests, 1–3 seeded corruptions of a valid module, and modules with a
//! missing export, a wrong signature or a foreign import. Faults: fuel slices of 1–5000 units.
//!
//! Oracles: every malformed manifest gives the typed error naming its problem; every bad module
//! a typed load error; each hostile cell ends each entry only in its expected way (a typed trap,
//! the fuel budget, the memory limit, a bad-pointer error or code, or, once a trap or the fuel
//! budget has failed the cell, the failure), never a panic; calls into
//! hostile cells fail with a code; undeclared gated capabilities stay stubs (judged from the
//! key-value store's own record of writers against the manifests); the healthy cells' counts
//! stay one serial order and their heaps bounded; engine-log lifecycle and entry checks; liveness.

use crate::cells::world::CellWorld;
use crate::cells::{check_counts, envelope, path_value};
use crate::{PlantedBug, Scenario, Setup, Violation};
use cellhost::abi::call_code;
use cellhost::engine::LoadError;
use cellhost::manifest::ManifestError;
use cellhost::{CellError, Failure, HostConfig};
use simkit::KernelOptions;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

pub struct CellsHostile;

const MISSING_STUB: &str = "cells-missing-stub";

static BUGS: &[PlantedBug] = &[PlantedBug {
    name: MISSING_STUB,
    scenario: "cells-hostile",
    description: "an undeclared gated capability is bound to its real imports instead of a failing stub",
    mirrors: "Pulp internal/host/capability.go bind: each gated capability gets its Stub unless declared",
    needs_mem: None,
}];

const HOSTILE: [&str; 4] = ["trap", "spin", "hog", "badptr"];

/// Malformed manifests, each with a check of the error it must give.
type Expect = fn(&CellError) -> bool;
const BAD_MANIFESTS: &[(&str, Expect)] = &[
    (
        "name = \"x\"\nversion = \"1\"\nrestart_policy = \"always\"",
        |e| matches!(e, CellError::Manifest(ManifestError::UnknownKey { key }) if key == "restart_policy"),
    ),
    ("version = \"1\"", |e| {
        matches!(
            e,
            CellError::Manifest(ManifestError::Missing { key: "name" })
        )
    }),
    (
        "name = [1]\nversion = \"1\"",
        |e| matches!(e, CellError::Manifest(ManifestError::WrongType { key, .. }) if key == "name"),
    ),
    (
        "name = \"x\"\nversion = \"1\"\nschema_version = 9",
        |e| matches!(e, CellError::Manifest(ManifestError::Invalid { key, .. }) if key == "schema_version"),
    ),
    (
        "name = \"x\"\nversion = \"1\"\nwasm = \"../../etc/passwd\"",
        |e| matches!(e, CellError::Manifest(ManifestError::Invalid { key, .. }) if key == "wasm"),
    ),
    (
        "name = \"x\"\nversion = \"1\"\ncapabilities = [\"spawn.docker\"]",
        |e| matches!(e, CellError::Bind(_)),
    ),
    ("name = \"x\"\nversion = \"1\"\n[config", |e| {
        matches!(e, CellError::Manifest(ManifestError::Syntax { .. }))
    }),
];

const MISSING_EXPORT: &str = r#"(module (memory (export "memory") 1)
  (func (export "pulp_alloc") (param i32) (result i32) (i32.const 0))
  (func (export "pulp_step") (param i32 i32) (result i32) (i32.const 0))
  (func (export "pulp_shutdown") (result i32) (i32.const 0)))"#;
const WRONG_SIGNATURE: &str = r#"(module (memory (export "memory") 1)
  (func (export "pulp_alloc") (param i32) (result i32) (i32.const 0))
  (func (export "pulp_init") (param i32 i32) (result i32) (i32.const 0))
  (func (export "pulp_step") (param i32 i32) (result i64) (i64.const 0))
  (func (export "pulp_shutdown") (result i32) (i32.const 0)))"#;
const FOREIGN_IMPORT: &str = r#"(module (import "env" "abort" (func))
  (memory (export "memory") 1)
  (func (export "pulp_alloc") (param i32) (result i32) (i32.const 0))
  (func (export "pulp_init") (param i32 i32) (result i32) (i32.const 0))
  (func (export "pulp_step") (param i32 i32) (result i32) (i32.const 0))
  (func (export "pulp_shutdown") (result i32) (i32.const 0)))"#;

#[derive(Default)]
struct Observed {
    counts: BTreeMap<String, Vec<i64>>,
    problems: Vec<String>,
}

impl Scenario for CellsHostile {
    fn name(&self) -> &'static str {
        "cells-hostile"
    }

    fn description(&self) -> &'static str {
        "trapping, spinning, memory-hogging and wild-pointer cells, malformed manifests and corrupt modules, next to healthy cells"
    }

    fn expected_steps(&self) -> u64 {
        1_000
    }

    fn kernel_options(&self) -> KernelOptions {
        crate::cells::kernel_options()
    }

    fn bugs(&self) -> &'static [PlantedBug] {
        BUGS
    }

    fn run(&self, setup: &mut Setup) -> Vec<Violation> {
        let present: Vec<&'static str> = HOSTILE
            .iter()
            .filter(|h| setup.derive(&format!("{h}_present"), 0, 2) > 0)
            .copied()
            .collect();
        let hostile_steps: Vec<u64> = present
            .iter()
            .map(|h| setup.derive(&format!("{h}_steps"), 1, 5))
            .collect();
        let healthy_plans: Vec<(&'static str, Vec<String>)> = ["ok-kv", "ok-plain"]
            .into_iter()
            .map(|me| {
                let steps = (0..setup.derive(&format!("{me}_steps"), 4, 10))
                    .map(|s| match setup.derive(&format!("{me}_s{s}"), 0, 5) {
                        0 | 1 => String::new(),
                        2 => "!kv".to_string(),
                        k => HOSTILE[(k as usize + s as usize) % HOSTILE.len()].to_string(),
                    })
                    .collect();
                (me, steps)
            })
            .collect();
        let bad_manifests: Vec<usize> = (0..setup.derive("bad_manifests", 1, 3))
            .map(|k| {
                setup.derive(
                    &format!("bad_manifest{k}"),
                    0,
                    BAD_MANIFESTS.len() as u64 - 1,
                ) as usize
            })
            .collect();
        let corruptions: Vec<(u64, u64)> = (0..setup.derive("corrupt_modules", 1, 3))
            .map(|k| {
                (
                    setup.derive(&format!("corrupt{k}_at"), 0, 10_000),
                    setup.derive(&format!("corrupt{k}_byte"), 0, 255),
                )
            })
            .collect();
        let mut bugs = 0;
        if setup.planted(MISSING_STUB) {
            bugs |= cellhost::planted::BIND_UNDECLARED;
        }
        let ctx = setup.ctx();
        let world = CellWorld::new(
            &ctx,
            5_000,
            HostConfig {
                fuel_per_entry: 1_000_000,
                max_memory: 1 << 20,
                bugs,
                ..HostConfig::default()
            },
        );
        let deps = HOSTILE
            .iter()
            .map(|h| format!("\"{h}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let mut manifests: BTreeMap<String, String> = BTreeMap::new();
        manifests.insert(
            "ok-kv".into(),
            format!("name = \"ok-kv\"\nversion = \"1\"\ndepends_on = [{deps}]\ncapabilities = [\"storage.kv\"]"),
        );
        manifests.insert(
            "ok-plain".into(),
            format!("name = \"ok-plain\"\nversion = \"1\"\ndepends_on = [{deps}]"),
        );
        let mut v = Vec::new();
        for (name, m) in &manifests {
            if let Err(e) = world.load(m, "node") {
                v.push(Violation::new("cell-load", format!("{name}: {e}")));
            }
        }
        for h in &present {
            if let Err(e) = world.load(&format!("name = \"{h}\"\nversion = \"1\""), h) {
                v.push(Violation::new("cell-load", format!("{h}: {e}")));
            }
        }
        let observed: Rc<RefCell<Observed>> = Rc::default();
        // The loader: bad manifests and modules, from inside an actor so a panic is a finding.
        {
            let (world_host, o) = (world.host.clone(), observed.clone());
            ctx.spawn("loader", async move {
                for (k, i) in bad_manifests.into_iter().enumerate() {
                    let (text, expect) = BAD_MANIFESTS[i];
                    let outcome = cellhost::manifest::parse(text)
                        .map_err(CellError::Manifest)
                        .and_then(|mut spec| {
                            spec.name = format!("badm{k}");
                            let wasm =
                                cellhost::cells::wasm("node").map_err(|m| CellError::Io {
                                    path: "node".into(),
                                    message: m,
                                })?;
                            world_host.load(spec, &wasm).map(|_| ())
                        });
                    match outcome {
                        Err(e) if expect(&e) => {}
                        other => o
                            .borrow_mut()
                            .problems
                            .push(format!("manifest {text:?} gave {other:?}")),
                    }
                }
                let node = cellhost::cells::wasm("node").unwrap_or_default();
                for (k, (at, byte)) in corruptions.into_iter().enumerate() {
                    let mut bytes = node.clone();
                    if bytes.is_empty() {
                        continue;
                    }
                    let at = at as usize % (bytes.len() + 1);
                    if at == bytes.len() || byte == 0 {
                        bytes.truncate(at.max(1) - 1);
                    } else {
                        bytes[at] ^= byte as u8;
                    }
                    let spec = spec(&format!("corrupt{k}"));
                    // A flip in a data segment can leave a valid module; anything else must be
                    // a typed load error.
                    if let Err(e) = world_host.load(spec, &bytes)
                        && !matches!(e, CellError::Load(_))
                    {
                        o.borrow_mut()
                            .problems
                            .push(format!("corrupt module {k}: {e}"));
                    }
                }
                for (name, text, want) in [
                    ("noinit", MISSING_EXPORT, "missing"),
                    ("badsig", WRONG_SIGNATURE, "signature"),
                    ("foreign", FOREIGN_IMPORT, "import"),
                ] {
                    let outcome = match wat_bytes(text) {
                        Ok(bytes) => world_host.load(spec(name), &bytes).map(|_| ()),
                        Err(m) => Err(CellError::Io {
                            path: name.into(),
                            message: m,
                        }),
                    };
                    let ok = match (&outcome, want) {
                        (
                            Err(CellError::Load(LoadError::MissingExport { name: "pulp_init" })),
                            "missing",
                        ) => true,
                        (
                            Err(CellError::Load(LoadError::WrongSignature { name, .. })),
                            "signature",
                        ) => name == "pulp_step",
                        (
                            Err(CellError::Load(LoadError::UnknownImport { module, .. })),
                            "import",
                        ) => module == "env",
                        _ => false,
                    };
                    if !ok {
                        o.borrow_mut()
                            .problems
                            .push(format!("module {name} gave {outcome:?}"));
                    }
                }
            });
        }
        for (h, steps) in present.iter().zip(hostile_steps) {
            let (host, o, c, h) = (world.host.clone(), observed.clone(), ctx.clone(), *h);
            ctx.spawn(&format!("step-{h}"), async move {
                if let Err(e) = host.init(h).await {
                    o.borrow_mut().problems.push(format!("init cell {h}: {e}"));
                    return;
                }
                for k in 0..steps {
                    let r = host.step(h, &envelope(k, c.now(), "")).await;
                    c.trace("stepped", format_args!("{h} #{k} -> {r:?}"));
                    if !contained(h, k, &r) {
                        o.borrow_mut()
                            .problems
                            .push(format!("cell {h}: step {k} ended as {r:?}"));
                    }
                }
            });
        }
        for (me, plan) in healthy_plans {
            let (host, o, c) = (world.host.clone(), observed.clone(), ctx.clone());
            ctx.spawn(&format!("step-{me}"), async move {
                if let Err(e) = host.init(me).await {
                    o.borrow_mut().problems.push(format!("init cell {me}: {e}"));
                    return;
                }
                for (k, p) in plan.iter().enumerate() {
                    let r = host.step(me, &envelope(k as u64, c.now(), p)).await;
                    c.trace("stepped", format_args!("{me} '{p}' -> {r:?}"));
                    let mut o = o.borrow_mut();
                    match (r, p.as_str()) {
                        (Ok(code), "!kv") => {
                            let want = if me == "ok-kv" {
                                0
                            } else {
                                call_code::STUBBED as i32
                            };
                            if code != want {
                                o.problems.push(format!(
                                    "cell {me}: kv write answered {code}, want {want}"
                                ));
                            }
                        }
                        (Ok(value), _) => match path_value(me, p, i64::from(value)) {
                            Ok((cell, count)) if cell == me => {
                                o.counts.entry(cell).or_default().push(count)
                            }
                            Ok((cell, count)) => o
                                .problems
                                .push(format!("cell {me} '{p}': cell {cell} answered {count}")),
                            Err(code) => {
                                let allowed = [
                                    call_code::TARGET_ERROR,
                                    call_code::TARGET_GONE,
                                    call_code::UNKNOWN_TARGET,
                                ];
                                if !allowed.iter().any(|c| -i64::from(*c) == code) {
                                    o.problems
                                        .push(format!("cell {me} '{p}' answered code {code}"));
                                }
                            }
                        },
                        (Err(e), _) => o.problems.push(format!("cell {me} '{p}': {e}")),
                    }
                }
            });
        }
        setup.run();
        v.extend(world.check(&|cell| cell.starts_with("ok-")));
        let observed = observed.borrow();
        v.extend(
            observed
                .problems
                .iter()
                .map(|p| Violation::new("cell-containment", p.clone())),
        );
        v.extend(check_counts(&observed.counts));
        for writer in world.services.stores.kv_writers.borrow().iter() {
            let declared = manifests
                .get(writer)
                .is_some_and(|m| m.contains("\"storage.kv\""));
            if !declared {
                v.push(Violation::new(
                    "capability-gating",
                    format!("{writer} wrote to storage.kv without declaring the capability"),
                ));
            }
        }
        v
    }
}

fn spec(name: &str) -> cellhost::manifest::CellSpec {
    cellhost::manifest::CellSpec::new(name, "1")
}

fn wat_bytes(text: &str) -> Result<Vec<u8>, String> {
    wat::parse_str(text).map_err(|e| e.to_string())
}

/// Whether a hostile cell's `k`-th step ended in one of the ways its kind allows. A trap or a
/// spent budget fails the cell (in its own step, or in a call a healthy cell made into it), and
/// every later step is refused with the failure.
fn contained(cell: &str, k: u64, r: &Result<i32, CellError>) -> bool {
    match (cell, k, r) {
        ("trap", 0, Ok(1)) => true,
        ("trap", _, Err(CellError::Trap(_))) => k > 0,
        ("trap", _, Err(CellError::Failed(Failure::Trap { .. }))) => true,
        ("spin", _, Err(CellError::FuelExhausted { .. })) => true,
        ("spin", _, Err(CellError::Failed(Failure::Fuel { .. }))) => true,
        ("hog", _, Ok(1 | -1)) => true,
        ("hog", _, Err(CellError::AllocFailed { .. })) => true,
        ("badptr", 0, Ok(code)) => *code == call_code::BAD_POINTER as i32,
        ("badptr", _, Err(CellError::BadPointer(_))) => k > 0,
        _ => false,
    }
}
