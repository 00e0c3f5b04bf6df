//! Making a cell's instance: compiling its module (with its globals exported, when instances
//! may start from an image), binding the Pulp capabilities and WASI, and running its start
//! function (`_initialize`, else `_start`, as Pulp picks it) or putting the module's start
//! image into the new instance.

use super::{CellHost, Pacing};
use crate::capability::Binding;
use crate::cell::{CellError, CellLimits, Prepared};
use crate::engine::{Engine, Import, Instance, Limits, Trap};
use crate::manifest::CellSpec;
use crate::snapshot::{self, ImageKey, Known, StartImage, rewrite};
use crate::wasi::{self, Phase, WasiCtx};
use crate::{has, planted};
use sha2::{Digest, Sha256};
use std::any::{Any, TypeId};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use wasmparser::{ExternalKind, Parser, Payload};

/// The start functions Pulp runs, in its order of preference.
const START_EXPORTS: [&str; 2] = ["_initialize", "_start"];

/// An instance that has run nothing, its WASI context (in its start-up phase), and whether a
/// Pulp capability was called during start-up.
struct Bare<I> {
    instance: I,
    wasi: Rc<WasiCtx>,
    touched: Rc<Cell<bool>>,
}

/// An instance with its start-up done.
pub(crate) struct Started<I> {
    pub instance: I,
    pub wasi: Rc<WasiCtx>,
    pub start_fuel: u64,
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A compiled module with a start function, kept per thread: compiling a 2.5 MB Go module
/// takes 65–90 ms on wasmi and about 3 s on wasmtime (`docs/performance.md`), so a sweep that
/// makes a new host per seed would otherwise compile every cell again for every seed. A module
/// holds the engine that compiled it, so another host's instances of it use that engine.
#[derive(Clone)]
struct Compiled {
    module: Rc<dyn Any>,
    /// The exported globals a start image holds; `None`: no images for this module.
    globals: Option<Vec<String>>,
    wasm: Rc<[u8]>,
}

/// At most this many modules are kept per thread (only modules with a start function are).
const COMPILED_KEPT: usize = 16;

type CompiledMap = BTreeMap<(TypeId, bool), BTreeMap<Rc<[u8]>, Compiled>>;

thread_local! {
    static COMPILED: RefCell<CompiledMap> = RefCell::default();
}

/// What `wasm` compiled to on engine `E` (with images or without), compiling it with `make`
/// the first time.
#[allow(clippy::type_complexity)]
fn compiled<E: Engine>(
    snapshots: bool,
    wasm: &[u8],
    make: impl FnOnce() -> Result<(E::Module, Option<Vec<String>>), CellError>,
) -> Result<TypedCompiled<E>, CellError> {
    let kind = (TypeId::of::<E>(), snapshots);
    let found = COMPILED.with(|c| c.borrow().get(&kind).and_then(|m| m.get(wasm)).cloned());
    let entry = match found {
        Some(entry) => entry,
        None => {
            let (module, globals) = make()?;
            let entry = Compiled {
                module: Rc::new(module),
                globals,
                wasm: Rc::from(wasm),
            };
            COMPILED.with(|c| {
                let mut c = c.borrow_mut();
                let kept: usize = c.values().map(BTreeMap::len).sum();
                if kept >= COMPILED_KEPT {
                    c.clear();
                }
                c.entry(kind)
                    .or_default()
                    .insert(entry.wasm.clone(), entry.clone());
            });
            entry
        }
    };
    let module = entry
        .module
        .downcast_ref::<E::Module>()
        .cloned()
        .ok_or_else(|| start_failed("_initialize", "a cached module of another type".into()))?;
    Ok(TypedCompiled {
        module,
        globals: entry.globals,
        wasm: entry.wasm,
    })
}

struct TypedCompiled<E: Engine> {
    module: E::Module,
    globals: Option<Vec<String>>,
    wasm: Rc<[u8]>,
}

/// The start function a module exports, if any.
fn start_export(wasm: &[u8]) -> Option<&'static str> {
    let mut found: Option<&'static str> = None;
    for payload in Parser::new(0).parse_all(wasm) {
        let Ok(Payload::ExportSection(reader)) = payload else {
            continue;
        };
        for export in reader.into_iter().flatten() {
            if export.kind != ExternalKind::Func {
                continue;
            }
            match START_EXPORTS.iter().position(|s| *s == export.name) {
                Some(0) => return Some(START_EXPORTS[0]),
                Some(_) => found = Some(START_EXPORTS[1]),
                None => {}
            }
        }
    }
    found
}

