//! Process isolation: a sweep's worker hands its seeds to a child process (`sim sweep-worker`)
//! and reads back one JSON line per seed, so a run that aborts, overflows its stack or leaves
//! global state behind cannot end the sweep, nor change another seed's verdict. A child runs at
//! most `--seeds-per-process` seeds, then a fresh one takes over; a child that dies mid-seed is
//! that seed's failure (oracle `crash`), with a replay file that `sim replay` runs in a child
//! again.
//!
//! The protocol is one line each way per seed: `SEED PICTURE\n` in (PICTURE 1 when the failure
//! should get its picture), the seed's [`Outcome`] as JSON out, in order. The parent keeps two
//! seeds in flight, so a child never waits for its next seed; when a child dies, the oldest
//! unanswered seed is the one that killed it, and the others go to its successor. A child ends
//! at the end of its input. Children run in their own process group, so a Ctrl-C at the terminal reaches only the
//! sweep, which finishes the seeds in flight and closes them.

use super::crash::{STDERR_TAIL, describe, last_words};
use super::seed::{self, Found, Outcome, SeedContext};
use crate::exit::UsageError;
use crate::replay_file::ReplayFile;
use crate::run::{Shape, spec_from};
use crate::shard::Shard;
use crate::summary::Failure;
use clap::Args;
use harness::{Catalogue, RunSpec};
use simkit::DecisionMode;
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child as Proc, ChildStdin, Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex, mpsc};

/// The hidden `sim sweep-worker`: the child side.
#[derive(Args)]
pub struct WorkerArgs {
    #[arg(long)]
    scenario: String,
    #[command(flatten)]
    shape: Shape,
    #[arg(long)]
    dir: PathBuf,
    #[arg(long, default_value = "0/1")]
    shard: String,
}

