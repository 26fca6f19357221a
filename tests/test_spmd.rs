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

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicU32, Ordering};

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

/// Sends `signal` (`STOP`, `CONT`, …) to `pid`.
#[cfg(target_os = "linux")]
fn signal(pid: u32, signal: &str) {
    let st = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success(), "kill -{signal} {pid}: {st}");
}

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

// ------------------------------------------------------------ scenarios

#[test]
#[ignore = "a scenario: every rank of an SPMD job runs it (test_spmd, test_slurm)"]
fn scenario_spmd_map() {
    if !in_scenario("scenario_spmd_map") {
        return;
    }
    // Every rank says which process it is before `build`.
    println!(
        "SPMD-RANK {} PID {}",
        std::env::var("SLURM_PROCID").unwrap(),
        std::process::id()
    );
    let p = PoolBuilder::new()
        .workers(64) // ignored: the workers are the other ranks
        .launcher(Launcher::spmd())
        .build()
        .unwrap();
    // Only rank 0 gets here; the others served the pool and exited.
    assert_eq!(std::env::var("SLURM_PROCID").unwrap(), "0");
    assert!(
        !rendezvous_file().exists(),
        "the rendezvous file is gone once every rank joined"
    );
    let want: Vec<u64> = (0..300u64).map(|x| x * x).collect();
    assert_eq!(p.map(square, 0..300u64).unwrap(), want);
    assert_eq!(p.map_chunked(square, 0..300u64, 1).unwrap(), want);
    let sum: u64 = p
        .imap_unordered(square, 0..100u64)
        .map(|r| r.unwrap())
        .sum();
    assert_eq!(sum, 328_350);
    // The workers are the other ranks: as many processes, none of them
    // this one (the test compares the pids with the ranks'), and each
    // answers a task with the pid the pool knows.
    let mut known = p.pids();
    known.sort_unstable();
    assert_eq!(known.len(), ntasks() - 1, "{known:?}");
    assert!(!known.contains(&std::process::id()));
    #[cfg(unix)]
    assert_eq!(common::pids_of_n_workers(&p, known.len()), known);
    println!("SPMD-MAP-OK workers {known:?}");
}

#[test]
#[ignore = "a scenario: run by test_spmd"]
fn scenario_spmd_mpi_map() {
    if !in_scenario("scenario_spmd_mpi_map") {
        return;
    }
    let p = PoolBuilder::new()
        .launcher(Launcher::spmd())
        .build()
        .unwrap();
    // Only rank 0 gets here.
    let rank = std::env::var("OMPI_COMM_WORLD_RANK")
        .or_else(|_| std::env::var("PMI_RANK"))
        .unwrap();
    assert_eq!(rank, "0");
    let want: Vec<u64> = (0..300u64).map(|x| x * x).collect();
    assert_eq!(p.map_chunked(square, 0..300u64, 1).unwrap(), want);
    let mut known = p.pids();
    known.sort_unstable();
    #[cfg(unix)]
    assert_eq!(common::pids_of_n_workers(&p, known.len()), known);
    println!("SPMD-MPI-OK {} workers", known.len());
}

#[cfg(unix)]
#[test]
#[ignore = "a scenario: every rank of an SPMD job runs it (test_spmd, test_slurm)"]
fn scenario_spmd_ranks_killed() {
    use common::{block_forever, wait_for, LONG};
    if !in_scenario("scenario_spmd_ranks_killed") {
        return;
    }
    let kill = |pid: u32| {
        let st = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .unwrap();
        assert!(st.success(), "kill -KILL {pid}: {st}");
    };
    let p = PoolBuilder::new()
        .launcher(Launcher::spmd())
        .build()
        .unwrap();
    let n = ntasks() - 1;
    assert_eq!(p.pids().len(), n);
    let h = p.submit(block_forever, ());
    let busy = p.wait_busy(LONG);
    assert_eq!(busy.len(), 1, "one rank runs `block_forever`");
    // A rank killed (the ranks run on this host here) fails its task.
    kill(busy[0]);
    let e = h.get().unwrap_err();
    assert!(e.is_worker_died(), "{e}");
    assert_eq!(e.pid(), Some(busy[0]));
    let host = this_host();
    assert!(
        e.to_string()
            .contains(&format!("pool worker {} on host {host} died", busy[0])),
        "{e}"
    );
    // Not replaced; the rest completes on the others.
    assert_eq!(p.pids().len(), n - 1);
    assert!(!p.pids().contains(&busy[0]));
    let want: Vec<u64> = (0..100u64).map(|x| x * x).collect();
    assert_eq!(p.map_chunked(square, 0..100u64, 1).unwrap(), want);
    // Every rank gone: the pool is broken.
    for pid in p.pids() {
        kill(pid);
    }
    wait_for("every worker rank to be gone", || p.pids().is_empty());
    let e = p.map(square, 0..4u64).unwrap_err();
    assert!(e.is_pool_broken(), "{e}");
    assert!(e.to_string().contains("every worker is gone"), "{e}");
    println!("SPMD-KILLED-OK");
}

