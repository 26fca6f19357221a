//! [`PoolBuilder`]: a pool's options, and [`build`](PoolBuilder::build),
//! which checks them, starts the launcher (SPMD mode's ranks; a command
//! launcher's listener, and its first workers when one command starts
//! them all), the scheduler and the workers, and waits until they are
//! ready.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::protocol::InitArgs;
use super::scheduler::{Limits, Scheduler};
use super::workers::{lock, Shared, Spawner};
use super::{spmd, Launcher, Pool};
use crate::encode::{self, EncodeError};
use crate::error::{Error, Kind, Result};
use crate::popen::{PopenBuilder, Stdio};
use crate::spawn;

/// Options for a [`Pool`]: `&mut self` setters, then [`build`](PoolBuilder::build).
#[derive(Clone, Debug)]
pub struct PoolBuilder {
    workers: usize,
    initializer: Option<(String, std::result::Result<(), EncodeError>, InitArgs)>,
    max_tasks_per_child: Option<u64>,
    max_memory_per_child: Option<u64>,
    task_timeout: Option<Duration>,
    popen: PopenBuilder,
    launcher: Launcher,
}

impl Default for PoolBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl PoolBuilder {
    /// Defaults: one worker per available CPU, no initializer, no task
    /// limit, no timeout, stdin the null device, stdout and stderr
    /// inherited, workers die with this process.
    pub fn new() -> Self {
        let mut popen = PopenBuilder::new();
        popen.kill_on_parent_death(true);
        PoolBuilder {
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            initializer: None,
            max_tasks_per_child: None,
            max_memory_per_child: None,
            task_timeout: None,
            popen,
            launcher: Launcher::local(),
        }
    }

    /// The number of worker processes. It must be at least 1:
    /// [`build`](PoolBuilder::build) refuses 0 with [`Error::is_usage`]
    /// (Python's `Pool(0)` raises `ValueError`).
    pub fn workers(&mut self, n: usize) -> &mut Self {
        self.workers = n;
        self
    }

    /// Runs `entry(args)` once in every worker before its first task. If it
    /// panics, the pool fails with [`Error::is_pool_broken`] instead of
    /// respawning workers forever. If `args` can't be serialized,
    /// [`build`](PoolBuilder::build) fails with [`Error::is_encode`].
    ///
    /// The pool keeps `args` and serializes it for each worker as that
    /// worker starts (replacements included), so handles in it reach every
    /// worker as they reach a spawned [`Process`](crate::Process): a
    /// [`Connection`](crate::Connection), a [`Frozen`](crate::Frozen)
    /// block each worker maps (one block, not a copy per worker), a
    /// [`Shared`](crate::Shared) atomic.
    ///
    /// `entry` is a plain `fn` item registered with [`entry!`](crate::entry),
    /// as everywhere an entry is taken; a closure that captures doesn't
    /// compile (its captures could not cross into the workers):
    ///
    /// ```compile_fail,E0080
    /// # fn main() {
    /// let offset = 1u64;
    /// multiproc::Pool::builder().initializer(move |x: u64| x + offset, 2);
    /// # }
    /// ```
    pub fn initializer<F, A, R>(&mut self, entry: F, args: A) -> &mut Self
    where
        F: Fn(A) -> R + Copy + 'static,
        A: Serialize + Send + Sync + 'static,
    {
        let name = spawn::entry_id(&entry);
        // Checked now, so `build` can refuse what can't be serialized; a
        // handle in it can only pass while a worker is spawned, which is
        // when `args` is serialized for each worker.
        let check = match encode::to_vec(&args) {
            Err(EncodeError::Handle(e)) if e.is_not_spawning() => Ok(()),
            other => other.map(drop),
        };
        self.initializer = Some((name.to_string(), check, InitArgs::new(args)));
        self
    }

    /// Replace each worker after it ran `n` tasks (Python's
    /// `maxtasksperchild`). `n` must be at least 1:
    /// [`build`](PoolBuilder::build) refuses 0 with [`Error::is_usage`].
    pub fn max_tasks_per_child(&mut self, n: u64) -> &mut Self {
        self.max_tasks_per_child = Some(n);
        self
    }

