//! [`Launcher`]: how a pool starts its workers — as local child processes
//! (the default), or through a command (`sh -c`, `srun`, `ssh host`) that
//! starts the worker program somewhere, which connects back to a
//! [`Listener`] of the pool's, authenticated with a key made for the pool.
//!
//! The parent side ([`Remote`]): one listener and one random 32-byte key
//! per pool; each launch runs the command with the address, the key (hex)
//! and a token in environment variables — never on the command line,
//! which `ps` shows anyone — and waits until the worker with that token
//! connects back (or the command exits, or [`CONNECT_TIMEOUT`] passes).
//! The worker says which build it is; another build is refused. Then the
//! worker gets its [`WorkerConfig`] and runs the same loop as a local
//! worker (`worker_loop`) over the TCP connection, its frames read by a
//! thread that exits the worker when the connection ends.

use std::ffi::OsString;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::protocol::{worker_loop, FromWorker, Heartbeat, InFrame, ToWorker, WorkerConfig};
use crate::connection::Connection;
use crate::deadline;
use crate::error::{Error, Kind, Result};
use crate::net::{Address, Client, Listener};
use crate::spawn;
use crate::status::ExitStatus;
use crate::sys;

/// The address of the pool's listener, for a launched worker.
const CONNECT_ENV: &str = "MULTIPROC_CONNECT";
/// The pool's key, hex, for a launched worker.
const AUTHKEY_ENV: &str = "MULTIPROC_AUTHKEY";
/// Which launch this worker is, so the pool knows its connection.
const TOKEN_ENV: &str = "MULTIPROC_WORKER_TOKEN";
/// Set when one command starts several workers (`{ntasks}`): each adds
/// its rank (`SLURM_PROCID`, …) to the token.
const BY_RANK_ENV: &str = "MULTIPROC_WORKER_TOKEN_BY_RANK";

/// In a template: how many workers the command is to start.
const NTASKS: &str = "{ntasks}";
/// [`Launcher::slurm`]'s template.
const SLURM_ONE: [&str; 6] = [
    "srun",
    "--ntasks=1",
    "--nodes=1",
    "--quiet",
    "--job-name=multiproc-worker",
    "{exe}",
];
/// [`Launcher::slurm`] with [`Launcher::all_at_once`].
const SLURM_ALL: [&str; 6] = [
    "srun",
    "--ntasks={ntasks}",
    "--quiet",
    "--label",
    "--job-name=multiproc-worker",
    "{exe}",
];

/// How long a launched worker has to connect back.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);

/// How a [`Pool`](crate::Pool)'s workers are started
/// ([`PoolBuilder::launcher`](crate::PoolBuilder::launcher)).
///
/// [`Launcher::local`] (the default) spawns each worker as a child
/// process of this one. [`Launcher::command`] runs a command per worker
/// that starts this program somewhere — here through a shell, on a
/// cluster node through `srun`, on another machine through `ssh` — and
/// the worker connects back to a listener of the pool's over TCP,
/// authenticated with a random key made for the pool (see
/// [`Listener`] for what the key protects and what not).
/// Address, key and a token travel in the environment variables
/// `MULTIPROC_CONNECT`, `MULTIPROC_AUTHKEY` and `MULTIPROC_WORKER_TOKEN`
/// (never on the command line, which `ps` shows), so the command must pass
/// its environment on to the worker, as `sh`, `srun` and `ssh` with
/// `SendEnv`/`AcceptEnv` do. The worker program must call
/// [`init`](crate::init) (or be a test binary with
/// [`test_support!`](crate::test_support)), and be the same build: a
/// worker of another build is refused and the pool fails to start it.
/// Handles can't reach a launched worker: a task whose arguments carry one
/// (a [`Connection`], shared memory, a lock) fails with
/// [`Error::is_encode`](crate::Error::is_encode) and the pool goes on; an
/// initializer whose arguments carry one makes
/// [`build`](crate::PoolBuilder::build) fail.
///
/// ```
/// # fn square(x: u64) -> u64 { x * x }
/// # multiproc::entry!(square);
/// # fn main() -> Result<(), multiproc::Error> {
/// # multiproc::init();
/// use multiproc::{Launcher, PoolBuilder};
///
/// // The worker program started directly by the launcher command; with
/// // `["srun", "--ntasks=1", "{exe}"]` it would run as a Slurm job step.
/// let pool = PoolBuilder::new()
///     .workers(2)
///     .launcher(Launcher::command(["{exe}"]))
///     .build()?;
/// assert_eq!(pool.map(square, 1..=3)?, vec![1, 4, 9]);
/// # Ok(()) }
/// ```
///
/// [`Launcher::spmd`] is the other way round: the program is started as N
/// ranks of a job, and rank 0's pool has the others as its workers.
///
/// One command can start all the workers at once: `{ntasks}` in the
/// template, or [`Launcher::slurm`]`.`[`all_at_once`](Launcher::all_at_once)
/// (one `srun -n N`).
///
/// # Failure model
///
/// A launched worker's task fails with
/// [`Error::is_worker_died`](crate::Error::is_worker_died) when the
/// worker's connection ends, and the worker is replaced through the
/// launcher. When the pool kills a launched worker (a time limit,
/// [`terminate`](crate::Pool::terminate)), it kills the launcher command
/// and shuts the worker's connection down, and the worker exits on that
/// even when it outlived its command
/// ([`exit_code::PARENT_GONE`](crate::exit_code::PARENT_GONE)). A launcher
/// command that exits while its worker stays connected counts as the
/// worker's death 5 s later. Heartbeats go both ways on the connection
/// (see [`heartbeat`](Launcher::heartbeat); SPMD ranks' too): a worker
/// silent past the timeout counts as dead, and a worker whose pool is
/// silent that long exits, so a vanished node or parent leaves nothing
/// waiting or running.
///
/// # Where the pool listens
///
/// A [`Launcher::command`] pool listens on `127.0.0.1` (any free port),
/// so its workers must run on this machine — through a shell, or `ssh`
/// to this host. For workers on other hosts, [`Launcher::slurm`] (and
/// [`listen_on_host`](Launcher::listen_on_host) on any launcher command)
/// makes it listen on the address this host's name resolves to, or on the
/// one the environment variable `MULTIPROC_LISTEN_ADDR` gives (an IP
/// address, `IP:port`, a host name or `host:port`: for a host whose name
/// resolves to the wrong interface, or only to a loopback address);
/// [`listen`](Launcher::listen) names the address in the code. The
/// listener is always authenticated with the pool's random key; the key
/// is not encryption: tasks and results cross the network in the clear
/// (see `docs/cluster.md`, "Security model", for tunnelling them).
#[derive(Clone, Debug)]
pub struct Launcher {
    kind: LauncherKind,
}