#[test]
#[ignore = "a scenario: run by test_spmd"]
fn scenario_spmd_timeout() {
    if !in_scenario("scenario_spmd_timeout") {
        return;
    }
    let p = PoolBuilder::new()
        .launcher(Launcher::spmd())
        .task_timeout(std::time::Duration::from_millis(300))
        .build()
        .unwrap();
    // Rank 1's task never returns: the pool gives the rank up (it shuts
    // its connection down), and the rank exits at once (the test sees its
    // exit code, 0).
    let e = p.submit(common::block_forever, ()).get().unwrap_err();
    assert!(e.is_timeout(), "{e}");
    common::wait_for("the rank to be gone", || p.pids().is_empty());
    println!("SPMD-TIMEOUT-OK");
}

#[test]
#[ignore = "a scenario: run by test_spmd"]
fn scenario_spmd_missing_rank() {
    if !in_scenario("scenario_spmd_missing_rank") {
        return;
    }
    // Rank 1 becomes a worker here and exits when rank 0 gives up.
    let e = PoolBuilder::new()
        .launcher(Launcher::spmd())
        .build()
        .unwrap_err();
    assert!(e.is_spawn(), "{e}");
    assert!(
        e.to_string()
            .contains("rank(s) 2 of 3 (SLURM_PROCID/SLURM_NTASKS) did not join"),
        "{e}"
    );
    assert!(!rendezvous_file().exists(), "removed on failure too");
    println!("SPMD-MISSING-OK");
}

#[test]
#[ignore = "a scenario: run by test_spmd"]
fn scenario_spmd_no_ranks() {
    if !in_scenario("scenario_spmd_no_ranks") {
        return;
    }
    let e = PoolBuilder::new()
        .launcher(Launcher::spmd())
        .build()
        .unwrap_err();
    assert!(e.is_usage(), "{e}");
    assert!(
        e.to_string().contains("none of the rank variables is set"),
        "{e}"
    );
    println!("SPMD-NO-RANKS-OK");
}

/// Continues a stopped rank when dropped: also when the scenario fails
/// half way, so that the test does not wait for a stopped process.
#[cfg(target_os = "linux")]
struct Continue(u32);

#[cfg(target_os = "linux")]
impl Drop for Continue {
    fn drop(&mut self) {
        signal(self.0, "CONT");
    }
}

#[cfg(target_os = "linux")]
#[test]
#[ignore = "a scenario: run by test_spmd"]
fn scenario_spmd_rank_stopped() {
    use common::{block_forever, wait_for, LONG};
    if !in_scenario("scenario_spmd_rank_stopped") {
        return;
    }
    let p = PoolBuilder::new()
        .launcher(Launcher::spmd().heartbeat(HEARTBEAT))
        .build()
        .unwrap();
    assert_eq!(p.pids().len(), 2);
    // One rank blocks; the other runs a task three heartbeat timeouts
    // long, sending nothing but heartbeats meanwhile.
    let mut stopped = p.submit(block_forever, ());
    let busy = p.wait_busy(LONG);
    assert_eq!(busy.len(), 1, "one rank runs `block_forever`");
    let stopped_pid = busy[0];
    let long_ms = 3 * HEARTBEAT.as_millis() as u64;
    let long = p.submit(sleep_ms, long_ms);
    wait_for("both ranks busy", || p.wait_busy(LONG).len() == 2);
    let other = p.pids().into_iter().find(|&q| q != stopped_pid).unwrap();
    // The ranks run on this host here: the pid a rank said is its own.
    signal(stopped_pid, "STOP");
    let _cont = Continue(stopped_pid);
    let e = stopped
        .get_timeout(LONG)
        .expect("the stopped rank's task fails rather than waits forever")
        .unwrap_err();
    assert!(e.is_worker_died(), "{e}");
    assert_eq!(e.pid(), Some(stopped_pid));
    assert!(
        e.to_string().contains(&format!(
            "pool worker {stopped_pid} on host {} died (no heartbeat for 2s; status unknown) \
             while running this task",
            this_host()
        )),
        "{e}"
    );
    // The busy rank kept beating: not given up, its task completed.
    assert_eq!(long.get().unwrap(), long_ms);
    assert_eq!(
        p.pids(),
        vec![other],
        "the silent rank is gone, not replaced"
    );
    let want: Vec<u64> = (0..100u64).map(|x| x * x).collect();
    assert_eq!(p.map_chunked(square, 0..100u64, 1).unwrap(), want);
    // Continued (`_cont`), the given-up rank finds its connection shut
    // down and exits 0 (the test checks).
    println!("SPMD-RANK-STOPPED-OK");
}

