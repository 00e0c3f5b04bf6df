//! Running a cell's code: an export in fuel slices under its fuel and time budgets, the
//! deferred imports it raises on the way (sibling calls, WASI sleeps and yields), the host's
//! own calls into the allocator, and what happens when the cell's code fails.

use super::{Boxed, CellHost, Pacing, failed, ready};
use crate::abi::{self, call_code, on_call_code};
use crate::capability::SiblingRequest;
use crate::cell::{Cell, CellError, Failure, Lifecycle, Restarts};
use crate::engine::{Answer, Delivery, Engine, Instance, Slice, Trap};
use crate::manifest::Restart;
use crate::wasi::WasiRequest;
use crate::{has, planted};
use std::rc::Rc;

/// Pulp's restart breaker: at most this many restarts in one window.
const MAX_RESTARTS: u32 = 5;
const RESTART_WINDOW_NS: u64 = 30_000_000_000;

/// How a running export ended badly.
enum Stop {
    /// The cell's code failed (the cell fails with it).
    Cell(Failure, CellError),
    /// The host could not go on (the instance was closed under it, say).
    Host(CellError),
}

impl<E: Engine, P: Pacing> CellHost<E, P> {
    /// The instance, or why there is none.
    pub(super) fn with_instance<R>(
        cell: &Cell<E>,
        f: impl FnOnce(&mut E::Instance) -> R,
    ) -> Result<R, CellError> {
        let mut slot = cell.instance.borrow_mut();
        match slot.as_mut() {
            Some(instance) => Ok(f(instance)),
            None if cell.lifecycle() == Lifecycle::Failed => Err(failed(cell)),
            None => Err(CellError::Closed),
        }
    }

    /// The failure a trap in `export` is, and the error the entry returns.
    fn stop_for(&self, cell: &Cell<E>, export: &'static str, t: Trap) -> Stop {
        if let Some(code) = t.exit_code {
            let failure = Failure::Exit {
                export: export.into(),
                code,
            };
            return Stop::Cell(failure, CellError::Exited { code });
        }
        if t.out_of_fuel {
            let fuel = if export == abi::ALLOC || export == abi::FREE {
                cell.limits.alloc_fuel
            } else {
                cell.limits.entry_fuel
            };
            let failure = Failure::Fuel {
                export: export.into(),
                fuel,
            };
            return Stop::Cell(failure, CellError::FuelExhausted { export, fuel });
        }
        let failure = Failure::Trap {
            export: export.into(),
            message: t.message.clone(),
        };
        Stop::Cell(failure, CellError::Trap(t))
    }

    /// Fails the cell: its instance is dropped (what it left in memory is half-written), its
    /// output flushed, and every later entry refused. Returns the entry's error.
    fn fail(&self, cell: &Cell<E>, stop: Stop) -> CellError {
        let (failure, error) = match stop {
            Stop::Host(e) => return e,
            Stop::Cell(f, e) => (f, e),
        };
        if has(self.config.bugs, planted::KEEP_FAILED_INSTANCE) {
            // The failed export's instance stays, and so does the cell's Ready state.
            self.pacing
                .trace("cell-failed", format_args!("{}: {failure}", cell.name()));
            *cell.failure.borrow_mut() = Some(failure);
            return error;
        }
        if let Some(wasi) = cell.wasi.borrow_mut().take() {
            wasi.flush();
        }
        cell.instance.borrow_mut().take();
        self.pacing
            .trace("cell-failed", format_args!("{}: {failure}", cell.name()));
        *cell.failure.borrow_mut() = Some(failure);
        *cell.lifecycle.borrow_mut() = Lifecycle::Failed;
        error
    }

