//! Ranks started by the test with faked rank variables (no Slurm needed),
//! and SPMD mode's usage errors.

use super::*;

// ---------------------------------------------------------------- tests

#[test]
fn rank_0_maps_over_the_other_ranks_of_a_faked_slurm_step() {
    let outs = fake_ranks("scenarios::scenario_spmd_map", 4, &[0, 1, 2, 3], &[]);
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
        let outs = fake_ranks_of(
            starter,
            "scenarios::scenario_spmd_mpi_map",
            3,
            &[0, 1, 2],
            &[],
        );
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
    let outs = fake_ranks(
        "scenarios::scenario_spmd_ranks_killed",
        4,
        &[0, 1, 2, 3],
        &[],
    );
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
    let outs = fake_ranks("scenarios::scenario_spmd_rank_stopped", 3, &[0, 1, 2], &[]);
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

    let name = "scenarios::scenario_spmd_rank_0_stopped";
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
    let outs = fake_ranks("scenarios::scenario_spmd_timeout", 2, &[0, 1], &[]);
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
        "scenarios::scenario_spmd_missing_rank",
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
        "scenarios::scenario_spmd_map",
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
    let out = scenario("scenarios::scenario_spmd_no_ranks", |cmd| {
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