#[cfg(target_os = "linux")]
#[test]
#[ignore = "a scenario: run by test_spmd"]
fn scenario_spmd_rank_0_stopped() {
    use common::{block_forever, wait_for, LONG};
    if !in_scenario("scenario_spmd_rank_0_stopped") {
        return;
    }
    let p = PoolBuilder::new()
        .launcher(Launcher::spmd().heartbeat(HEARTBEAT))
        .build()
        .unwrap();
    // One rank busy in a task, the other idle.
    let h = p.submit(block_forever, ());
    assert_eq!(p.wait_busy(LONG).len(), 1);
    println!("SPMD-READY");
    // The test stops this process now, sees both ranks exit, and
    // continues it: the busy rank's task failed, and no rank is left.
    let e = h.get().unwrap_err();
    assert!(e.is_worker_died(), "{e}");
    wait_for("both ranks to be gone", || p.pids().is_empty());
    let e = p.map(square, 0..4u64).unwrap_err();
    assert!(e.is_pool_broken(), "{e}");
    println!("SPMD-RANK0-STOPPED-OK");
}

// ---------------------------------------------------------------- tests

#[test]
fn rank_0_maps_over_the_other_ranks_of_a_faked_slurm_step() {
    let outs = fake_ranks("scenario_spmd_map", 4, &[0, 1, 2, 3], &[]);
    let all: String = outs.iter().map(stdout).collect();
    check_map_output(&all, 4);
    assert!(
        stdout(&outs[0]).contains("SPMD-MAP-OK"),
        "rank 0 did not finish"
    );
    for (rank, o) in outs.iter().enumerate() {
        assert_eq!(o.status.code(), Some(0), "rank {rank}: {}", o.status);
    }
}

#[test]
fn ranks_come_from_open_mpi_or_pmi_variables_as_from_slurms() {
    for starter in [Starter::OpenMpi, Starter::Pmi] {
        let outs = fake_ranks_of(starter, "scenario_spmd_mpi_map", 3, &[0, 1, 2], &[]);
        assert!(
            stdout(&outs[0]).contains("SPMD-MPI-OK 2 workers"),
            "{starter:?}: rank 0 did not finish: {}\n{}",
            stdout(&outs[0]),
            String::from_utf8_lossy(&outs[0].stderr)
        );
        for (rank, o) in outs.iter().enumerate() {
            assert_eq!(
                o.status.code(),
                Some(0),
                "{starter:?} rank {rank}: {}\n{}",
                o.status,
                String::from_utf8_lossy(&o.stderr)
            );
        }
    }
}

#[cfg(unix)]
#[test]
fn a_killed_rank_fails_its_task_the_rest_completes_and_none_left_breaks_the_pool() {
    use std::os::unix::process::ExitStatusExt;
    let outs = fake_ranks("scenario_spmd_ranks_killed", 4, &[0, 1, 2, 3], &[]);
    assert!(
        stdout(&outs[0]).contains("SPMD-KILLED-OK"),
        "rank 0 did not finish"
    );
    assert_eq!(outs[0].status.code(), Some(0));
    for o in &outs[1..] {
        assert_eq!(o.status.signal(), Some(9), "{}", o.status);
    }
}

#[cfg(target_os = "linux")]
#[test]
fn a_stopped_rank_fails_its_task_of_silence_while_a_busy_one_keeps_beating() {
    let outs = fake_ranks("scenario_spmd_rank_stopped", 3, &[0, 1, 2], &[]);
    assert!(
        stdout(&outs[0]).contains("SPMD-RANK-STOPPED-OK"),
        "rank 0 did not finish"
    );
    // Rank 0, the busy rank (its pool ended) and the stopped one
    // (continued, its connection shut down when it was given up): all 0.
    for (rank, o) in outs.iter().enumerate() {
        assert_eq!(o.status.code(), Some(0), "rank {rank}: {}", o.status);
    }
}