fn start_failed(export: &'static str, reason: String) -> CellError {
    CellError::StartFailed { export, reason }
}

impl<E: Engine, P: Pacing> CellHost<E, P> {
    /// Compiles a cell's module. A module with a start function gets its mutable globals
    /// exported (so its state after start-up can be imaged), if it allows it; it is compiled
    /// once per thread (see [`compiled`]).
    pub(super) fn prepare(
        &self,
        spec: &CellSpec,
        wasm: &[u8],
        limits: &CellLimits,
    ) -> Result<Prepared<E>, CellError> {
        let Some(start) = start_export(wasm) else {
            let module = self.engine.compile(wasm).map_err(CellError::Load)?;
            return Ok(Prepared {
                module,
                start: None,
                image: None,
            });
        };
        let snapshots = self.config.snapshots;
        let c = compiled::<E>(snapshots, wasm, || {
            let rewritten = if snapshots {
                rewrite::rewrite(wasm).ok()
            } else {
                None
            };
            let module = match &rewritten {
                Some(r) => self.engine.compile(&r.wasm),
                None => self.engine.compile(wasm),
            }
            .map_err(CellError::Load)?;
            Ok((module, rewritten.map(|r| r.globals)))
        })?;
        let image = c.globals.map(|globals| {
            let key = ImageKey {
                engine: std::any::type_name::<E>(),
                wasm: c.wasm,
                start_fuel: limits.start_fuel,
                max_memory: limits.max_memory,
                args: spec.args.clone(),
                env: spec.env.clone(),
            };
            (key, globals)
        });
        Ok(Prepared {
            module: c.module,
            start: Some(start),
            image,
        })
    }

    /// An instance that has run nothing.
    fn bare(
        &self,
        prepared: &Prepared<E>,
        spec: &CellSpec,
        limits: &CellLimits,
    ) -> Result<Bare<E::Instance>, CellError> {
        let cell: Rc<str> = Rc::from(spec.name.as_str());
        let binding = Binding {
            cell: cell.clone(),
            services: self.services.clone(),
        };
        let wasi = WasiCtx::new(
            cell,
            self.services.clone(),
            spec.args.clone(),
            spec.env.clone(),
        );
        let touched = Rc::new(Cell::new(false));
        self.pacing.making_instance(&spec.name);
        let pulp = self
            .registry
            .bind(
                spec,
                &binding,
                has(self.config.bugs, planted::BIND_UNDECLARED),
            )
            .map_err(CellError::Bind)?;
        let mut imports: Vec<Import> = pulp
            .into_iter()
            .map(|i| watch_start(i, &wasi, &touched))
            .collect();
        imports.extend(wasi::imports(&wasi));
        let instance = self
            .engine
            .instantiate(
                &prepared.module,
                &imports,
                Limits {
                    max_memory: limits.max_memory,
                    fuel_per_entry: limits.entry_fuel,
                },
            )
            .map_err(CellError::Load)?;
        Ok(Bare {
            instance,
            wasi,
            touched,
        })
    }

