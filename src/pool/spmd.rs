//! SPMD mode ([`Launcher::spmd`](super::Launcher::spmd)): every rank of a
//! job started as `srun -n N ./prog` (or `mpirun -n N`) runs the program;
//! in [`PoolBuilder::build`](super::PoolBuilder::build) rank 0 becomes the
//! parent of a pool whose workers are ranks 1..N, and the other ranks
//! become those workers and never return from `build`.
//!
//! The rendezvous: rank 0 listens (its host name's address, or
//! `MULTIPROC_LISTEN_ADDR`: `address.rs`) with a random key, and writes address and key to
//! a file in a directory every rank sees (`MULTIPROC_SPMD_DIR`, else
//! `SLURM_SUBMIT_DIR`, else the working directory), named by the run
//! (`.multiproc-spmd-<job>.<step>`): created 0600 under a temporary name
//! and renamed into place, so a rank never reads half of it. The others
//! wait for it (up to `MULTIPROC_SPMD_TIMEOUT` seconds, default 60),
//! connect, pass the handshake, and say their rank, pid, host and build.
//! Once every rank has joined, rank 0 removes the file, and sends each
//! rank its pool configuration, with the heartbeats (`Launcher::heartbeat`)
//! that go both ways from then on.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use super::address::{host_address, LISTEN_ENV};
use super::launcher::{hex, serve_pool, unhex, Hello, Served};
use super::protocol::{Heartbeat, WorkerConfig};
use crate::connection::Connection;
use crate::error::{Error, Kind, Result};
use crate::net::{Address, Client, Listener};
use crate::{deadline, exit_code, spawn, sys};

/// The directory of the rendezvous file, instead of `SLURM_SUBMIT_DIR`
/// or the working directory.
const DIR_ENV: &str = "MULTIPROC_SPMD_DIR";
/// The run's name in the rendezvous file's, instead of the job's id.
const ID_ENV: &str = "MULTIPROC_SPMD_ID";
/// Seconds the ranks have to meet.
const TIMEOUT_ENV: &str = "MULTIPROC_SPMD_TIMEOUT";
/// How long the ranks have to meet by default.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// The first line of a rendezvous file.
const FILE_MAGIC: &str = "multiproc-spmd 1";
/// A rendezvous file is read up to this many bytes (the real one is ~150).
const FILE_CAP: u64 = 4096;
/// The pool's key, in bytes.
const KEY_LEN: usize = 32;
/// How often a rank looks for the rendezvous file again.
const RETRY: Duration = Duration::from_millis(50);

/// This process's place in the job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Rank {
    pub(super) rank: u32,
    pub(super) size: u32,
    /// The variables it came from, for messages.
    pub(super) from: &'static str,
}

/// The rank variables, in the order they are looked for: Slurm's (only
/// inside a job step — a batch script has `SLURM_PROCID=0` and the
/// allocation's `SLURM_NTASKS` without being one of N tasks), Open MPI's,
/// and the PMI ones (MPICH, Intel MPI, MS-MPI).
const RANK_VARS: [(&str, &str, Option<&str>); 3] = [
    ("SLURM_PROCID", "SLURM_NTASKS", Some("SLURM_STEP_ID")),
    ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", None),
    ("PMI_RANK", "PMI_SIZE", None),
];

/// This process's rank from the environment, through `var`; `None` when
/// no pair of rank variables is there.
fn rank_from(var: impl Fn(&str) -> Option<String>) -> Result<Option<Rank>> {
    for (rank, size, needs) in RANK_VARS {
        let (Some(r), Some(n)) = (var(rank), var(size)) else {
            continue;
        };
        if needs.is_some_and(|v| var(v).is_none()) {
            continue;
        }
        let from = match rank {
            "SLURM_PROCID" => "SLURM_PROCID/SLURM_NTASKS",
            "OMPI_COMM_WORLD_RANK" => "OMPI_COMM_WORLD_RANK/OMPI_COMM_WORLD_SIZE",
            _ => "PMI_RANK/PMI_SIZE",
        };
        let parsed = (r.trim().parse::<u32>(), n.trim().parse::<u32>());
        return match parsed {
            (Ok(rank), Ok(size)) if rank < size => Ok(Some(Rank { rank, size, from })),
            _ => Err(usage(format!(
                "SPMD mode: the rank variables {from} are `{r}` and `{n}`, not a rank below \
                 a size"
            ))),
        };
    }
    Ok(None)
}