#[derive(Clone, Debug)]
enum LauncherKind {
    Local,
    Command {
        template: Vec<String>,
        listen: Listen,
        prefix_output: bool,
        /// [`Launcher::all_at_once`] was asked for.
        all_at_once: bool,
        heartbeat: Duration,
    },
    Spmd {
        heartbeat: Duration,
    },
}

/// Where a command launcher's pool listens.
#[derive(Clone, Debug)]
enum Listen {
    /// This address ([`Launcher::listen`]; the loopback one by default).
    At(Address),
    /// `MULTIPROC_LISTEN_ADDR`, else the address this host's name
    /// resolves to, found when the pool is built
    /// ([`Launcher::listen_on_host`]).
    Host,
}

impl Default for Launcher {
    fn default() -> Self {
        Launcher::local()
    }
}

impl Launcher {
    /// Workers are child processes of this one (the default).
    pub fn local() -> Launcher {
        Launcher {
            kind: LauncherKind::Local,
        }
    }

    /// Each worker is started by running `template` (the program, then its
    /// arguments), in which every `{exe}` is replaced by the worker
    /// program's path ([`executable`](crate::executable)), e.g.
    /// `["sh", "-c", "exec \"$0\"", "{exe}"]`,
    /// `["srun", "--ntasks=1", "{exe}"]` or `["ssh", "node12", "{exe}"]`;
    /// a template that names `{ntasks}` starts several workers per run
    /// (see [`all_at_once`](Launcher::all_at_once)).
    /// The command's stdin is the null device; its stdout and stderr go to
    /// this process's, each line prefixed with who wrote it (see
    /// [`prefix_output`](Launcher::prefix_output)); a launch that fails
    /// (the command exits before its worker connected back, or the worker
    /// does not connect within 60 s) puts the last 2 KiB of its stderr in
    /// its [`Error::is_spawn`] error. A launched
    /// worker says which host it runs on when it connects; the errors of
    /// its tasks when it dies ([`Error::is_worker_died`]) and a refusal of
    /// another build name that host. An empty template makes
    /// [`build`](crate::PoolBuilder::build) fail with
    /// [`Error::is_usage`].
    pub fn command<I, S>(template: I) -> Launcher
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Launcher {
            kind: LauncherKind::Command {
                template: template.into_iter().map(Into::into).collect(),
                listen: Listen::At(Address::Tcp(([127, 0, 0, 1], 0).into())),
                heartbeat: Launcher::DEFAULT_HEARTBEAT_TIMEOUT,
                prefix_output: true,
                all_at_once: false,
            },
        }
    }

    /// Each worker is a Slurm job step of its own, started by
    /// `srun --ntasks=1 --nodes=1 --quiet --job-name=multiproc-worker {exe}`:
    /// one task on one node; `--quiet` keeps srun's own progress lines off
    /// this process's stderr (its errors still show). srun passes its
    /// environment on to the task, so the worker finds the pool's address
    /// and key. Outside an allocation each worker is a job of its own
    /// (waiting in the queue counts against the 60 s a worker has to
    /// connect back); inside one (`sbatch`, `salloc`) each is a step of
    /// it, so a pool of more workers than the allocation's CPUs waits for
    /// steps to end. Killing a worker's `srun` (the pool does, when it kills
    /// the worker) or `scancel` of its job ends the worker; its task fails
    /// with [`Error::is_worker_died`](crate::Error::is_worker_died).
    ///
    /// The pool listens on an address of this host that the compute
    /// nodes can reach ([`listen_on_host`](Launcher::listen_on_host)): the
    /// one its name resolves to, or `MULTIPROC_LISTEN_ADDR`;
    /// [`listen`](Launcher::listen) names another.
    pub fn slurm() -> Launcher {
        Launcher::command(SLURM_ONE).listen_on_host()
    }

    /// One command starts all the pool's workers at once: [`Launcher::slurm`]
    /// becomes `srun --ntasks=N --quiet --label --job-name=multiproc-worker
    /// {exe}` — one job (or one step of the allocation) of N tasks, spread
    /// over as many nodes as Slurm likes, instead of N jobs of one task.
    /// A [`Launcher::command`] gets the same by naming `{ntasks}` in its
    /// template (`["mpirun", "-n", "{ntasks}", "{exe}"]`); on any other
    /// template this makes [`build`](crate::PoolBuilder::build) fail with
    /// [`Error::is_usage`](crate::Error::is_usage).
    ///
    /// `{ntasks}` is the pool's worker count when the pool starts, and 1
    /// for each replacement (a worker that died is replaced by a launch
    /// of one task, as without this option). Each task finds its rank in
    /// `SLURM_PROCID` (in a job step), `OMPI_COMM_WORLD_RANK` or
    /// `PMI_RANK`, and says it when it connects back, so the pool tells
    /// them apart; a worker started with `{ntasks}` that finds none exits
    /// with [`exit_code::NO_CHANNEL`](crate::exit_code::NO_CHANNEL).
    ///
    /// The workers share one command, so the pool can't kill one of them
    /// by killing it: when it ends one (a time limit, or
    /// [`terminate`](crate::Pool::terminate)), it shuts that worker's
    /// connection down; an idle worker exits at once, a busy one once its
    /// task returns. The command is killed once none of its workers is
    /// left in the pool (with srun: the step is cancelled). A worker that
    /// dies, or is killed from outside, fails its task with
    /// [`Error::is_worker_died`](crate::Error::is_worker_died) naming its
    /// own pid and host; the pool's pids for these workers
    /// ([`Pool::pids`](crate::Pool::pids)) are the workers' own. Their
    /// output is prefixed with the command's name and pid (srun's
    /// `--label` adds each task's number), not with each worker's.
    pub fn all_at_once(mut self) -> Launcher {
        if let LauncherKind::Command {
            template,
            all_at_once,
            ..
        } = &mut self.kind
        {
            *all_at_once = true;
            if template.iter().map(String::as_str).eq(SLURM_ONE) {
                *template = SLURM_ALL.iter().map(|a| a.to_string()).collect();
            }
        }
        self
    }

    /// SPMD mode, for a program started as N ranks by `srun -n N prog`
    /// (or `mpirun -n N prog`): in [`build`](crate::PoolBuilder::build),
    /// rank 0 gets a pool whose workers are ranks 1..N, and every other
    /// rank becomes one of those workers — `build` does not return there:
    /// the rank serves the pool until it ends, then exits the process
    /// (code 0; [`exit_code::PARENT_GONE`](crate::exit_code::PARENT_GONE)
    /// if it heard nothing from rank 0 for the heartbeat timeout;
    /// [`exit_code::SPMD_NO_POOL`](crate::exit_code::SPMD_NO_POOL) if it
    /// could not join). For clusters whose compute nodes can't
    /// reach the machine a job is submitted from: the ranks only connect
    /// to rank 0.
    ///
    /// The rank comes from `SLURM_PROCID`/`SLURM_NTASKS` (inside a job
    /// step, so not in a batch script itself), `OMPI_COMM_WORLD_RANK`/
    /// `OMPI_COMM_WORLD_SIZE` or `PMI_RANK`/`PMI_SIZE`; without any,
    /// `build` fails with [`Error::is_usage`](crate::Error::is_usage), as
    /// with a job of one rank. The pool has N − 1 workers, whatever
    /// [`workers`](crate::PoolBuilder::workers) says. Rank 0 listens on
    /// the address its host name resolves to (or `MULTIPROC_LISTEN_ADDR`,
    /// as [`listen_on_host`](Launcher::listen_on_host))
    /// with a random key, and hands address and key to the other ranks in
    /// a file only this user can read, in a directory all ranks share;
    /// see `docs/cluster.md` ("SPMD mode") for the file, the variables that
    /// move it, and why the other ranks divert in `build` rather than in
    /// [`init`](crate::init).
    ///
    /// Heartbeats go both ways on each rank's connection, as for
    /// [`Launcher::command`] (see [`heartbeat`](Launcher::heartbeat);
    /// default timeout 30 s): a rank silent for the timeout (its node
    /// lost, the process stopped) counts as dead, and a rank that hears
    /// nothing from rank 0 for the timeout exits.
    ///
    /// A rank can't be replaced: a worker that dies (or falls silent, or
    /// that the pool kills, for a time limit) fails its running task with
    /// [`Error::is_worker_died`](crate::Error::is_worker_died) (or the
    /// timeout), and the pool goes on with the others; when none is left,
    /// the pool is broken ([`Error::is_pool_broken`](crate::Error::is_pool_broken)).
    /// So [`max_tasks_per_child`](crate::PoolBuilder::max_tasks_per_child)
    /// and [`max_memory_per_child`](crate::PoolBuilder::max_memory_per_child),
    /// which replace workers, make `build` fail with
    /// [`Error::is_usage`](crate::Error::is_usage). As with
    /// [`Launcher::command`], tasks can't carry handles.
    ///
    /// ```no_run
    /// # fn square(x: u64) -> u64 { x * x }
    /// # multiproc::entry!(square);
    /// # fn main() -> Result<(), multiproc::Error> {
    /// multiproc::init();
    /// // `srun -n 8 ./prog`: only rank 0 gets past this line.
    /// let pool = multiproc::PoolBuilder::new()
    ///     .launcher(multiproc::Launcher::spmd())
    ///     .build()?;
    /// assert_eq!(pool.map(square, 1..=3)?, vec![1, 4, 9]);
    /// # Ok(()) }
    /// ```
    pub fn spmd() -> Launcher {
        Launcher {
            kind: LauncherKind::Spmd {
                heartbeat: Launcher::DEFAULT_HEARTBEAT_TIMEOUT,
            },
        }
    }

    /// Where the pool listens for its launched workers: an address of
    /// this machine that the workers can reach (a specific interface, not
    /// `0.0.0.0`), which is also the address they are given. The default
    /// of [`Launcher::command`] is `127.0.0.1:0` (this machine only, any
    /// free port), that of [`Launcher::slurm`] this host's address
    /// ([`listen_on_host`](Launcher::listen_on_host)). This address wins
    /// over `MULTIPROC_LISTEN_ADDR`. No effect on [`Launcher::local`], nor
    /// on [`Launcher::spmd`] (`MULTIPROC_LISTEN_ADDR` moves its address).
    pub fn listen(mut self, addr: impl Into<Address>) -> Launcher {
        if let LauncherKind::Command { listen, .. } = &mut self.kind {
            *listen = Listen::At(addr.into());
        }
        self
    }

    /// The pool listens on an address of this host that workers on other
    /// hosts can reach, found when [`build`](crate::PoolBuilder::build)
    /// runs: the one in the environment variable `MULTIPROC_LISTEN_ADDR`
    /// when it is set (an IP address, `IP:port`, `[IPv6]:port`, a host
    /// name or `host:port`; without a port, any free one), else the address
    /// this host's name resolves to — of several, the first that is not a
    /// loopback or link-local address, else the first — on any free port.
    /// As SPMD mode's rank 0 does ([`Launcher::spmd`]), and
    /// [`Launcher::slurm`]'s default.
    ///
    /// `build` fails with [`Error::is_usage`] when this host's name
    /// resolves to no address, or `MULTIPROC_LISTEN_ADDR` is not an
    /// address (or a wildcard one, `0.0.0.0`, which workers can't connect
    /// to); the error names the host name or the variable's value. A name
    /// that resolves only to a loopback address (Debian's `127.0.1.1`
    /// convention) gives that address: workers on this host reach it,
    /// workers on others fail to connect back (their launch fails with
    /// their complaint, which says so) until `MULTIPROC_LISTEN_ADDR` names
    /// an address they reach. A port in the variable is every such pool's
    /// port, so only one pool at a time can have it.
    ///
    /// The pool's listener is authenticated with the pool's random key
    /// whatever the address, but the key is not encryption: off this
    /// machine, tasks and results travel in the clear (`docs/cluster.md`,
    /// "Security model", says how to tunnel them). No effect on
    /// [`Launcher::local`], nor on [`Launcher::spmd`] (which always listens
    /// so).
    ///
    /// ```no_run
    /// # fn main() -> Result<(), multiproc::Error> {
    /// multiproc::init();
    /// use multiproc::{Launcher, PoolBuilder};
    ///
    /// // Workers on another machine, which connect back to this one's
    /// // address (ssh must pass the variables on: docs/cluster.md, "ssh").
    /// let _pool = PoolBuilder::new()
    ///     .workers(4)
    ///     .launcher(
    ///         Launcher::command(["ssh", "-o", "SendEnv=MULTIPROC_*", "node12", "{exe}"])
    ///             .listen_on_host(),
    ///     )
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    pub fn listen_on_host(mut self) -> Launcher {
        if let LauncherKind::Command { listen, .. } = &mut self.kind {
            *listen = Listen::Host;
        }
        self
    }

    /// Whether each line a launched worker (or its launcher command) writes
    /// to stdout or stderr reaches this process's stdout or stderr
    /// prefixed with who wrote it (default: yes). The prefix is
    /// `[host:pid] ` — the host and pid the worker reported when it
    /// connected back — and, for lines read before that (the launcher
    /// command's own, such as srun's complaints, or the worker's before
    /// [`init`](crate::init)), `[program:pid] `: the command's program
    /// name and pid. Lines of different workers never mix: each is written
    /// whole, at once. A last line without a newline is written, with one,
    /// when the stream ends; a line longer than 16 KiB is written in pieces
    /// of 16 KiB, each a line of its own with the prefix, so that no line
    /// holds memory without bound. A pool's drop waits (at most a second
    /// per worker) for the last lines of its workers, once they have
    /// exited.
    ///
    /// `prefix_output(false)`: the command's stdout is this process's
    /// stdout (inherited), its stderr is copied to this process's stderr
    /// as it comes, both byte for byte — for output that a program parses.
    /// No effect on [`Launcher::local`], whose workers share this
    /// process's stdout and stderr.
    pub fn prefix_output(mut self, on: bool) -> Launcher {
        if let LauncherKind::Command { prefix_output, .. } = &mut self.kind {
            *prefix_output = on;
        }
        self
    }

    /// Whether this is [`Launcher::spmd`].
    pub(super) fn is_spmd(&self) -> bool {
        matches!(self.kind, LauncherKind::Spmd { .. })
    }

    /// How long a launched worker (or an SPMD rank) may stay silent
    /// before it counts as dead, and its pool before the worker exits
    /// (default [`Launcher::DEFAULT_HEARTBEAT_TIMEOUT`], 30 s). Each side
    /// sends a heartbeat every `timeout / 3` on the worker's connection:
    /// the pool when it has sent nothing else for that long, the worker
    /// from a thread of its own, so a worker busy in a long task keeps
    /// sending them (one message at a time with its results, never
    /// mixed).
    ///
    /// - The pool gives up a worker it has heard nothing from for
    ///   `timeout` (its node lost power, a network partition, the process
    ///   stopped): its task fails with
    ///   [`Error::is_worker_died`](crate::Error::is_worker_died), the error
    ///   naming its pid, its host and "no heartbeat for …"; its launcher
    ///   command is killed, its connection shut down, and it is replaced
    ///   (an SPMD rank: its connection shut down, and the pool goes on
    ///   with the other ranks).
    /// - A worker that has heard nothing from its pool for `timeout` (the
    ///   parent's machine vanished, or the parent was stopped) exits with
    ///   [`exit_code::PARENT_GONE`](crate::exit_code::PARENT_GONE), in the
    ///   middle of a task too. (A parent that exits or is killed on a
    ///   machine that stays up closes its connections at once: its
    ///   workers exit then, without waiting for the timeout.)
    ///
    /// With [`Launcher::spmd`] the timeout is rank 0's: each rank learns
    /// it (and the interval) from the pool configuration rank 0 sends it
    /// once every rank has joined, so only rank 0's call counts (calling
    /// it the same on every rank, as SPMD code does, is simplest).
    ///
    /// Silence is measured between messages: a message that stops half
    /// way (its sender stopped while writing it) is waited for as long as
    /// the OS keeps the connection. Choose a timeout well above the
    /// longest pause either process can take (swapping, a loaded node):
    /// a false alarm costs a task and a worker. A zero timeout makes
    /// [`build`](crate::PoolBuilder::build) fail with
    /// [`Error::is_usage`](crate::Error::is_usage) (with
    /// [`Launcher::spmd`]: on every rank, before any joins). No effect on
    /// [`Launcher::local`], whose workers the pool watches through their
    /// process (and which exit with their parent).
    pub fn heartbeat(mut self, timeout: Duration) -> Launcher {
        if let LauncherKind::Command { heartbeat, .. } | LauncherKind::Spmd { heartbeat } =
            &mut self.kind
        {
            *heartbeat = timeout;
        }
        self
    }

    /// The default heartbeat timeout of a launched worker or an SPMD rank
    /// (see [`heartbeat`](Launcher::heartbeat)): 30 s, with a heartbeat
    /// every 10 s each way.
    pub const DEFAULT_HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(30);

    /// The heartbeats of the workers' connections: `None` for local
    /// workers; a usage error for a zero timeout.
    pub(super) fn heartbeats(&self) -> Result<Option<Heartbeat>> {
        match &self.kind {
            LauncherKind::Local => Ok(None),
            LauncherKind::Command { heartbeat, .. } | LauncherKind::Spmd { heartbeat } => {
                if heartbeat.is_zero() {
                    return Err(Error::new(Kind::Usage(
                        "a launcher's heartbeat timeout must be more than zero".into(),
                    )));
                }
                Ok(Some(Heartbeat {
                    interval: *heartbeat / 3,
                    timeout: *heartbeat,
                }))
            }
        }
    }

    /// The parent's side for a command launcher; `None` for local workers
    /// (and for SPMD mode, which `build` starts itself).
    pub(super) fn start(&self) -> Result<Option<Remote>> {
        let heartbeat = self.heartbeats()?;
        match (&self.kind, heartbeat) {
            (LauncherKind::Command { template, .. }, _) if template.is_empty() => Err(Error::new(
                Kind::Usage("a launcher command needs at least a program".into()),
            )),
            (
                LauncherKind::Command {
                    template,
                    all_at_once: true,
                    ..
                },
                _,
            ) if !template.iter().any(|a| a.contains(NTASKS)) => Err(Error::new(Kind::Usage(
                "all_at_once() needs Launcher::slurm() or a launcher command whose template \
                 names {ntasks}"
                    .into(),
            ))),
            (
                LauncherKind::Command {
                    template,
                    listen,
                    prefix_output,
                    ..
                },
                Some(heartbeat),
            ) => Remote::new(
                template,
                &match listen {
                    Listen::At(a) => a.clone(),
                    Listen::Host => super::address::host_address()?,
                },
                *prefix_output,
                heartbeat,
            )
            .map(Some),
            _ => Ok(None),
        }
    }
}