#[cfg(target_os = "linux")]
#[test]
fn the_ranks_of_a_stopped_rank_0_exit_parent_gone() {
    use std::io::BufRead;
    use std::process::{Child, Stdio};

    /// Rank 0, killed if the test fails before it ends (it may be
    /// stopped).
    struct Rank0(Option<Child>);
    impl Drop for Rank0 {
        fn drop(&mut self) {
            if let Some(mut c) = self.0.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }

    let name = "scenario_spmd_rank_0_stopped";
    let exe = std::env::current_exe().unwrap();
    let (job, dir) = job_dir();
    let start = |rank: u32| {
        let mut cmd = common::scenario_command(&exe, name);
        fake_rank_of(Starter::Slurm, &mut cmd, (&job, &dir), 3, rank, &[]);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd.spawn().unwrap()
    };
    let mut rank0 = Rank0(Some(start(0)));
    // The worker ranks: each reported through a channel when it ended.
    let (tx, rx) = std::sync::mpsc::channel();
    for rank in 1..3 {
        let child = start(rank);
        let tx = tx.clone();
        std::thread::spawn(move || {
            let pid = child.id();
            let _ = tx.send((pid, child.wait_with_output().unwrap()));
        });
    }
    drop(tx);
    let r0 = rank0.0.as_mut().unwrap();
    let r0_pid = r0.id();
    let mut r0_out = std::io::BufReader::new(r0.stdout.take().unwrap());
    let mut seen = String::new();
    while !seen.contains("SPMD-READY") {
        let mut line = String::new();
        let n = r0_out.read_line(&mut line).unwrap();
        assert!(n > 0, "rank 0 ended before its pool was ready: {seen}");
        seen.push_str(&line);
    }
    // Rank 0 stopped: its connections stay open, but no heartbeat comes.
    signal(r0_pid, "STOP");
    for _ in 1..3 {
        let (pid, out) = rx
            .recv_timeout(common::LONG)
            .expect("the ranks of a stopped rank 0 exit");
        let err = String::from_utf8_lossy(&out.stderr);
        eprintln!("rank pid {pid}: {}\n--- stderr\n{err}", out.status);
        assert_eq!(
            out.status.code(),
            Some(exit_code::PARENT_GONE),
            "rank pid {pid}: {}",
            out.status
        );
        assert!(
            err.contains(&format!(
                "multiproc SPMD rank {pid}: no heartbeat from the pool for 2s; exiting"
            )),
            "rank pid {pid} says why"
        );
    }
    // Continued, rank 0 finds both ranks gone.
    signal(r0_pid, "CONT");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut r0_out, &mut rest).unwrap();
    let mut r0 = rank0.0.take().unwrap();
    let status = r0.wait().unwrap();
    let mut err = String::new();
    let _ = std::io::Read::read_to_string(r0.stderr.as_mut().unwrap(), &mut err);
    eprintln!("rank 0: {status}\n--- stdout\n{seen}{rest}\n--- stderr\n{err}");
    assert!(
        rest.contains("SPMD-RANK0-STOPPED-OK"),
        "rank 0 did not finish"
    );
    assert_eq!(status.code(), Some(0), "{status}");
    assert_rendezvous_gone(&dir);
}

#[test]
fn a_rank_whose_task_times_out_is_given_up_and_exits_at_once() {
    let outs = fake_ranks("scenario_spmd_timeout", 2, &[0, 1], &[]);
    assert!(
        stdout(&outs[0]).contains("SPMD-TIMEOUT-OK"),
        "rank 0 did not finish"
    );
    assert_eq!(outs[0].status.code(), Some(0));
    // Not killed by the test's two-minute limit: it exited, with 0.
    assert_eq!(outs[1].status.code(), Some(0), "{}", outs[1].status);
}

#[test]
fn a_rank_that_never_comes_fails_rank_0s_build_and_the_others_exit_spmd_no_pool() {
    let outs = fake_ranks(
        "scenario_spmd_missing_rank",
        3,
        &[0, 1],
        &[("MULTIPROC_SPMD_TIMEOUT", "3")],
    );
    assert!(
        stdout(&outs[0]).contains("SPMD-MISSING-OK"),
        "rank 0 did not finish"
    );
    assert_eq!(outs[0].status.code(), Some(0));
    assert_eq!(outs[1].status.code(), Some(exit_code::SPMD_NO_POOL));
    assert!(
        String::from_utf8_lossy(&outs[1].stderr).contains("multiproc SPMD rank 1 of 3"),
        "rank 1 says why"
    );
}