    /// A buffer from the cell's own allocator holding `data`, checked to lie inside its memory.
    pub(super) fn alloc(&self, cell: &Cell<E>, data: &[u8]) -> Result<u32, CellError> {
        if data.is_empty() {
            return Ok(0);
        }
        let size =
            u32::try_from(data.len()).map_err(|_| CellError::AllocFailed { size: u32::MAX })?;
        let fuel = cell.limits.alloc_fuel;
        let out = Self::with_instance(cell, |i| i.call_now(abi::ALLOC, &[i64::from(size)], fuel))?
            .map_err(|t| self.fail(cell, self.stop_for(cell, abi::ALLOC, t)))?;
        let ptr = out.first().map_or(0, |p| *p as u32);
        if ptr == 0 {
            return Err(CellError::AllocFailed { size });
        }
        Self::with_instance(cell, |i| i.memory().write(ptr, data))??;
        Ok(ptr)
    }

    pub(super) fn free(&self, cell: &Cell<E>, ptr: u32, size: u32) {
        if ptr == 0 || !cell.exports_free {
            return;
        }
        let fuel = cell.limits.alloc_fuel;
        let args = [i64::from(ptr), i64::from(size)];
        if let Ok(Err(t)) = Self::with_instance(cell, |i| i.call_now(abi::FREE, &args, fuel)) {
            self.fail(cell, self.stop_for(cell, abi::FREE, t));
        }
    }

    /// One entry whose input is a buffer (init's config, step's envelope): allocates it,
    /// runs `export(ptr, len)`, frees it (unless `free` is off: the planted idle-tick leak).
    pub(super) async fn entry(
        &self,
        cell: &Rc<Cell<E>>,
        chain: u64,
        export: &'static str,
        input: &[u8],
        free: bool,
    ) -> Result<Vec<i64>, CellError> {
        let before = Self::with_instance(cell, |i| i.fuel_consumed())?;
        let ptr = self.alloc(cell, input)?;
        let len = input.len() as u32;
        let rc = self
            .run_export(cell, chain, export, vec![i64::from(ptr), i64::from(len)])
            .await;
        if free {
            self.free(cell, ptr, len);
        }
        self.count_fuel(cell, before);
        rc
    }

    fn count_fuel(&self, cell: &Cell<E>, before: u64) {
        if let Ok(after) = Self::with_instance(cell, |i| i.fuel_consumed()) {
            cell.last_entry_fuel.set(after.saturating_sub(before));
        }
    }