/// What a launched worker (or an SPMD rank) says first. The token stays
/// the first field in every build, so that a hello of another build that
/// this one can't read is still known to be from one of its launches.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Hello {
    /// Which launch it is (an SPMD rank: its rank).
    pub(super) token: u64,
    pub(super) build: u64,
    pub(super) pid: u32,
    /// The host it runs on (its name as that host knows it).
    pub(super) host: String,
}

/// How long a failed launch waits for the rest of its command's stderr.
const STDERR_LINGER: Duration = Duration::from_secs(1);

/// `why`, then the last of the launcher command's stderr, if it wrote any.
fn with_stderr(why: String, child: &sys::CommandChild) -> String {
    match child.stderr_tail(STDERR_LINGER) {
        tail if tail.is_empty() => why,
        tail => format!("{why}; the end of its stderr:\n{tail}"),
    }
}

/// The parent's side of a command launcher: its listener and key.
#[derive(Debug)]
pub(super) struct Remote {
    template: Vec<String>,
    /// Whether the workers' output is prefixed.
    prefix_output: bool,
    heartbeat: Heartbeat,
    listener: Listener,
    key: Vec<u8>,
    next_token: AtomicU64,
    /// The template names `{ntasks}`: the pool's first workers are
    /// started by one command ([`Remote::launch_all`]).
    all_at_once: bool,
    /// Workers that one command started and that no worker slot took yet.
    pending: std::sync::Mutex<Vec<Launch>>,
    /// The launches being waited for: several wait at once (each in its
    /// worker's reader), and the one that accepts another's worker hands
    /// it over here.
    arrivals: std::sync::Mutex<Arrivals>,
}

