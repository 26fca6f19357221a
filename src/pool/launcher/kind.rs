//! [`Launcher`]: the kinds of launch a pool can be told (local, a
//! command per worker or one for all, Slurm, SPMD), their options, and
//! what `build` makes of them ([`Launcher::heartbeats`],
//! [`Launcher::start`]: a command launcher's [`Remote`]).

use std::time::Duration;

use super::remote::Remote;
use crate::error::{Error, Kind, Result};
use crate::net::Address;
use crate::pool::protocol::Heartbeat;

/// In a template: how many workers the command is to start.
pub(super) const NTASKS: &str = "{ntasks}";
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

/// How a [`Pool`](crate::Pool)'s workers are started
/// ([`PoolBuilder::launcher`](crate::PoolBuilder::launcher)).
///
/// [`Launcher::local`] (the default) spawns each worker as a child
/// process of this one. [`Launcher::command`] runs a command per worker
/// that starts this program somewhere — here through a shell, on a
/// cluster node through `srun`, on another machine through `ssh` — and
/// the worker connects back to a listener of the pool's over TCP,
/// authenticated with a random key made for the pool (see
/// [`Listener`](crate::Listener) for what the key protects and what not).
/// Address, key and a token travel in the environment variables
/// `MULTIPROC_CONNECT`, `MULTIPROC_AUTHKEY` and `MULTIPROC_WORKER_TOKEN`
/// (never on the command line, which `ps` shows), so the command must pass
/// its environment on to the worker, as `sh`, `srun` and `ssh` with
/// `SendEnv`/`AcceptEnv` do. The worker program must call
/// [`init`](crate::init) (or be a test binary with
/// [`test_support!`](crate::test_support)), and be the same build: a
/// worker of another build is refused and the pool fails to start it.
/// Handles can't reach a launched worker: a task whose arguments carry one
/// (a [`Connection`](crate::Connection), shared memory, a lock) fails with
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
    pub(in crate::pool) fn is_spmd(&self) -> bool {
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
    pub(in crate::pool) fn heartbeats(&self) -> Result<Option<Heartbeat>> {
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
    pub(in crate::pool) fn start(&self) -> Result<Option<Remote>> {
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
                    Listen::Host => crate::pool::address::host_address()?,
                },
                *prefix_output,
                heartbeat,
            )
            .map(Some),
            _ => Ok(None),
        }
    }
}