    /// A new instance of a prepared module, its start-up done: from the module's image when
    /// there is one, else by running its start function (and imaging the result, when it may).
    pub(crate) fn instantiate(
        &self,
        prepared: &Prepared<E>,
        spec: &CellSpec,
        limits: &CellLimits,
    ) -> Result<Started<E::Instance>, CellError> {
        let Bare {
            mut instance,
            wasi,
            touched,
        } = self.bare(prepared, spec, limits)?;
        let Some(export) = prepared.start else {
            wasi.go_live();
            return Ok(Started {
                instance,
                wasi,
                start_fuel: 0,
            });
        };
        let known = prepared
            .image
            .as_ref()
            .map(|(key, _)| snapshot::lookup(key));
        if let Some(Some(Known::Image(image))) = &known {
            image
                .restore(&mut instance)
                .map_err(|t| start_failed(export, format!("restoring its image: {t}")))?;
            wasi.restore(image.wasi.clone());
            wasi.replay(&image.output);
            return Ok(Started {
                instance,
                wasi,
                start_fuel: image.start_fuel,
            });
        }
        let ran = run_start(&mut instance, export, limits.start_fuel);
        wasi.go_live();
        let output = wasi.start_output();
        let start_fuel = match ran {
            Ok(fuel) => fuel,
            Err(e) => {
                // What start-up wrote says why it failed (Go prints its fatal errors).
                wasi.replay(&output);
                return Err(e);
            }
        };
        if let (Some(None), Some((key, globals))) = (&known, &prepared.image) {
            let learnt = if touched.get() {
                Known::RunEachTime
            } else {
                self.image(
                    prepared,
                    spec,
                    limits,
                    &mut instance,
                    globals,
                    &wasi,
                    start_fuel,
                )
                .map_or(Known::RunEachTime, |i| Known::Image(Rc::new(i)))
            };
            snapshot::remember(key.clone(), learnt);
        }
        wasi.replay(&output);
        Ok(Started {
            instance,
            wasi,
            start_fuel,
        })
    }

    /// A new instance that has run neither its start function nor its image: what the
    /// planted restart bug makes.
    pub(crate) fn instantiate_unstarted(
        &self,
        prepared: &Prepared<E>,
        spec: &CellSpec,
        limits: &CellLimits,
    ) -> Result<Started<E::Instance>, CellError> {
        let Bare { instance, wasi, .. } = self.bare(prepared, spec, limits)?;
        wasi.go_live();
        Ok(Started {
            instance,
            wasi,
            start_fuel: 0,
        })
    }

    /// Images `started` against a fresh instance of the same module.
    #[allow(clippy::too_many_arguments)]
    fn image(
        &self,
        prepared: &Prepared<E>,
        spec: &CellSpec,
        limits: &CellLimits,
        started: &mut E::Instance,
        globals: &[String],
        wasi: &WasiCtx,
        start_fuel: u64,
    ) -> Result<StartImage, Trap> {
        let mut fresh = self
            .bare(prepared, spec, limits)
            .map_err(|e| Trap::new(e.to_string()))?;
        StartImage::capture(
            started,
            &mut fresh.instance,
            globals,
            wasi.state(),
            wasi.start_output(),
            start_fuel,
        )
    }
}

/// A Pulp capability called during start-up marks start-up as depending on the world, so it
/// is not imaged.
fn watch_start(import: Import, wasi: &Rc<WasiCtx>, touched: &Rc<Cell<bool>>) -> Import {
    let (run, wasi, touched) = (import.run.clone(), wasi.clone(), touched.clone());
    Import {
        run: Rc::new(move |mem, args| {
            if wasi.phase() == Phase::Start {
                touched.set(true);
            }
            run(mem, args)
        }),
        ..import
    }
}

/// Runs the start function to its end within `budget` fuel; returns the fuel it used. It
/// runs as a call the host completes at once: WASI answers from the start-up environment
/// without waiting, and a sibling call fails with `STUBBED`.
fn run_start<I: Instance>(
    instance: &mut I,
    export: &'static str,
    budget: u64,
) -> Result<u64, CellError> {
    let before = instance.fuel_consumed();
    match instance.call_now(export, &[], budget) {
        Ok(_) => Ok(instance.fuel_consumed().saturating_sub(before)),
        Err(t) if t.out_of_fuel => Err(start_failed(
            export,
            format!("ran past its budget of {budget} fuel"),
        )),
        Err(t) => match t.exit_code {
            Some(code) => Err(start_failed(export, format!("called proc_exit({code})"))),
            None => Err(start_failed(export, format!("trapped: {}", t.message))),
        },
    }
}