/// The tokens whose workers are waited for, and the workers that
/// connected back and that the launch of their token has not taken yet.
#[derive(Debug, Default)]
struct Arrivals {
    waited: std::collections::HashSet<u64>,
    arrived: std::collections::HashMap<u64, (Connection, Hello)>,
}

/// While a launch waits for its workers: their tokens count as waited
/// for; once it is done, what arrived for them and was not taken is
/// closed.
struct Waiting<'a> {
    arrivals: &'a std::sync::Mutex<Arrivals>,
    tokens: std::ops::Range<u64>,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        forget(self.arrivals, self.tokens.clone());
    }
}

/// `tokens` are no longer waited for: what arrived for them is closed.
/// (A launch whose command started but whose wait never began — its
/// worker's threads could not be started, and the command was killed —
/// leaves its token noted until the pool ends: a number in a set.)
fn forget(arrivals: &std::sync::Mutex<Arrivals>, tokens: std::ops::Range<u64>) {
    let mut a = arrivals.lock().unwrap_or_else(|e| e.into_inner());
    for t in tokens {
        a.waited.remove(&t);
        a.arrived.remove(&t);
    }
}

/// A worker that a command started with `{ntasks}` ([`Remote::launch_all`])
/// and that connected back.
pub(super) struct Launch {
    /// The command, shared with the other workers it started.
    pub(super) command: Arc<sys::CommandChild>,
    pub(super) conn: Connection,
    /// The host the worker said it runs on.
    pub(super) host: String,
    /// The worker's own pid, as it said (on that host).
    pub(super) pid: u32,
}