    /// Replace a worker whose resident memory is over `bytes` after a
    /// chunk of tasks (one task, for [`submit`](Pool::submit) and chunk
    /// size 1; see [`Imap::chunksize`](crate::Imap::chunksize)), as
    /// billiard's `max_memory_per_child`: the worker measures itself
    /// after each chunk, and one over the limit says so and exits without
    /// starting anything more; the chunks it was sent behind go to other
    /// workers, and a new worker takes its place. Results are not
    /// affected. So a worker's memory stays under `bytes` plus what one
    /// chunk adds.
    ///
    /// Measured as the resident set (Linux: `/proc/self/statm`) or the
    /// working set (Windows: `GetProcessMemoryInfo`); on other systems it
    /// is not measured and the option has no effect. `bytes` must be at
    /// least 1: [`build`](PoolBuilder::build) refuses 0 with
    /// [`Error::is_usage`].
    pub fn max_memory_per_child(&mut self, bytes: u64) -> &mut Self {
        self.max_memory_per_child = Some(bytes);
        self
    }

    /// A task that runs longer than this fails with
    /// [`Error::is_timeout`]; its worker is killed and replaced. With a
    /// timeout, automatic chunking sends one task per chunk; with an
    /// explicit chunk size the limit is `timeout × chunksize` per chunk.
    /// A task's own limit ([`Task::timeout`](crate::Task::timeout)) takes
    /// the place of this one. The pool enforces it itself (one timer
    /// thread per pool), whether or not any thread waits for a result. A
    /// timeout too long to be a deadline (`Duration::MAX`) is no limit.
    pub fn task_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.task_timeout = Some(timeout);
        self
    }

    /// Where the workers' stdin comes from: [`Stdio::Null`] (the
    /// default) or [`Stdio::Inherit`].
    ///
    /// [`Stdio::Capture`] is refused here and for stdout and stderr:
    /// [`build`](PoolBuilder::build) fails with [`Error::is_usage`]. A
    /// pool's workers are shared by all its tasks and replaced as they
    /// die, so there is no one stream to hand back; run the work in a
    /// [`Process`](crate::Process) to capture its output.
    pub fn stdin(&mut self, stdio: Stdio) -> &mut Self {
        self.popen.stdin(stdio);
        self
    }

    /// Where the workers' stdout goes: [`Stdio::Inherit`] (the default)
    /// or [`Stdio::Null`] ([`Stdio::Capture`] is refused, see
    /// [`stdin`](Self::stdin)).
    pub fn stdout(&mut self, stdio: Stdio) -> &mut Self {
        self.popen.stdout(stdio);
        self
    }

    /// Where the workers' stderr goes: [`Stdio::Inherit`] (the default)
    /// or [`Stdio::Null`] ([`Stdio::Capture`] is refused, see
    /// [`stdin`](Self::stdin)).
    pub fn stderr(&mut self, stdio: Stdio) -> &mut Self {
        self.popen.stderr(stdio);
        self
    }

    /// Where the workers' stdout and stderr go: the same as
    /// [`stdout`](Self::stdout) and [`stderr`](Self::stderr) with `stdio`
    /// (stdin stays as [`stdin`](Self::stdin) set it).
    pub fn stdio(&mut self, stdio: Stdio) -> &mut Self {
        self.popen.stdio(stdio);
        self
    }

    /// Whether workers die when this process dies (default: true).
    pub fn kill_on_parent_death(&mut self, yes: bool) -> &mut Self {
        self.popen.kill_on_parent_death(yes);
        self
    }

    /// How the workers are started: [`Launcher::local`] (the default),
    /// [`Launcher::command`] — a command per worker (a shell, `srun`,
    /// `ssh`) that starts this program, which connects back — or
    /// [`Launcher::spmd`], the other ranks of the job this program runs in
    /// (on those ranks, [`build`](Self::build) does not return). With a
    /// command, the stdio settings and
    /// [`kill_on_parent_death`](Self::kill_on_parent_death) don't apply
    /// (the command's stdout and stderr reach this process's, each line
    /// prefixed with the worker's host and pid unless
    /// [`Launcher::prefix_output`] turns that off; a worker exits
    /// when its connection to this process ends), and an initializer's
    /// arguments can't carry handles ([`build`](Self::build) fails).
    pub fn launcher(&mut self, launcher: Launcher) -> &mut Self {
        self.launcher = launcher;
        self
    }

    /// Runs this program as the workers (see [`set_executable`](crate::set_executable)).
    pub fn executable(&mut self, path: impl AsRef<Path>) -> &mut Self {
        self.popen.executable(path);
        self
    }

    /// Starts the workers and waits until all are ready (initializer done).
    ///
    /// Fails with [`Error::is_usage`] for options that make no pool: 0
    /// workers, `max_tasks_per_child(0)`, [`Stdio::Capture`] for any
    /// stream.
    ///
    /// With [`Launcher::spmd`], on every rank but 0 this does not return:
    /// the rank serves rank 0's pool, then exits the process (see
    /// [`Launcher::spmd`]).
    pub fn build(&self) -> Result<Pool> {
        if self.workers == 0 {
            return Err(Error::new(Kind::Usage(
                "a pool needs at least one worker (got 0)".into(),
            )));
        }
        if self.max_tasks_per_child == Some(0) {
            return Err(Error::new(Kind::Usage(
                "max_tasks_per_child must be at least 1 (got 0)".into(),
            )));
        }
        if self.max_memory_per_child == Some(0) {
            return Err(Error::new(Kind::Usage(
                "max_memory_per_child must be at least 1 byte (got 0)".into(),
            )));
        }
        if let Some(which) = ["stdin", "stdout", "stderr"]
            .into_iter()
            .zip(self.popen.stdio_settings())
            .find_map(|(which, s)| (s == Stdio::Capture).then_some(which))
        {
            return Err(Error::new(Kind::Usage(format!(
                "a pool cannot capture its workers' {which} (Stdio::Capture): use \
                 Stdio::Inherit or Stdio::Null, or a Process to capture a task's output"
            ))));
        }
        let initializer = match &self.initializer {
            None => None,
            Some((name, ..)) if spawn::find_entry(name).is_none() => {
                return Err(Error::new(Kind::UnknownEntry(name.clone())));
            }
            Some((name, Ok(()), args)) => Some((name.clone(), args.clone())),
            Some((name, Err(e), _)) => {
                return Err(Error::new(Kind::Encode {
                    entry: name.clone(),
                    source: e.clone(),
                }))
            }
        };
        let spmd = self.launcher.is_spmd();
        if spmd {
            if let Some(which) = [
                ("max_tasks_per_child", self.max_tasks_per_child.is_some()),
                ("max_memory_per_child", self.max_memory_per_child.is_some()),
            ]
            .into_iter()
            .find_map(|(which, set)| set.then_some(which))
            {
                return Err(Error::new(Kind::Usage(format!(
                    "{which} replaces workers, and an SPMD pool's workers (the job's other \
                     ranks) can't be replaced"
                ))));
            }
        }
        // A zero heartbeat timeout: refused on every rank, before any joins.
        let heartbeat = self.launcher.heartbeats()?;
        // SPMD mode: the other ranks become workers here and never return.
        let ranks = match heartbeat {
            Some(heartbeat) if spmd => Some(Arc::new(spmd::start(heartbeat)?)),
            _ => None,
        };
        let limits = Limits {
            workers: ranks.as_ref().map_or(self.workers, |r| r.count()),
            max_tasks_per_child: self.max_tasks_per_child,
            task_timeout: self.task_timeout,
            max_memory_per_child: self.max_memory_per_child,
        };
        let spawner = Spawner {
            initializer,
            popen: self.popen.clone(),
            remote: self.launcher.start()?.map(Arc::new),
            ranks,
        };
        // `{ntasks}`: one command starts the first workers.
        if let Some(remote) = &spawner.remote {
            remote.launch_all(limits.workers)?;
        }
        let mut sched = Scheduler::new(limits);
        if spmd {
            sched = sched.without_replacements();
        }
        let shared = Arc::new(Shared::new(sched, limits, spawner));
        let pool = Pool { shared };
        {
            let mut st = lock(&pool.shared.state);
            if self.task_timeout.is_some() {
                pool.shared.start_timer(&mut st)?;
            }
            for _ in 0..limits.workers {
                pool.shared.start_worker(&mut st)?;
            }
            while st.sched.starting() && st.sched.broken().is_none() {
                st = pool.shared.wait(st, None);
            }
            // A launch that failed: its error, as the start's own.
            let failed = st
                .sched
                .take_start_error()
                .or_else(|| st.sched.broken().map(|b| b.to_error()));
            if let Some(broken) = failed {
                drop(st);
                pool.shared.terminate();
                return Err(broken);
            }
        }
        Ok(pool)
    }
}