#[test]
fn a_worker_rank_without_rank_0_exits_spmd_no_pool() {
    let outs = fake_ranks(
        "scenario_spmd_map",
        2,
        &[1],
        &[("MULTIPROC_SPMD_TIMEOUT", "1")],
    );
    assert_eq!(outs[0].status.code(), Some(exit_code::SPMD_NO_POOL));
    assert!(
        String::from_utf8_lossy(&outs[0].stderr).contains("no rendezvous file"),
        "it says why"
    );
}

#[test]
fn spmd_mode_without_rank_variables_is_a_usage_error() {
    let out = scenario("scenario_spmd_no_ranks", |cmd| {
        for v in RANK_VARS {
            cmd.env_remove(v);
        }
    });
    assert!(stdout(&out).contains("SPMD-NO-RANKS-OK"));
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn spmd_mode_refuses_options_that_replace_workers() {
    // Refused before any rank variable is looked at.
    for e in [
        PoolBuilder::new()
            .launcher(Launcher::spmd())
            .max_tasks_per_child(1)
            .build()
            .unwrap_err(),
        PoolBuilder::new()
            .launcher(Launcher::spmd())
            .max_memory_per_child(1 << 30)
            .build()
            .unwrap_err(),
    ] {
        assert!(e.is_usage(), "{e}");
        assert!(e.to_string().contains("can't be replaced"), "{e}");
    }
}

#[test]
fn a_zero_heartbeat_timeout_is_a_usage_error_in_spmd_mode_too() {
    // Refused before any rank variable is looked at, so on every rank.
    let e = PoolBuilder::new()
        .launcher(Launcher::spmd().heartbeat(std::time::Duration::ZERO))
        .build()
        .unwrap_err();
    assert!(e.is_usage(), "{e}");
    assert!(e.to_string().contains("heartbeat timeout"), "{e}");
}

// ------------------------------------------------------------ real Slurm
// (Unix only: there is no Slurm for Windows.)

/// Runs scenario `name` of this binary as the `n` tasks of one
/// `srun -n n` (in the Slurm cluster `scripts/start-slurm.sh` starts);
/// `env` adds variables. Killed after two minutes (srun then cancels the
/// step), which fails the test.
#[cfg(unix)]
fn srun_ranks(name: &str, n: u32, env: &[(&str, &str)]) -> Output {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = std::process::Command::new("timeout");
    cmd.args([
        "120",
        "srun",
        "-n",
        &n.to_string(),
        "--quiet",
        "--kill-on-bad-exit=0",
    ])
    .args(["--job-name=multiproc-spmd-test"])
    .arg(&exe)
    .args(common::scenario_args(name))
    .env("MULTIPROC_SCENARIO", name);
    for v in RANK_VARS {
        cmd.env_remove(v);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("srun runs");
    eprintln!(
        "srun -n {n} {name}: {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[cfg(unix)]
#[test]
fn srun_n_4_rank_0_maps_over_the_3_other_ranks() {
    if !common::slurm_here() {
        return;
    }
    // The rendezvous file goes to SLURM_SUBMIT_DIR (srun's working
    // directory, this test's); rank 0 checks it is gone once all joined.
    let out = srun_ranks("scenario_spmd_map", 4, &[]);
    check_map_output(&stdout(&out), 4);
    // Every task exited 0 (srun's status is the worst of its tasks').
    assert_eq!(out.status.code(), Some(0), "{}", out.status);
}

#[cfg(unix)]
#[test]
fn srun_n_4_a_killed_rank_fails_its_task_and_the_rest_completes() {
    if !common::slurm_here() {
        return;
    }
    let (_, dir) = job_dir();
    let out = srun_ranks(
        "scenario_spmd_ranks_killed",
        4,
        &[("MULTIPROC_SPMD_DIR", dir.to_str().unwrap())],
    );
    std::fs::remove_dir(&dir).expect("the rendezvous file was removed");
    assert!(
        stdout(&out).contains("SPMD-KILLED-OK"),
        "rank 0 did not finish"
    );
    // The killed tasks make srun's status theirs (SIGKILL).
    assert_ne!(out.status.code(), Some(0), "{}", out.status);
}
