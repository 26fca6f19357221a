//! One command for all workers (`{ntasks}`, `all_at_once`).

use super::*;

/// Worker `pid`'s pid, its parent's (the command that started it) and
/// its rank, from `/proc` (Linux).
#[cfg(unix)]
fn parent_and_rank(pid: u32) -> (u32, u32, String) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let ppid = status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let rank = environ
        .split(|&b| b == 0)
        .find_map(|v| v.strip_prefix(b"SLURM_PROCID="))
        .map(|r| String::from_utf8_lossy(r).into_owned())
        .unwrap_or_default();
    (pid, ppid, rank)
}

/// A stand-in for `srun -n {ntasks}`: one shell that starts `{ntasks}`
/// copies of the worker program, each with the rank variables of a Slurm
/// job step; one task is the shell itself (`exec`), so that killing the
/// command kills the worker, as with srun.
#[cfg(unix)]
const FAKE_SRUN: [&str; 4] = [
    "sh",
    "-c",
    "export SLURM_NTASKS={ntasks} SLURM_STEP_ID=0; \
     if [ {ntasks} = 1 ]; then SLURM_PROCID=0 exec \"$0\"; fi; \
     i=0; while [ $i -lt {ntasks} ]; do SLURM_PROCID=$i \"$0\" & i=$((i+1)); done; wait",
    "{exe}",
];

#[cfg(unix)]
#[test]
fn one_command_starts_all_workers_and_a_replacement_is_a_launch_of_one() {
    let p = launched(&FAKE_SRUN, 3);
    let want: Vec<u64> = (0..300u64).map(|x| x * x).collect();
    assert_eq!(p.map(square, 0..300u64).unwrap(), want);
    assert_eq!(p.map_chunked(square, 0..300u64, 1).unwrap(), want);
    // Three workers, ranks 0, 1, 2, all children of one shell; the pool
    // knows them by their own pids.
    let pids = common::pids_of_n_workers(&p, 3);
    let mut known = p.pids();
    known.sort_unstable();
    assert_eq!(pids, known);
    let mut seen: Vec<_> = pids.iter().map(|&pid| parent_and_rank(pid)).collect();
    seen.sort();
    let ranks: Vec<&str> = seen.iter().map(|s| s.2.as_str()).collect();
    let mut ranks = ranks.clone();
    ranks.sort_unstable();
    assert_eq!(ranks, ["0", "1", "2"]);
    let shell = seen[0].1;
    assert!(seen.iter().all(|s| s.1 == shell), "one command: {seen:?}");
    // One of them killed from outside: its task fails, naming its pid;
    // the others go on, and the replacement is a launch of one task.
    let h = p.submit(block_forever, ());
    let busy = p.wait_busy(Duration::from_secs(30));
    assert_eq!(busy.len(), 1);
    let st = std::process::Command::new("kill")
        .args(["-KILL", &busy[0].to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let e = h.get().unwrap_err();
    assert!(e.is_worker_died(), "{e}");
    assert_eq!(e.pid(), Some(busy[0]));
    assert_eq!(p.map_chunked(square, 0..300u64, 1).unwrap(), want);
    common::wait_for("the replacement", || p.pids().len() == 3);
    let after: Vec<_> = common::pids_of_n_workers(&p, 3)
        .into_iter()
        .map(parent_and_rank)
        .collect();
    let fresh: Vec<_> = after.iter().filter(|s| s.1 != shell).collect();
    assert_eq!(fresh.len(), 1, "one worker of another command: {after:?}");
    assert_eq!(fresh[0].2, "0", "a launch of one task is rank 0");
    assert!(!after.iter().any(|s| s.0 == busy[0]));
}

#[cfg(unix)]
#[test]
fn a_worker_started_with_ntasks_but_no_rank_fails_the_launch() {
    let msg = spawn_error(
        2,
        &[
            "sh",
            "-c",
            "\"$0\" & \"$0\"; wait; exit 7",
            "{exe}",
            "{ntasks}",
        ],
    );
    assert!(
        msg.contains("exited with exit code 7 before 2 of its 2 workers"),
        "{msg}"
    );
    assert!(msg.contains("no rank variable"), "{msg}");
}

#[test]
fn all_at_once_needs_slurm_or_ntasks_in_the_template() {
    let e = build_error(2, Launcher::command(["{exe}"]).all_at_once());
    assert!(e.is_usage(), "{e}");
    assert!(e.to_string().contains("{ntasks}"), "{e}");
}