/// This process's rank from its environment (see [`rank_from`]).
pub(super) fn rank_from_env() -> Result<Option<Rank>> {
    rank_from(env)
}

fn env(k: &str) -> Option<String> {
    std::env::var(k).ok().filter(|v| !v.is_empty())
}

fn usage(why: String) -> Error {
    Error::new(Kind::Usage(why))
}

/// This process's rank, or why SPMD mode can't run here.
pub(super) fn rank() -> Result<Rank> {
    let Some(rank) = rank_from(env)? else {
        return Err(usage(
            "SPMD mode needs the program to run as one of N ranks (`srun -n N prog`, \
             `mpirun -n N prog`), but none of the rank variables is set (SLURM_PROCID/\
             SLURM_NTASKS in a Slurm job step, OMPI_COMM_WORLD_RANK/OMPI_COMM_WORLD_SIZE, \
             PMI_RANK/PMI_SIZE)"
                .into(),
        ));
    };
    if rank.size < 2 {
        return Err(usage(format!(
            "SPMD mode needs at least 2 ranks (rank 0 and a worker), but {} says the job \
             has {}",
            rank.from, rank.size
        )));
    }
    Ok(rank)
}

/// The run's name, the same on every rank and another for every run:
/// `MULTIPROC_SPMD_ID`, the Slurm job and step, or the MPI job's.
fn run_id(var: impl Fn(&str) -> Option<String>) -> Result<String> {
    let id = var(ID_ENV)
        .or_else(|| {
            Some(format!(
                "{}.{}",
                var("SLURM_JOB_ID")?,
                var("SLURM_STEP_ID")?
            ))
        })
        .or_else(|| var("PMIX_NAMESPACE"))
        .or_else(|| var("OMPI_MCA_ess_base_jobid"))
        .ok_or_else(|| {
            usage(format!(
                "SPMD mode: nothing names this run for the rendezvous file (no SLURM_JOB_ID \
                 and SLURM_STEP_ID, PMIX_NAMESPACE or OMPI_MCA_ess_base_jobid): set {ID_ENV} \
                 to a value that is the same on every rank and new for every run"
            ))
        })?;
    // A file name: nothing that could leave the directory or confuse a
    // shell, and not too long.
    Ok(id
        .chars()
        .take(100)
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '_' | '-' => c,
            _ => '_',
        })
        .collect())
}

/// Where the rendezvous file of this run is.
fn rendezvous_path(var: impl Fn(&str) -> Option<String>) -> Result<PathBuf> {
    let id = run_id(&var)?;
    let dir = match var(DIR_ENV).or_else(|| var("SLURM_SUBMIT_DIR")) {
        Some(d) => PathBuf::from(d),
        None => std::env::current_dir()
            .map_err(|e| Error::io("cannot find the working directory (SPMD mode)", e))?,
    };
    Ok(dir.join(format!(".multiproc-spmd-{id}")))
}

/// How long the ranks have to meet.
fn timeout(var: impl Fn(&str) -> Option<String>) -> Result<Duration> {
    match var(TIMEOUT_ENV) {
        None => Ok(DEFAULT_TIMEOUT),
        Some(s) => match s.trim().parse::<u64>() {
            Ok(secs) if secs > 0 => Ok(Duration::from_secs(secs)),
            _ => Err(usage(format!(
                "{TIMEOUT_ENV} is `{s}`, not a whole number of seconds above 0"
            ))),
        },
    }
}

/// What the rendezvous file says.
#[derive(Debug, PartialEq, Eq)]
struct Meeting {
    addr: Address,
    /// Rank 0's host, to tell a loopback address that can't be reached.
    host: String,
    key: Vec<u8>,
}