impl std::fmt::Debug for Launch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Launch").field("host", &self.host).finish()
    }
}

fn spawn_error(program: &str, why: std::io::Error) -> Error {
    Error::new(Kind::Spawn {
        exe: program.into(),
        source: why,
    })
}

impl Remote {
    fn new(
        template: &[String],
        listen: &Address,
        prefix_output: bool,
        heartbeat: Heartbeat,
    ) -> Result<Remote> {
        let mut key = vec![0u8; 32];
        getrandom::fill(&mut key).map_err(|e| {
            Error::io(
                "cannot make the pool's key",
                std::io::Error::other(e.to_string()),
            )
        })?;
        let listener = Listener::bind(listen, Some(&key))?;
        Ok(Remote {
            template: template.to_vec(),
            prefix_output,
            heartbeat,
            listener,
            key,
            next_token: AtomicU64::new(1),
            all_at_once: template.iter().any(|a| a.contains(NTASKS)),
            pending: std::sync::Mutex::new(Vec::new()),
            arrivals: std::sync::Mutex::new(Arrivals::default()),
        })
    }

    /// The heartbeats of its workers' connections.
    pub(super) fn heartbeat(&self) -> Heartbeat {
        self.heartbeat
    }

    /// The template with `{exe}` and `{ntasks}` filled in.
    fn argv(&self, ntasks: usize) -> Result<Vec<OsString>> {
        let exe = crate::popen::executable()?;
        let ntasks = ntasks.to_string();
        Ok(self
            .template
            .iter()
            .map(|a| {
                let a = a.replace(NTASKS, &ntasks);
                let parts: Vec<&str> = a.split("{exe}").collect();
                let mut s = OsString::new();
                for (i, p) in parts.iter().enumerate() {
                    if i > 0 {
                        s.push(exe.as_os_str());
                    }
                    s.push(p);
                }
                s
            })
            .collect())
    }

    /// Starts the command for `ntasks` workers, with the first of as many
    /// tokens in its environment; the command and the first token.
    fn start_command(&self, ntasks: usize) -> Result<(sys::CommandChild, u64)> {
        let argv = self.argv(ntasks)?;
        let token = self.next_token.fetch_add(ntasks as u64, Ordering::Relaxed);
        let entry = spawn::entry_id(&launched_worker).to_string();
        let mut env = vec![
            (spawn::LAUNCHED_ENTRY_ENV.to_string(), entry),
            (CONNECT_ENV.to_string(), self.listener.address().to_string()),
            (AUTHKEY_ENV.to_string(), hex(&self.key)),
            (TOKEN_ENV.to_string(), token.to_string()),
        ];
        if self.all_at_once {
            env.push((BY_RANK_ENV.to_string(), "1".to_string()));
        }
        // Waited for from before the command starts: its workers may
        // connect back before this launch's wait begins, and another
        // launch's wait that accepts one then hands it over instead of
        // closing it (which the worker takes as the pool gone: exit 0).
        let tokens = token..token + ntasks as u64;
        self.arrivals().waited.extend(tokens.clone());
        match sys::spawn_command(&argv, &env, self.prefix_output) {
            Ok(child) => Ok((child, token)),
            Err(e) => {
                forget(&self.arrivals, tokens);
                Err(spawn_error(&self.template[0], e))
            }
        }
    }

