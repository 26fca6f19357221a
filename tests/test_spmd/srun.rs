//! Ranks started by a real `srun -n 4`.

use super::*;

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
    let out = srun_ranks("scenarios::scenario_spmd_map", 4, &[]);
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
        "scenarios::scenario_spmd_ranks_killed",
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