impl Meeting {
    fn encode(&self) -> String {
        format!(
            "{FILE_MAGIC}\naddr {}\nhost {}\nkey {}\n",
            self.addr,
            self.host,
            hex(&self.key)
        )
    }

    /// `None` for anything but a whole file of ours.
    fn decode(text: &str) -> Option<Meeting> {
        let mut lines = text.lines();
        if lines.next()? != FILE_MAGIC {
            return None;
        }
        let mut field = |name: &str| {
            lines
                .next()?
                .strip_prefix(name)?
                .strip_prefix(' ')
                .map(str::to_string)
        };
        let addr = field("addr")?.parse::<Address>().ok()?;
        let host = field("host")?;
        // Exactly the length rank 0 makes: a file cut short is no file.
        let key = unhex(&field("key")?).filter(|k| k.len() == KEY_LEN)?;
        Some(Meeting { addr, host, key })
    }
}

/// Reads the rendezvous file; `None` while it is not there (or is not a
/// file of ours).
fn read_meeting(path: &Path) -> Option<Meeting> {
    let mut text = String::new();
    fs::File::open(path)
        .ok()?
        .take(FILE_CAP)
        .read_to_string(&mut text)
        .ok()?;
    Meeting::decode(&text)
}

/// The rendezvous file, removed on drop.
struct MeetingFile(PathBuf);

impl MeetingFile {
    /// Writes `m` to `path`: 0600 under a temporary name, then renamed
    /// into place (replacing a file left by an earlier run of the same
    /// name), so no rank reads it half written.
    fn write(path: PathBuf, m: &Meeting) -> Result<MeetingFile> {
        let mut tmp = path.clone().into_os_string();
        tmp.push(format!(".{}.tmp", std::process::id()));
        let tmp = PathBuf::from(tmp);
        let written = (|| {
            // One left by a process of the same pid on this host that died.
            let _ = fs::remove_file(&tmp);
            let mut f = sys::create_private(&tmp)?;
            f.write_all(m.encode().as_bytes())?;
            f.sync_all()?;
            drop(f);
            fs::rename(&tmp, &path)
        })();
        match written {
            Ok(()) => Ok(MeetingFile(path)),
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                Err(Error::io(
                    "cannot write the SPMD rendezvous file",
                    std::io::Error::new(e.kind(), format!("{}: {e}", path.display())),
                ))
            }
        }
    }
}

impl Drop for MeetingFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// A worker rank that joined rank 0's pool.
pub(super) struct Joined {
    pub(super) conn: Connection,
    pub(super) pid: u32,
    pub(super) host: String,
}

/// Rank 0's side: the other ranks, joined and waiting for their pool
/// configuration; the pool takes one per worker it starts.
pub(super) struct Ranks {
    joined: Mutex<Vec<Joined>>,
    count: usize,
    /// The heartbeats on the ranks' connections (`Launcher::heartbeat`),
    /// which each rank learns from its [`WorkerConfig`].
    heartbeat: Heartbeat,
}

impl std::fmt::Debug for Ranks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ranks").field("count", &self.count).finish()
    }
}

impl Ranks {
    /// How many ranks joined (the pool's workers).
    pub(super) fn count(&self) -> usize {
        self.count
    }

    /// The heartbeats on the ranks' connections.
    pub(super) fn heartbeat(&self) -> Heartbeat {
        self.heartbeat
    }

    /// The next rank for a worker (in rank order); an error once all are
    /// taken (nothing can start another).
    pub(super) fn take(&self) -> Result<Joined> {
        self.joined
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
            .ok_or_else(|| {
                usage(
                    "every rank of the SPMD job is a worker already: none is left to start \
                     another on"
                        .into(),
                )
            })
    }
}