    fn arrivals(&self) -> std::sync::MutexGuard<'_, Arrivals> {
        self.arrivals.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// With `{ntasks}` in the template: runs the command once for the
    /// pool's first `n` workers and waits until all connected back; the
    /// pool's next `n` worker starts take them
    /// ([`take_pending`](Self::take_pending)). Nothing otherwise.
    pub(super) fn launch_all(&self, n: usize) -> Result<()> {
        if !self.all_at_once {
            return Ok(());
        }
        let (child, first) = self.start_command(n)?;
        let joined = self.wait_for(first, n, &child, &self.template[0])?;
        let child = Arc::new(child);
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        // Taken from the back: the first rank first.
        for (conn, hello) in joined.into_iter().rev() {
            pending.push(Launch {
                command: Arc::clone(&child),
                conn,
                host: hello.host,
                pid: hello.pid,
            });
        }
        Ok(())
    }

    /// A worker that [`launch_all`](Self::launch_all) started and that no
    /// worker slot took yet.
    pub(super) fn take_pending(&self) -> Option<Launch> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).pop()
    }

    /// Starts the command for one worker (`{ntasks}` = 1), without
    /// waiting for it: the command and the token its worker will say.
    /// [`connect_back`](Self::connect_back) waits for the worker.
    pub(super) fn start_one(&self) -> Result<(sys::CommandChild, u64)> {
        self.start_command(1)
    }

    /// Waits (up to the connect timeout) until the worker of `token`,
    /// which `child` started, connected back and said it is this build;
    /// its connection and what it said. Ends early, with the command's
    /// status, if the command exits first (or is killed: the pool's
    /// drop while a launch is pending).
    pub(super) fn connect_back(
        &self,
        token: u64,
        child: &sys::CommandChild,
    ) -> Result<(Connection, Hello)> {
        let (conn, hello) = self
            .wait_for(token, 1, child, &self.template[0])?
            .pop()
            .expect("one worker");
        child.set_output_prefix(&hello.host, hello.pid);
        Ok((conn, hello))
    }

    /// Accepts until the workers of tokens `first..first + n` connected
    /// back, in token order; connections of other launches (one that
    /// timed out before) are closed.
    fn wait_for(
        &self,
        first: u64,
        n: usize,
        child: &sys::CommandChild,
        program: &str,
    ) -> Result<Vec<(Connection, Hello)>> {
        let deadline = deadline::deadline(CONNECT_TIMEOUT);
        let mine = first..first + n as u64;
        // `start_command` noted them as waited for; no longer once this
        // wait ends, however it ends.
        let waiting = Waiting {
            arrivals: &self.arrivals,
            tokens: mine.clone(),
        };
        #[cfg(feature = "test-hooks")]
        hooks::before_wait(first);
        let mut joined: Vec<Option<(Connection, Hello)>> = (0..n).map(|_| None).collect();
        // The command exited, and no connection was in its handshake
        // since: an accept that finds nothing now means no worker of the
        // command is left to arrive.
        let mut settled = false;
        while joined.iter().any(Option::is_none) {
            // Workers of this launch that another launch's wait accepted.
            let handed: Vec<(Connection, Hello)> = {
                let mut a = self.arrivals();
                mine.clone().filter_map(|t| a.arrived.remove(&t)).collect()
            };
            for (conn, hello) in handed {
                let slot = hello
                    .token
                    .checked_sub(first)
                    .and_then(|i| usize::try_from(i).ok())
                    .and_then(|i| joined.get_mut(i));
                if let Some(slot) = slot {
                    *slot = Some((conn, hello));
                }
            }
            if joined.iter().all(Option::is_some) {
                break;
            }
            // A slice, to look at the command between waits.
            let accepted = self.listener.accept_timeout(Duration::from_millis(50));
            if matches!(accepted, Ok(Some(_))) {
                settled = false;
            }
            if let Ok(Some(conn)) = accepted {
                if conn.poll(Some(Duration::from_secs(10))).unwrap_or(false) {
                    let hello = match conn.recv_bytes() {
                        Ok(bytes) => match postcard::from_bytes::<Hello>(&bytes) {
                            Ok(hello) => Some(hello),
                            Err(e) => {
                                // The token comes first in every build's
                                // hello: one of ours that this build can't
                                // read is a worker of another build.
                                let token = postcard::take_from_bytes::<u64>(&bytes)
                                    .ok()
                                    .map(|(t, _)| t);
                                if token.is_some_and(|t| (first..first + n as u64).contains(&t)) {
                                    let _ = child.kill();
                                    return Err(spawn_error(
                                        program,
                                        std::io::Error::other(format!(
                                            "the launched worker sent a hello of {} bytes that \
                                             this build can't read ({e}): a worker of a \
                                             different build/protocol; workers must run the \
                                             parent's build",
                                            bytes.len()
                                        )),
                                    ));
                                }
                                None
                            }
                        },
                        Err(_) => None,
                    };
                    if let Some(hello) = hello {
                        let token = hello.token;
                        let slot = token
                            .checked_sub(first)
                            .and_then(|i| usize::try_from(i).ok())
                            .and_then(|i| joined.get_mut(i))
                            .filter(|s| s.is_none());
                        let kept = if let Some(slot) = slot {
                            *slot = Some((conn, hello));
                            true
                        } else {
                            // Another launch's worker: handed to it;
                            // not ours: closed.
                            let mut a = self.arrivals();
                            if a.waited.contains(&token) && !a.arrived.contains_key(&token) {
                                a.arrived.insert(token, (conn, hello));
                                true
                            } else {
                                drop(conn);
                                false
                            }
                        };
                        #[cfg(feature = "test-hooks")]
                        hooks::hello_read(token);
                        if kept {
                            continue;
                        }
                    }
                }
                // Not ours: closed by the drop.
            }
            let missing = joined.iter().filter(|j| j.is_none()).count();
            let which = if n == 1 {
                "its worker".to_string()
            } else {
                format!("{missing} of its {n} workers")
            };
            let exited = child
                .try_wait()
                .map_err(|e| Error::io("cannot watch a launcher command", e))?;
            if let Some(status) = exited.filter(|_| settled) {
                return Err(spawn_error(
                    program,
                    std::io::Error::other(with_stderr(
                        format!(
                            "the launcher command (pid {}) exited with {} before {which} \
                             connected back",
                            child.id(),
                            ExitStatus(status)
                        ),
                        child,
                    )),
                ));
            }
            if exited.is_some() {
                // A worker that connected back, said hello and exited at
                // once (its command with it) may still be in the
                // listener's handshake thread, or just handed over for
                // `accept`: not lost. The command's exit is the error only
                // once no handshake is pending and the next accept finds
                // nothing (a thread counts as pending until it has handed
                // its connection over).
                #[cfg(feature = "test-hooks")]
                hooks::saw_exit();
                settled = !self.listener.handshakes_pending();
            }
            if deadline::passed(deadline) {
                let _ = child.kill();
                let who = if n == 1 {
                    "the launched worker".to_string()
                } else {
                    format!("{missing} of the {n} launched workers")
                };
                return Err(spawn_error(
                    program,
                    std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        with_stderr(
                            format!(
                                "{who} did not connect back to {} within {:?}",
                                self.listener.address(),
                                CONNECT_TIMEOUT
                            ),
                            child,
                        ),
                    ),
                ));
            }
        }
        drop(waiting);
        let joined: Vec<(Connection, Hello)> = joined.into_iter().flatten().collect();
        for (_, hello) in &joined {
            if hello.build != spawn::build_id() {
                let _ = child.kill();
                return Err(spawn_error(
                    program,
                    std::io::Error::other(format!(
                        "the launched worker (pid {} on host {}) is another build of the \
                         program: workers must run the parent's build",
                        hello.pid, hello.host
                    )),
                ));
            }
        }
        // Only this process holds them: they read ahead from now on, as a
        // local worker's channel.
        Ok(joined
            .into_iter()
            .map(|(conn, hello)| (conn.reading_ahead(), hello))
            .collect())
    }
}

