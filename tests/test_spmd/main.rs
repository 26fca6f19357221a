//! SPMD mode (`Launcher::spmd`): the test binary runs as N ranks, rank 0
//! builds a pool whose workers are the other ranks.
//!
//! The ranks are copies of this binary running one `#[ignore]`d scenario
//! (`common::scenario`): here started by the test with faked rank
//! variables (`SLURM_PROCID`, `SLURM_NTASKS`, `SLURM_STEP_ID`,
//! `SLURM_JOB_ID`), which needs no Slurm; in `tests/test_slurm.rs`
//! started by a real `srun -n 4`. Only rank 0 gets past `build`; it checks
//! what it saw and prints a line the test looks for, so a scenario that
//! did not run (or whose rank 0 failed) fails the test.

#[path = "../common/mod.rs"]
mod common;
mod faked;
mod scenarios;
#[cfg(unix)]
mod srun;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicU32, Ordering};

#[cfg(target_os = "linux")]
use common::signal;
use common::{in_scenario, scenario, square};
use multiproc::{exit_code, Launcher, PoolBuilder};

multiproc::test_support!();

/// Sleeps `ms` milliseconds: a task longer than a heartbeat timeout (its
/// rank must keep sending heartbeats meanwhile).
fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(std::time::Duration::from_millis(ms));
    ms
}

multiproc::entry!(sleep_ms);

/// The heartbeat timeout of the heartbeat tests: short, but far above
/// any pause of a loaded test machine's threads.
#[cfg(target_os = "linux")]
const HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(2);