/// SPMD mode in `PoolBuilder::build`: on rank 0, waits until every other
/// rank joined and returns them, with `heartbeat` for their connections;
/// on the other ranks, joins rank 0's pool, serves it until it ends, and
/// exits the process — never returns (their heartbeats come with their
/// configuration from rank 0).
pub(super) fn start(heartbeat: Heartbeat) -> Result<Ranks> {
    let me = rank()?;
    let path = rendezvous_path(env)?;
    let timeout = timeout(env)?;
    if me.rank != 0 {
        spawn::become_worker(|| serve(&me, &path, timeout));
    }
    gather(&me, path, timeout, heartbeat)
}

fn spawn_error(why: String, kind: std::io::ErrorKind) -> Error {
    Error::new(Kind::Spawn {
        exe: std::env::current_exe().unwrap_or_else(|_| "the SPMD ranks".into()),
        source: std::io::Error::new(kind, why),
    })
}

/// Rank 0: listens, writes the rendezvous file, and waits until ranks
/// 1..size have joined (or the time is up: an error naming the missing
/// ones). The file is removed before this returns.
fn gather(me: &Rank, path: PathBuf, timeout: Duration, heartbeat: Heartbeat) -> Result<Ranks> {
    let mut key = vec![0u8; KEY_LEN];
    getrandom::fill(&mut key).map_err(|e| {
        Error::io(
            "cannot make the pool's key",
            std::io::Error::other(e.to_string()),
        )
    })?;
    let listener = Listener::bind(host_address()?, Some(&key))?;
    let meeting = Meeting {
        addr: listener.address().clone(),
        host: sys::hostname(),
        key,
    };
    let file = MeetingFile::write(path, &meeting)?;
    let deadline = deadline::deadline(timeout);
    let mut joined: Vec<Option<Joined>> = (1..me.size).map(|_| None).collect();
    while joined.iter().any(Option::is_none) {
        let left = deadline::left(deadline).unwrap_or(timeout);
        if left.is_zero() {
            let missing: Vec<String> = joined
                .iter()
                .enumerate()
                .filter(|(_, j)| j.is_none())
                .map(|(i, _)| (i + 1).to_string())
                .collect();
            return Err(spawn_error(
                format!(
                    "SPMD mode: rank(s) {} of {} ({}) did not join rank 0's pool at {} \
                     within {timeout:?} (rendezvous file {}; {TIMEOUT_ENV} sets the time)",
                    missing.join(", "),
                    me.size,
                    me.from,
                    meeting.addr,
                    file.0.display()
                ),
                std::io::ErrorKind::TimedOut,
            ));
        }
        let conn = match listener.accept_timeout(left) {
            Ok(Some(conn)) => conn,
            Ok(None) => continue,
            Err(_) => {
                // Not the listener's end (it ends only when dropped): try
                // again, not in a tight loop.
                std::thread::sleep(RETRY);
                continue;
            }
        };
        let hello_in = left.min(Listener::DEFAULT_HANDSHAKE_TIMEOUT);
        if !conn.poll(Some(hello_in)).unwrap_or(false) {
            continue;
        }
        let Ok(hello) = conn.recv::<Hello>() else {
            continue;
        };
        if hello.build != spawn::build_id() {
            return Err(spawn_error(
                format!(
                    "SPMD mode: rank {} (pid {} on host {}) is another build of the program: \
                     every rank must run the same build",
                    hello.token, hello.pid, hello.host
                ),
                std::io::ErrorKind::InvalidData,
            ));
        }
        // A rank's token is its rank; one out of range, or a rank that
        // joined already, is dropped (closed).
        let Some(slot) = usize::try_from(hello.token)
            .ok()
            .and_then(|r| r.checked_sub(1))
            .and_then(|i| joined.get_mut(i))
            .filter(|s| s.is_none())
        else {
            continue;
        };
        *slot = Some(Joined {
            // Only this process holds it: it reads ahead.
            conn: conn.reading_ahead(),
            pid: hello.pid,
            host: hello.host,
        });
    }
    drop(file);
    // Taken from the back: rank 1 first.
    let mut joined: Vec<Joined> = joined.into_iter().flatten().collect();
    joined.reverse();
    Ok(Ranks {
        count: joined.len(),
        joined: Mutex::new(joined),
        heartbeat,
    })
}