/// Why a task whose arguments carry handles is refused on a pool of
/// launched workers.
pub(super) fn handles_refused() -> crate::encode::EncodeError {
    crate::encode::EncodeError::Custom(
        "its arguments carry handles (a Connection, shared memory, a lock, …), which can't \
         reach workers started by a launcher command"
            .into(),
    )
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(super) fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A launched worker's entry (named by `LAUNCHED_ENTRY_ENV`, run by
/// `init`): connects back with what the environment says, says hello,
/// takes its configuration and runs the pool's worker loop.
pub(super) fn launched_worker(_: ()) {
    let var = |k: &str| {
        let v = std::env::var(k).ok();
        // Not for the worker's own children.
        std::env::remove_var(k);
        v
    };
    let (addr, key, token) = (var(CONNECT_ENV), var(AUTHKEY_ENV), var(TOKEN_ENV));
    let by_rank = var(BY_RANK_ENV).is_some();
    let (Some(addr), Some(key), Some(mut token)) = (
        addr,
        key.as_deref().and_then(unhex),
        token.and_then(|t| t.parse::<u64>().ok()),
    ) else {
        eprintln!(
            "multiproc launched worker {}: {CONNECT_ENV}, {AUTHKEY_ENV} or {TOKEN_ENV} is \
             missing or malformed",
            std::process::id()
        );
        std::process::exit(crate::exit_code::NO_CHANNEL);
    };
    if by_rank {
        // One of several workers one command started: which one.
        match super::spmd::rank_from_env() {
            Ok(Some(r)) => token += u64::from(r.rank),
            Ok(None) | Err(_) => {
                eprintln!(
                    "multiproc launched worker {}: started as one of {{ntasks}} workers, but \
                     no rank variable (SLURM_PROCID in a job step, OMPI_COMM_WORLD_RANK, \
                     PMI_RANK) says which",
                    std::process::id()
                );
                std::process::exit(crate::exit_code::NO_CHANNEL);
            }
        }
    }
    let conn = match Client::connect(addr.as_str(), Some(&key)) {
        // Only this process holds it (see `Remote::wait_for`).
        Ok(c) => c.reading_ahead(),
        Err(e) => {
            // The pool's host name may resolve only to a loopback address.
            let hint = match addr.parse::<std::net::SocketAddr>() {
                Ok(a) if a.ip().is_loopback() => format!(
                    " ({} is a loopback address, which a worker on another host than the \
                     pool's can't reach: the pool must listen on an address of its host that \
                     this one reaches — Launcher::listen_on_host, with {} where that host's \
                     name resolves to a loopback address, or Launcher::listen)",
                    a.ip(),
                    super::address::LISTEN_ENV
                ),
                _ => String::new(),
            };
            eprintln!(
                "multiproc launched worker {} on host {}: cannot connect back to {addr}: \
                 {e}{hint}",
                std::process::id(),
                sys::hostname()
            );
            std::process::exit(crate::exit_code::NO_CHANNEL);
        }
    };
    let hello = Hello {
        token,
        build: spawn::build_id(),
        pid: std::process::id(),
        host: sys::hostname(),
    };
    // Test hook: the hello of an older build (no host yet), to check
    // that the parent refuses it as another build's.
    #[cfg(feature = "test-hooks")]
    if var("MULTIPROC_TEST_OLD_HELLO").is_some() {
        let old = (hello.token, hello.build, hello.pid);
        let _ = conn.send(&old);
        return;
    }
    if conn.send(&hello).is_err() {
        return;
    }
    let Ok(cfg) = conn.recv::<WorkerConfig>() else {
        return;
    };
    serve_pool(conn, cfg, Served::Launched);
}

/// Which kind of worker serves a pool over TCP.
#[derive(Clone, Copy, Debug)]
pub(super) enum Served {
    /// Started by a launcher command: the connection's end exits with
    /// [`PARENT_GONE`](crate::exit_code::PARENT_GONE).
    Launched,
    /// An SPMD rank: the connection's end is the normal end of its work,
    /// and exits with 0.
    Rank,
}

impl Served {
    /// The exit code when the connection ends.
    fn eof_exit(self) -> i32 {
        match self {
            Served::Launched => crate::exit_code::PARENT_GONE,
            Served::Rank => crate::exit_code::SUCCESS,
        }
    }

    /// What it calls itself on stderr.
    fn name(self) -> &'static str {
        match self {
            Served::Launched => "launched worker",
            Served::Rank => "SPMD rank",
        }
    }
}