    /// Runs an export to its end in fuel slices, serving deferred imports on the way. A trap,
    /// a spent budget or `proc_exit` fails the cell.
    pub(super) fn run_export<'a>(
        &'a self,
        cell: &'a Rc<Cell<E>>,
        chain: u64,
        export: &'static str,
        args: Vec<i64>,
    ) -> Boxed<'a, Result<Vec<i64>, CellError>> {
        Box::pin(async move {
            let r = self.slices(cell, chain, export, args).await;
            if let Some(wasi) = cell.wasi.borrow().as_ref() {
                wasi.flush();
            }
            r.map_err(|stop| self.fail(cell, stop))
        })
    }

    async fn slices(
        &self,
        cell: &Rc<Cell<E>>,
        chain: u64,
        export: &'static str,
        args: Vec<i64>,
    ) -> Result<Vec<i64>, Stop> {
        let budget = cell.limits.entry_fuel;
        let deadline = cell
            .limits
            .call_timeout_ns
            .map(|t| self.services.now_ns().saturating_add(t));
        let timed_out = |me: &Self| {
            let ms = cell.limits.call_timeout_ns.unwrap_or(0) / 1_000_000;
            let _ = Self::with_instance(cell, |i| i.abandon());
            me.stop_timeout(export, ms)
        };
        let host = |e: CellError| Stop::Host(e);
        let mut fuel = self.pacing.fuel_slice().clamp(1, budget);
        let mut used = 0u64;
        let mut slice = Self::with_instance(cell, |i| i.start(export, &args, fuel))
            .map_err(host)?
            .map_err(|t| self.stop_for(cell, export, t))?;
        loop {
            if !matches!(slice, Slice::Finished(_))
                && deadline.is_some_and(|d| self.services.now_ns() > d)
            {
                return Err(timed_out(self));
            }
            slice = match slice {
                Slice::Finished(results) => return Ok(results),
                Slice::OutOfFuel { required } => {
                    used += fuel;
                    if used.saturating_add(required) > budget {
                        let _ = Self::with_instance(cell, |i| i.abandon());
                        let failure = Failure::Fuel {
                            export: export.into(),
                            fuel: budget,
                        };
                        let error = CellError::FuelExhausted {
                            export,
                            fuel: budget,
                        };
                        return Err(Stop::Cell(failure, error));
                    }
                    self.pacing.preempt().await;
                    fuel = self
                        .pacing
                        .fuel_slice()
                        .max(required)
                        .clamp(1, budget - used);
                    Self::with_instance(cell, |i| i.resume_fuel(fuel))
                        .map_err(host)?
                        .map_err(|t| self.stop_for(cell, export, t))?
                }
                Slice::Deferred(request) => {
                    let answer = match request.downcast::<SiblingRequest>() {
                        Ok(req) => self.serve_sibling(cell, chain, *req).await,
                        Err(other) => match other.downcast::<WasiRequest>() {
                            Ok(w) => {
                                if !self.serve_wasi(*w, deadline).await {
                                    return Err(timed_out(self));
                                }
                                Answer {
                                    code: 0,
                                    delivery: None,
                                }
                            }
                            Err(_) => Answer {
                                code: i64::from(call_code::STUBBED),
                                delivery: None,
                            },
                        },
                    };
                    Self::with_instance(cell, |i| i.resume_host(answer, fuel))
                        .map_err(host)?
                        .map_err(|t| self.stop_for(cell, export, t))?
                }
            };
        }
    }

    fn stop_timeout(&self, export: &'static str, ms: u64) -> Stop {
        let failure = Failure::Timeout {
            export: export.into(),
            ms,
        };
        Stop::Cell(failure, CellError::Timeout { export, ms })
    }

    /// A WASI wait: a yield is a scheduling point; a sleep waits the host's time, cut short
    /// at the entry's deadline. False if the deadline passed.
    async fn serve_wasi(&self, request: WasiRequest, deadline: Option<u64>) -> bool {
        match request {
            WasiRequest::Yield => {
                self.pacing.preempt().await;
                true
            }
            WasiRequest::Sleep { ns } => {
                let now = self.services.now_ns();
                let left = deadline.map_or(u64::MAX, |d| d.saturating_sub(now));
                if ns > left {
                    self.services.sleep(left.saturating_add(1)).await;
                    return false;
                }
                self.services.sleep(ns).await;
                true
            }
        }
    }

    /// Serves `pulp_call` from `caller`: the code the caller sees, and the response for the
    /// engine to deliver through the caller's allocator.
    async fn serve_sibling(&self, caller: &Rc<Cell<E>>, chain: u64, req: SiblingRequest) -> Answer {
        let code = |c: u32| Answer {
            code: i64::from(c),
            delivery: None,
        };
        let Some(target) = self.cell(&req.target) else {
            return code(call_code::UNKNOWN_TARGET);
        };
        if !target.authorizes(caller.spec()) {
            return code(call_code::NOT_AUTHORIZED);
        }
        let n = self.next_call.get();
        self.next_call.set(n + 1);
        let from = format!("cell-{}", caller.name());
        self.pacing.trace_on(
            &from,
            "call",
            format_args!("cell-{}.{} send=call{n}", target.name(), req.function),
        );
        match self
            .call_in(&target, chain, &req.function, &req.args, Some((&from, n)))
            .await
        {
            Ok(bytes) => {
                self.pacing.trace_on(
                    &from,
                    "answered",
                    format_args!("cell-{} len={} recv=ret{n}", target.name(), bytes.len()),
                );
                Answer {
                    code: i64::from(call_code::OK),
                    delivery: Some(Delivery {
                        bytes,
                        ptr_out: req.resp_ptr_out,
                        len_out: req.resp_len_out,
                        alloc_fuel: caller.limits.alloc_fuel,
                        alloc_failed: i64::from(call_code::CALLER_ALLOC_FAILED),
                        write_failed: i64::from(call_code::WRITE_FAILED),
                    }),
                }
            }
            Err(e) => {
                self.pacing.trace_on(
                    &from,
                    "call-failed",
                    format_args!("cell-{}: {e}", target.name()),
                );
                code(match e {
                    CellError::Reentrant { .. } => call_code::REENTRANT,
                    CellError::ShutDown
                    | CellError::Closed
                    | CellError::NotInitialized
                    | CellError::Failed(_) => call_code::TARGET_GONE,
                    _ => call_code::TARGET_ERROR,
                })
            }
        }
    }

    /// Runs `pulp_on_call` in `target` for a chain. `origin` is the calling cell's lane and the
    /// call's number, for the trace (none for a call from the host).
    pub(super) async fn call_in(
        &self,
        target: &Rc<Cell<E>>,
        chain: u64,
        function: &str,
        args: &[u8],
        origin: Option<(&str, u64)>,
    ) -> Result<Vec<u8>, CellError> {
        let _entry = self.enter(target, chain).await?;
        let lane = format!("cell-{}", target.name());
        match origin {
            Some((from, n)) => self.pacing.trace_on(
                &lane,
                "enter",
                format_args!("{function} from={from} recv=call{n}"),
            ),
            None => self
                .pacing
                .trace_on(&lane, "enter", format_args!("{function} from=host")),
        }
        let result = self.call_entered(target, chain, function, args).await;
        let outcome = if result.is_ok() { "ok" } else { "failed" };
        match origin {
            Some((_, n)) => self.pacing.trace_on(
                &lane,
                "return",
                format_args!("{function} {outcome} send=ret{n}"),
            ),
            None => self
                .pacing
                .trace_on(&lane, "return", format_args!("{function} {outcome}")),
        }
        result
    }

    /// `pulp_on_call` in `target`, entered by the caller.
    async fn call_entered(
        &self,
        target: &Rc<Cell<E>>,
        chain: u64,
        function: &str,
        args: &[u8],
    ) -> Result<Vec<u8>, CellError> {
        ready(target)?;
        if !target.exports_on_call {
            return Err(CellError::CallFailed {
                code: on_call_code::NO_PROVIDER,
            });
        }
        let before = Self::with_instance(target, |i| i.fuel_consumed())?;
        let result = self.on_call(target, chain, function, args).await;
        self.count_fuel(target, before);
        if result.is_err() {
            self.after_failure(target, chain).await;
        }
        result
    }

    async fn on_call(
        &self,
        target: &Rc<Cell<E>>,
        chain: u64,
        function: &str,
        args: &[u8],
    ) -> Result<Vec<u8>, CellError> {
        let name_ptr = self.alloc(target, function.as_bytes())?;
        let args_ptr = self.alloc(target, args)?;
        let out_ptr = self.alloc(target, &[0u8; 8])?;
        let (name_len, args_len) = (function.len() as u32, args.len() as u32);
        let outcome = self
            .run_export(
                target,
                chain,
                abi::ON_CALL,
                vec![
                    i64::from(name_ptr),
                    i64::from(name_len),
                    i64::from(args_ptr),
                    i64::from(args_len),
                    i64::from(out_ptr),
                    i64::from(out_ptr) + 4,
                ],
            )
            .await;
        let response = outcome.and_then(|rc| self.take_response(target, rc, out_ptr));
        let (resp_ptr, resp_len, result) = match response {
            Ok((ptr, len, bytes)) => (ptr, len, Ok(bytes)),
            Err(e) => (0, 0, Err(e)),
        };
        // Free in reverse order of allocation (the response was allocated last, by the cell).
        if !has(self.config.bugs, planted::LEAK_CALL_RESPONSE) {
            self.free(target, resp_ptr, resp_len);
        }
        self.free(target, out_ptr, 8);
        self.free(target, args_ptr, args_len);
        self.free(target, name_ptr, name_len);
        result
    }

    /// The response a finished `pulp_on_call` left: (ptr, len, bytes).
    fn take_response(
        &self,
        target: &Cell<E>,
        rc: Vec<i64>,
        out_ptr: u32,
    ) -> Result<(u32, u32, Vec<u8>), CellError> {
        let code = rc
            .first()
            .map_or(on_call_code::PROVIDER_ERROR, |c| *c as u32);
        Self::with_instance(target, |i| {
            let out = i.memory().read(out_ptr, 8)?;
            let word =
                |at: usize| u32::from_le_bytes([out[at], out[at + 1], out[at + 2], out[at + 3]]);
            let (ptr, len) = (word(0), word(4));
            if code != on_call_code::OK {
                return Err(CellError::CallFailed { code });
            }
            if len > self.config.max_response {
                return Err(CellError::CallFailed {
                    code: on_call_code::PROVIDER_ERROR,
                });
            }
            let bytes = if len == 0 {
                Vec::new()
            } else {
                i.memory().read(ptr, len)?
            };
            Ok((ptr, len, bytes))
        })?
    }

    /// After a step or call failed: if the cell's code failed and its restart policy allows,
    /// a new instance (from the start image when there is one) and `pulp_init` again, within
    /// Pulp's breaker of 5 restarts in 30 s of the host's time. The failed entry's error
    /// stands either way.
    pub(super) async fn after_failure(&self, cell: &Rc<Cell<E>>, chain: u64) {
        if cell.lifecycle() != Lifecycle::Failed {
            return;
        }
        let clean_exit = cell.failure().and_then(|f| f.exit_code()) == Some(0);
        match cell.limits.restart {
            Restart::Never => return,
            Restart::OnCrash if clean_exit => return,
            Restart::OnCrash | Restart::Always => {}
        }
        let now = self.services.now_ns();
        let n = {
            let mut r = cell.restarts.borrow_mut();
            if now.saturating_sub(r.window_start_ns) > RESTART_WINDOW_NS {
                *r = Restarts {
                    count: 0,
                    window_start_ns: now,
                };
            }
            if r.count >= MAX_RESTARTS {
                drop(r);
                self.pacing.trace(
                    "cell-restart-limit",
                    format_args!("{}: {MAX_RESTARTS} restarts in 30 s", cell.name()),
                );
                return;
            }
            r.count += 1;
            r.count
        };
        let started = if has(self.config.bugs, planted::RESTART_WITHOUT_START) {
            self.instantiate_unstarted(&cell.prepared, &cell.spec, &cell.limits)
        } else {
            self.instantiate(&cell.prepared, &cell.spec, &cell.limits)
        };
        let started = match started {
            Ok(s) => s,
            Err(e) => {
                self.pacing
                    .trace("cell-restart-failed", format_args!("{}: {e}", cell.name()));
                return;
            }
        };
        *cell.instance.borrow_mut() = Some(started.instance);
        *cell.wasi.borrow_mut() = Some(started.wasi);
        cell.start_fuel.set(started.start_fuel);
        *cell.lifecycle.borrow_mut() = Lifecycle::Loaded;
        match self.init_locked(cell, chain).await {
            Ok(()) => self
                .pacing
                .trace("cell-restarted", format_args!("{} #{n}", cell.name())),
            Err(CellError::InitFailed { code }) => {
                let stop = Stop::Cell(Failure::InitFailed { code }, CellError::InitFailed { code });
                self.fail(cell, stop);
            }
            Err(e) => self
                .pacing
                .trace("cell-restart-failed", format_args!("{}: {e}", cell.name())),
        }
    }
}