/// A worker rank: finds the rendezvous file, connects, says who it is,
/// takes its configuration (with the heartbeats) and runs the pool's
/// worker loop; the exit code (0 once it served the pool — the
/// connection's end exits at once with 0 too, and rank 0's silence for
/// the heartbeat timeout with [`exit_code::PARENT_GONE`], see
/// [`serve_pool`] — [`exit_code::SPMD_NO_POOL`] if it could not join).
fn serve(me: &Rank, path: &Path, timeout: Duration) -> i32 {
    let fail = |why: String| {
        eprintln!(
            "multiproc SPMD rank {} of {} (pid {}): cannot join rank 0's pool: {why}",
            me.rank,
            me.size,
            std::process::id()
        );
        exit_code::SPMD_NO_POOL
    };
    let here = sys::hostname();
    let deadline = deadline::deadline(timeout);
    let mut last = format!("no rendezvous file {} within {timeout:?}", path.display());
    let conn = loop {
        if let Some(m) = read_meeting(path) {
            if m.addr.is_local() && m.host != here {
                return fail(format!(
                    "rank 0 listens on {}, a loopback address, on another host ({}): set \
                     {LISTEN_ENV} to an address of rank 0's host that the other nodes reach",
                    m.addr, m.host
                ));
            }
            let left = deadline::left(deadline).unwrap_or(timeout);
            let wait = left.min(Listener::DEFAULT_HANDSHAKE_TIMEOUT);
            match Client::connect_timeout(&m.addr, Some(&m.key), wait) {
                // Only this process holds it: it reads ahead.
                Ok(conn) => break conn.reading_ahead(),
                // A file left by an earlier run, or rank 0 not listening
                // any more: look again until the time is up.
                Err(e) => {
                    last = format!(
                        "cannot connect to {} (from {}): {e}",
                        m.addr,
                        path.display()
                    )
                }
            }
        }
        if deadline::passed(deadline) {
            return fail(last);
        }
        std::thread::sleep(RETRY.min(deadline::left(deadline).unwrap_or(RETRY)));
    };
    let hello = Hello {
        token: u64::from(me.rank),
        build: spawn::build_id(),
        pid: std::process::id(),
        host: here,
    };
    if let Err(e) = conn.send(&hello) {
        return fail(format!("cannot say who it is: {e}"));
    }
    // Rank 0 sends it once every rank joined, which is within `timeout`
    // of this rank's joining (rank 0's wait began before this rank found
    // its file), then starts its pool at once: twice that is ample. Until
    // then no heartbeats go either way (they are in the configuration).
    let cfg_wait = timeout.saturating_mul(2);
    match conn.poll(Some(cfg_wait)) {
        Ok(true) => {}
        Ok(false) => {
            return fail(format!(
                "rank 0 sent no pool configuration within {cfg_wait:?} of this rank's joining"
            ))
        }
        Err(e) => return fail(format!("rank 0 sent no pool configuration: {e}")),
    }
    // Rank 0 may have refused it (another build), or gone.
    let cfg = match conn.recv::<WorkerConfig>() {
        Ok(cfg) => cfg,
        Err(e) => return fail(format!("rank 0 sent no pool configuration: {e}")),
    };
    // Until the pool says `Shutdown`, or its connection ends (rank 0's
    // pool dropped or terminated, this rank given up, rank 0 gone): the
    // rank's work is done either way, and it exits 0 at once. Rank 0
    // silent for the heartbeat timeout (stopped, its node lost): it exits
    // with `PARENT_GONE`.
    serve_pool(conn, cfg, Served::Rank);
    exit_code::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn ranks_come_from_slurm_steps_open_mpi_or_pmi() {
        let slurm = [
            ("SLURM_PROCID", "2"),
            ("SLURM_NTASKS", "4"),
            ("SLURM_STEP_ID", "0"),
        ];
        let r = rank_from(vars(&slurm)).unwrap().unwrap();
        assert_eq!((r.rank, r.size), (2, 4));
        // A batch script is no step: its SLURM_PROCID=0 means nothing.
        let batch = [("SLURM_PROCID", "0"), ("SLURM_NTASKS", "4")];
        assert_eq!(rank_from(vars(&batch)).unwrap(), None);
        let ompi = [("OMPI_COMM_WORLD_RANK", "1"), ("OMPI_COMM_WORLD_SIZE", "3")];
        let r = rank_from(vars(&ompi)).unwrap().unwrap();
        assert_eq!((r.rank, r.size), (1, 3));
        let pmi = [("PMI_RANK", "0"), ("PMI_SIZE", "2")];
        let r = rank_from(vars(&pmi)).unwrap().unwrap();
        assert_eq!((r.rank, r.size, r.from), (0, 2, "PMI_RANK/PMI_SIZE"));
        assert_eq!(rank_from(vars(&[])).unwrap(), None);
    }

    #[test]
    fn malformed_rank_variables_are_a_usage_error() {
        for bad in [("4", "4"), ("x", "4"), ("1", ""), ("-1", "4")] {
            let pmi = [("PMI_RANK", bad.0), ("PMI_SIZE", bad.1)];
            let e = rank_from(vars(&pmi)).unwrap_err();
            assert!(e.is_usage(), "{bad:?}: {e}");
        }
    }

    #[test]
    fn the_run_id_names_a_file_in_the_directory() {
        let slurm = [("SLURM_JOB_ID", "17"), ("SLURM_STEP_ID", "3")];
        assert_eq!(run_id(vars(&slurm)).unwrap(), "17.3");
        let own = [
            (ID_ENV, "../x y"),
            ("SLURM_JOB_ID", "17"),
            ("SLURM_STEP_ID", "3"),
        ];
        assert_eq!(run_id(vars(&own)).unwrap(), ".._x_y");
        assert!(run_id(vars(&[])).unwrap_err().is_usage());
        let p = rendezvous_path(vars(&[
            ("SLURM_JOB_ID", "17"),
            ("SLURM_STEP_ID", "3"),
            ("SLURM_SUBMIT_DIR", "/shared/run"),
        ]))
        .unwrap();
        assert_eq!(p, Path::new("/shared/run/.multiproc-spmd-17.3"));
    }

    #[test]
    fn a_meeting_survives_its_file_and_garbage_is_refused() {
        let m = Meeting {
            addr: "10.1.2.3:4567".parse().unwrap(),
            host: "node1".into(),
            key: (0..32).collect(),
        };
        assert_eq!(Meeting::decode(&m.encode()).unwrap(), m);
        let text = m.encode();
        // Cut anywhere before the key's end, it is refused.
        for cut in 0..text.trim_end().len() - 1 {
            assert_eq!(Meeting::decode(&text[..cut]), None, "cut at {cut}");
        }
        assert_eq!(
            Meeting::decode("multiproc-spmd 2\naddr 1.2.3.4:5\nhost h\nkey 00\n"),
            None
        );
        assert_eq!(
            Meeting::decode("multiproc-spmd 1\naddr nowhere\nhost h\nkey 00\n"),
            None
        );
        assert_eq!(
            Meeting::decode("multiproc-spmd 1\naddr 1.2.3.4:5\nhost h\nkey \n"),
            None
        );
    }

    #[test]
    fn the_timeout_is_whole_seconds() {
        assert_eq!(timeout(vars(&[])).unwrap(), DEFAULT_TIMEOUT);
        assert_eq!(
            timeout(vars(&[(TIMEOUT_ENV, "5")])).unwrap(),
            Duration::from_secs(5)
        );
        assert!(timeout(vars(&[(TIMEOUT_ENV, "0")])).unwrap_err().is_usage());
        assert!(timeout(vars(&[(TIMEOUT_ENV, "1.5")]))
            .unwrap_err()
            .is_usage());
    }
}
