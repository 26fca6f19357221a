//! What each rank runs: the `#[ignore]`d scenarios, by rank 0 and by the
//! others.

use super::*;

// ------------------------------------------------------------ scenarios

#[test]
#[ignore = "a scenario: every rank of an SPMD job runs it (test_spmd, test_slurm)"]
fn scenario_spmd_map() {
    if !in_scenario("scenarios::scenario_spmd_map") {
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
    if !in_scenario("scenarios::scenario_spmd_mpi_map") {
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
    if !in_scenario("scenarios::scenario_spmd_ranks_killed") {
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
    if !in_scenario("scenarios::scenario_spmd_timeout") {
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
    if !in_scenario("scenarios::scenario_spmd_missing_rank") {
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
    if !in_scenario("scenarios::scenario_spmd_no_ranks") {
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
    if !in_scenario("scenarios::scenario_spmd_rank_stopped") {
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
    if !in_scenario("scenarios::scenario_spmd_rank_0_stopped") {
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