/// This host's name, as a rank reports it.
#[cfg(unix)]
fn this_host() -> String {
    let out = std::process::Command::new("uname")
        .arg("-n")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// What the ranks printed: rank 0's `SPMD-MAP-OK` line is the pool's
/// pids, which must be those the other ranks said they have.
fn check_map_output(text: &str, size: usize) {
    let mut ranks: Vec<u32> = text
        .lines()
        .filter_map(|l| l.split_once("SPMD-RANK ").map(|(_, r)| r))
        .filter_map(|l| l.split_once(" PID "))
        .filter(|(r, _)| *r != "0")
        .map(|(_, pid)| pid.trim().parse().unwrap())
        .collect();
    ranks.sort_unstable();
    assert_eq!(ranks.len(), size - 1, "every worker rank said its pid");
    let want = format!("SPMD-MAP-OK workers {ranks:?}");
    assert!(
        text.contains(&want),
        "rank 0's pool is the other ranks: {want}"
    );
    assert_eq!(
        text.matches("SPMD-MAP-OK").count(),
        1,
        "only rank 0 returns"
    );
}

/// Every variable a rank could be told its rank by, and those that move
/// the rendezvous: taken out of a faked rank's environment first.
const RANK_VARS: [&str; 15] = [
    "SLURM_PROCID",
    "SLURM_NTASKS",
    "SLURM_STEP_ID",
    "SLURM_JOB_ID",
    "SLURM_SUBMIT_DIR",
    "OMPI_COMM_WORLD_RANK",
    "OMPI_COMM_WORLD_SIZE",
    "PMI_RANK",
    "PMI_SIZE",
    "PMIX_NAMESPACE",
    "OMPI_MCA_ess_base_jobid",
    "MULTIPROC_LISTEN_ADDR",
    "MULTIPROC_SPMD_DIR",
    "MULTIPROC_SPMD_ID",
    "MULTIPROC_SPMD_TIMEOUT",
];

/// A directory of its own for one faked job's rendezvous file.
fn job_dir() -> (String, PathBuf) {
    static N: AtomicU32 = AtomicU32::new(0);
    let job = format!(
        "fake{}x{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    let dir = std::env::temp_dir().join(format!("multiproc-spmd-{job}"));
    std::fs::create_dir_all(&dir).unwrap();
    (job, dir)
}

/// Whose rank variables a faked rank is given.
#[derive(Clone, Copy, Debug)]
enum Starter {
    /// A Slurm job step: `SLURM_PROCID`/`SLURM_NTASKS`, the run named by
    /// `SLURM_JOB_ID` and `SLURM_STEP_ID`.
    Slurm,
    /// Open MPI's `mpirun`: `OMPI_COMM_WORLD_RANK`/`OMPI_COMM_WORLD_SIZE`,
    /// the run named by `OMPI_MCA_ess_base_jobid`.
    OpenMpi,
    /// A PMI launcher (MPICH's Hydra, PMIx): `PMI_RANK`/`PMI_SIZE`, the
    /// run named by `PMIX_NAMESPACE`.
    Pmi,
}

/// Makes `cmd` rank `rank` of a faked run of `size` ranks started by
/// `starter`, named `job`, whose rendezvous file goes to `dir`; `extra`
/// adds variables.
fn fake_rank_of(
    starter: Starter,
    cmd: &mut std::process::Command,
    (job, dir): (&str, &Path),
    size: u32,
    rank: u32,
    extra: &[(&str, &str)],
) {
    for v in RANK_VARS {
        cmd.env_remove(v);
    }
    let (rank_var, size_var, run) = match starter {
        Starter::Slurm => {
            cmd.env("SLURM_STEP_ID", "0").env("SLURM_JOB_ID", job);
            ("SLURM_PROCID", "SLURM_NTASKS", None)
        }
        Starter::OpenMpi => (
            "OMPI_COMM_WORLD_RANK",
            "OMPI_COMM_WORLD_SIZE",
            Some("OMPI_MCA_ess_base_jobid"),
        ),
        Starter::Pmi => ("PMI_RANK", "PMI_SIZE", Some("PMIX_NAMESPACE")),
    };
    if let Some(run) = run {
        cmd.env(run, job);
    }
    cmd.env(rank_var, rank.to_string())
        .env(size_var, size.to_string())
        .env("MULTIPROC_SPMD_DIR", dir)
        .env("MULTIPROC_LISTEN_ADDR", "127.0.0.1");
    for (k, v) in extra {
        cmd.env(k, v);
    }
}

/// Runs scenario `name` as ranks `ranks` of a faked Slurm job step of
/// `size` ranks (all at once, each a copy of this binary); `extra` adds
/// variables. Their outputs, in the order of `ranks`.
fn fake_ranks(name: &str, size: u32, ranks: &[u32], extra: &[(&str, &str)]) -> Vec<Output> {
    fake_ranks_of(Starter::Slurm, name, size, ranks, extra)
}

/// [`fake_ranks`] with the rank variables of `starter`.
fn fake_ranks_of(
    starter: Starter,
    name: &str,
    size: u32,
    ranks: &[u32],
    extra: &[(&str, &str)],
) -> Vec<Output> {
    let (job, dir) = job_dir();
    let outs = std::thread::scope(|s| {
        let handles: Vec<_> = ranks
            .iter()
            .map(|&rank| {
                let (job, dir) = (&job, &dir);
                s.spawn(move || {
                    scenario(name, |cmd| {
                        fake_rank_of(starter, cmd, (job, dir), size, rank, extra)
                    })
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect::<Vec<_>>()
    });
    assert_rendezvous_gone(&dir);
    outs
}

/// Rank 0 removed the rendezvous file from `dir` (and left nothing
/// else); `dir` is removed.
fn assert_rendezvous_gone(dir: &Path) {
    let left: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        left.is_empty(),
        "left in the rendezvous directory: {left:?}"
    );
    std::fs::remove_dir(dir).unwrap();
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Where this rank's job has its rendezvous file (as the crate names it).
fn rendezvous_file() -> PathBuf {
    let dir = std::env::var("MULTIPROC_SPMD_DIR")
        .or_else(|_| std::env::var("SLURM_SUBMIT_DIR"))
        .unwrap();
    let job = std::env::var("SLURM_JOB_ID").unwrap();
    let step = std::env::var("SLURM_STEP_ID").unwrap();
    Path::new(&dir).join(format!(".multiproc-spmd-{job}.{step}"))
}

fn ntasks() -> usize {
    std::env::var("SLURM_NTASKS").unwrap().parse().unwrap()
}