/// Runs seeds read from standard input until it ends, one JSON line out per seed.
pub fn worker_main(catalogue: &Catalogue, args: WorkerArgs) -> Result<ExitCode, UsageError> {
    let spec = spec_from(
        catalogue,
        Some(args.scenario),
        &args.shape,
        DecisionMode::Seeded(0),
    )?;
    let cx = SeedContext {
        catalogue,
        spec: &spec,
        dir: &args.dir,
        shard: Shard::parse(&args.shard)?,
    };
    let mut out = std::io::stdout().lock();
    let mut reported = seed::Reported::new();
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let mut words = line.split_whitespace();
        let (Some(seed), Some(picture), None) = (words.next(), words.next(), words.next()) else {
            return Err(UsageError(format!(
                "sweep-worker: bad request line '{line}'"
            )));
        };
        let seed: u64 = seed
            .parse()
            .map_err(|_| UsageError(format!("sweep-worker: bad seed in '{line}'")))?;
        let outcome = seed::run(&cx, seed, picture == "1", &mut reported);
        let json = serde_json::to_string(&outcome)?;
        if writeln!(out, "{json}").and_then(|()| out.flush()).is_err() {
            // The sweep is gone: nothing is left to tell.
            break;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// How the parent starts its children.
pub struct ChildCommand {
    pub exe: PathBuf,
    pub args: Vec<String>,
}

impl ChildCommand {
    pub fn new(
        shape: &Shape,
        spec: &RunSpec,
        dir: &Path,
        shard: Shard,
    ) -> Result<Self, UsageError> {
        let exe = std::env::current_exe()
            .map_err(|e| UsageError(format!("cannot find this program to start workers: {e}")))?;
        let mut args = vec![
            "sweep-worker".to_string(),
            "--scenario".into(),
            spec.scenario.clone(),
            "--strategy".into(),
            shape.strategy.clone(),
            "--dir".into(),
            dir.display().to_string(),
            "--shard".into(),
            shard.to_string(),
        ];
        if let Some(d) = shape.pct_depth {
            args.extend(["--pct-depth".into(), d.to_string()]);
        }
        if let Some(m) = &shape.mem {
            args.extend(["--mem".into(), m.clone()]);
        }
        if let Some(p) = &shape.plant {
            args.extend(["--plant".into(), p.clone()]);
        }
        Ok(ChildCommand { exe, args })
    }
}

/// A child process and the pipes to it.
pub struct Child {
    proc: Proc,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    stderr: Arc<Mutex<VecDeque<u8>>>,
    stderr_reader: Option<std::thread::JoinHandle<()>>,
    /// Seeds handed to it so far.
    pub sent: u64,
}

/// A child that died before answering: how, and its last words.
pub struct Died {
    pub how: String,
    pub words: String,
}

impl Child {
    pub fn spawn(cmd: &ChildCommand) -> std::io::Result<Child> {
        let mut proc = Command::new(&cmd.exe)
            .args(&cmd.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()?;
        let (stdout, mut stderr) = match (proc.stdout.take(), proc.stderr.take()) {
            (Some(o), Some(e)) => (o, e),
            _ => return Err(std::io::Error::other("a child without pipes")),
        };
        let (tx, lines) = mpsc::channel();
        std::thread::Builder::new()
            .name("sweep-child-out".into())
            .spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            })?;
        let tail = Arc::new(Mutex::new(VecDeque::with_capacity(STDERR_TAIL)));
        let keep = tail.clone();
        let stderr_reader = std::thread::Builder::new()
            .name("sweep-child-err".into())
            .spawn(move || {
                let mut buf = [0u8; 1024];
                while let Ok(n @ 1..) = stderr.read(&mut buf) {
                    let Ok(mut t) = keep.lock() else { break };
                    t.extend(&buf[..n]);
                    let over = t.len().saturating_sub(STDERR_TAIL);
                    t.drain(..over);
                }
            })?;
        Ok(Child {
            stdin: proc.stdin.take(),
            proc,
            lines,
            stderr: tail,
            stderr_reader: Some(stderr_reader),
            sent: 0,
        })
    }

    /// Hands `seed` to the child; false when it is gone (its death shows in the next `recv`).
    pub fn send(&mut self, seed: u64, picture: bool) -> bool {
        self.sent += 1;
        match self.stdin.as_mut() {
            Some(stdin) => writeln!(stdin, "{seed} {}", u8::from(picture))
                .and_then(|()| stdin.flush())
                .is_ok(),
            None => false,
        }
    }

    /// The outcome of the oldest seed sent and not yet answered; `Err` when the child died (or
    /// spoke nonsense) instead.
    pub fn recv(&mut self) -> Result<Outcome, Died> {
        match self
            .lines
            .recv()
            .ok()
            .map(|l| serde_json::from_str::<Outcome>(&l).map_err(|e| (l, e)))
        {
            Some(Ok(outcome)) => Ok(outcome),
            Some(Err((line, e))) => {
                self.kill();
                Err(Died {
                    how: "answered nonsense".into(),
                    words: format!("{e}: {}", line.chars().take(200).collect::<String>()),
                })
            }
            None => Err(self.died()),
        }
    }

    fn kill(&mut self) {
        let _ = self.proc.kill();
        let _ = self.proc.wait();
    }

    fn died(&mut self) -> Died {
        self.stdin = None;
        let how = match self.proc.wait() {
            Ok(status) => describe(&status),
            Err(e) => format!("could not be waited for: {e}"),
        };
        // The stderr reader ends with the process: its last bytes are in once it has.
        if let Some(reader) = self.stderr_reader.take() {
            let _ = reader.join();
        }
        let words = self
            .stderr
            .lock()
            .map(|t| last_words(&t.iter().copied().collect::<Vec<u8>>()))
            .unwrap_or_default();
        Died { how, words }
    }

    /// Closes the child's input and waits for it to end.
    pub fn finish(mut self) {
        self.stdin = None;
        let _ = self.proc.wait();
    }
}

/// A seed whose child died: its crash replay file is written and it is a failure.
pub fn crash_found(
    catalogue: &Catalogue,
    spec: &RunSpec,
    cx_dir: &Path,
    shard: Shard,
    seed: u64,
    died: &Died,
) -> Outcome {
    let what = if died.words.is_empty() {
        format!("the run's process {}", died.how)
    } else {
        format!("the run's process {}: {}", died.how, died.words)
    };
    let mem = harness::resolved_mem(catalogue, spec)
        .map_or_else(|_| "tso".into(), |m| m.name().to_string());
    let mut file = ReplayFile::crashed(spec, &mem, seed, what.clone());
    file.shard = (!shard.is_whole()).then(|| shard.to_string());
    let replay = cx_dir.join(format!("seed-{seed}.json"));
    if let Err(e) = file.write(&replay) {
        return Outcome::Error {
            seed,
            message: format!("cannot write {}: {e}", replay.display()),
        };
    }
    let failure = Failure {
        seed,
        trace_hash: file.trace_hash.clone(),
        first_violation: format!("[crash] {what}"),
        oracles: [("crash".to_string(), 1)].into_iter().collect(),
        replay: format!("seed-{seed}.json"),
        html: None,
    };
    let event = seed::failure_event(
        &failure,
        cx_dir,
        vec![serde_json::json!({"oracle": "crash", "message": what})],
    );
    Outcome::Failed(Box::new(Found {
        failure,
        obs: seed::SeedObs::default(),
        event,
    }))
}