/// A worker that joined a pool over TCP (launched, or an SPMD rank): runs
/// the pool's worker loop until the pool says `Shutdown`; if the
/// connection ends first, or no heartbeat comes, the process exits at
/// once (see [`watch_parent`]).
pub(super) fn serve_pool(conn: Connection, cfg: WorkerConfig, who: Served) {
    let conn = Arc::new(conn);
    let frames = watch_parent(&conn, who, cfg.heartbeat);
    worker_loop(conn, cfg, move || frames.recv().ok());
}

/// In a worker over TCP: the pool is gone, or gave it up. Exits at once
/// with `code`, in the middle of a task too: nobody is left to take its
/// result, and a worker whose launcher command the pool killed (`ssh`,
/// `sh -c` without `exec`) must not run on. Says why on stderr, unless
/// `why` is `None`: the connection ended, which is how a pool ends such a
/// worker (its drop, a time limit), not worth a line each time.
fn parent_gone(who: Served, why: Option<&str>, code: i32) -> ! {
    if let Some(why) = why {
        eprintln!(
            "multiproc {} {}: {why}; exiting",
            who.name(),
            std::process::id()
        );
    }
    std::process::exit(code)
}

/// In a worker over TCP: a thread reads the parent's frames and hands
/// them to the worker's loop, so that the end of the connection is seen
/// while a task runs (the worker then exits, see [`parent_gone`]). It
/// stops after `Shutdown`, which the loop obeys. The end of the connection
/// exits with [`Served::eof_exit`] ([`PARENT_GONE`](crate::exit_code::PARENT_GONE)
/// for a launched worker; 0 for an SPMD rank, whose pool ending is its
/// normal end); an error reading it with `PARENT_GONE`. With `heartbeat`
/// (launched workers and SPMD ranks), it takes the parent's heartbeats
/// and exits the worker (`PARENT_GONE`) when nothing came for the
/// timeout, and a second thread sends the worker's heartbeats (each a
/// whole message: the connection's send lock keeps them from mixing with
/// the loop's answers).
fn watch_parent(
    conn: &Arc<Connection>,
    who: Served,
    heartbeat: Option<Heartbeat>,
) -> mpsc::Receiver<InFrame> {
    let (tx, rx) = mpsc::channel();
    let reader = Arc::clone(conn);
    let shutdown = postcard::to_allocvec(&ToWorker::Shutdown).unwrap_or_default();
    let beat = postcard::to_allocvec(&ToWorker::Heartbeat).unwrap_or_default();
    let watcher = std::thread::Builder::new()
        .name("multiproc-pool-parent".into())
        .spawn(move || loop {
            if let Some(hb) = heartbeat {
                if let Ok(false) = reader.poll(Some(hb.timeout)) {
                    parent_gone(
                        who,
                        Some(&format!("no heartbeat from the pool for {:?}", hb.timeout)),
                        crate::exit_code::PARENT_GONE,
                    );
                }
            }
            match reader.recv_frame() {
                Ok((frame, _)) if frame == beat => {}
                Ok((frame, carried)) => {
                    let last = frame == shutdown;
                    if tx.send((frame, carried)).is_err() || last {
                        return;
                    }
                }
                Err(e) if e.is_eof() => parent_gone(who, None, who.eof_exit()),
                Err(e) => parent_gone(
                    who,
                    Some(&format!("cannot read from the pool: {e}")),
                    crate::exit_code::PARENT_GONE,
                ),
            }
        });
    if let Err(e) = watcher {
        parent_gone(
            who,
            Some(&format!("cannot start a thread: {e}")),
            crate::exit_code::PARENT_GONE,
        );
    }
    if let Some(hb) = heartbeat {
        let sender = Arc::clone(conn);
        let beat = postcard::to_allocvec(&FromWorker::Heartbeat).unwrap_or_default();
        let beating = std::thread::Builder::new()
            .name("multiproc-pool-heartbeat".into())
            .spawn(move || loop {
                std::thread::sleep(hb.interval);
                // The parent gone: the watcher sees it too.
                if sender.send_bytes(&beat).is_err() {
                    return;
                }
            });
        if let Err(e) = beating {
            parent_gone(
                who,
                Some(&format!("cannot start a thread: {e}")),
                crate::exit_code::PARENT_GONE,
            );
        }
    }
    rx
}

#[allow(unsafe_code)] // linkme registers the entry through a link section
mod registration {
    crate::entry!(super::launched_worker);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_survive_hex() {
        let key: Vec<u8> = (0..=255).collect();
        assert_eq!(unhex(&hex(&key)).unwrap(), key);
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
    }
}

/// Test hooks (feature `test-hooks`): widen the moment between a launch's
/// command starting and its wait beginning, to check that a worker which
/// connects back in that moment is not lost.
#[cfg(feature = "test-hooks")]
pub(crate) mod hooks {
    use std::collections::BTreeSet;
    use std::sync::{Condvar, Mutex};
    use std::time::Duration;

    struct State {
        /// The launch whose wait is held back.
        held: Option<u64>,
        /// The tokens of the hellos read so far.
        read: BTreeSet<u64>,
    }

    static STATE: Mutex<State> = Mutex::new(State {
        held: None,
        read: BTreeSet::new(),
    });
    static CHANGED: Condvar = Condvar::new();

    fn state() -> std::sync::MutexGuard<'static, State> {
        STATE.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// From now on in this process, the wait of the launch of `token`
    /// begins only once its worker's hello was read (by another launch's
    /// wait), or after 60 s.
    pub(crate) fn hold_wait_until_hello(token: u64) {
        state().held = Some(token);
    }

    /// Whether a hello of `token` was read.
    pub(crate) fn hello_was_read(token: u64) -> bool {
        state().read.contains(&token)
    }

    pub(super) fn hello_read(token: u64) {
        state().read.insert(token);
        CHANGED.notify_all();
    }

    /// How many times a launch's wait saw its command exited.
    static EXITS_SEEN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    pub(super) fn saw_exit() {
        EXITS_SEEN.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// How many times a launch's wait saw its command exited, in this
    /// process.
    pub(crate) fn exits_seen() -> usize {
        EXITS_SEEN.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub(super) fn before_wait(token: u64) {
        let st = state();
        if st.held != Some(token) {
            return;
        }
        let _ =
            CHANGED.wait_timeout_while(st, Duration::from_secs(60), |s| !s.read.contains(&token));
    }
}
