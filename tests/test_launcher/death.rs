//! A launched worker that outlives its launcher command, and how its
//! death is named.

use super::*;

#[cfg(target_os = "linux")]
#[test]
fn a_timed_out_task_whose_worker_outlives_its_killed_launcher_fails_and_the_worker_exits() {
    // No `exec`: the worker is the shell's child, and killing the shell
    // (what the pool does to a timed-out launched worker) leaves it
    // running, connected.
    let p = launched(&["sh", "-c", "\"$0\"; :", "{exe}"], 1);
    let worker = p.map(own_pid, [0]).unwrap()[0];
    let launcher = p.pids()[0];
    assert_ne!(worker, launcher, "the worker is the shell's child");
    let e = p
        .task(block_forever, ())
        .timeout(Duration::from_millis(300))
        .submit()
        .get_timeout(LONG)
        .expect("the timed-out task fails rather than waits for its worker forever")
        .unwrap_err();
    assert!(e.is_timeout(), "{e}");
    assert_eq!(e.pid(), Some(launcher));
    // The pool shut the worker's connection down; the worker saw it in the
    // middle of its task and exited.
    wait_for("the orphaned worker to exit", || exited(worker));
    // The pool goes on, on a new worker.
    assert_eq!(p.map(square, 1..=3u64).unwrap(), vec![1, 4, 9]);
    assert_eq!(p.pids().len(), 1);
    assert!(!p.pids().contains(&launcher));
}

#[cfg(target_os = "linux")]
#[test]
fn a_launcher_that_exits_while_its_worker_stays_connected_counts_as_its_death() {
    // The shell starts the worker in the background and exits once the
    // test creates `<base>.<the shell's pid>` (so a replacement's shell,
    // another pid, stays).
    let base =
        std::env::temp_dir().join(format!("multiproc-launcher-exits-{}", std::process::id()));
    let p = launched(
        &[
            "sh",
            "-c",
            "\"$0\" & while [ ! -e \"$1.$$\" ]; do sleep 0.05; done; exit 0",
            "{exe}",
            base.to_str().unwrap(),
        ],
        1,
    );
    let worker = p.map(own_pid, [0]).unwrap()[0];
    let launcher = p.pids()[0];
    let mut h = p.submit(block_forever, ());
    assert_eq!(p.wait_busy(LONG), vec![launcher]);
    let flag = format!("{}.{launcher}", base.display());
    std::fs::write(&flag, b"").unwrap();
    let e = h
        .get_timeout(LONG)
        .expect("the task fails rather than waits forever")
        .unwrap_err();
    let _ = std::fs::remove_file(&flag);
    assert!(e.is_worker_died(), "{e}");
    assert_eq!(e.pid(), Some(launcher));
    assert!(
        e.to_string().contains(
            "its launcher command ended (exit code 0) but the worker's connection was still \
             open 5s later"
        ),
        "{e}"
    );
    wait_for("the given-up worker to exit", || exited(worker));
    assert_eq!(p.map(square, 1..=3u64).unwrap(), vec![1, 4, 9]);
    assert!(!p.pids().contains(&launcher));
}

#[cfg(target_os = "linux")]
#[test]
fn worker_died_names_the_workers_own_pid_and_its_launchers() {
    // No `exec`: the pool knows the worker by its shell's pid.
    let p = launched(&["sh", "-c", "\"$0\"; :", "{exe}"], 1);
    let worker = p.map(own_pid, [0]).unwrap()[0];
    let launcher = p.pids()[0];
    assert_ne!(worker, launcher);
    let mut h = p.submit(block_forever, ());
    assert_eq!(p.wait_busy(LONG), vec![launcher]);
    assert!(p.kill_worker(launcher));
    let e = h.get_timeout(LONG).expect("the task fails").unwrap_err();
    assert!(e.is_worker_died(), "{e}");
    assert_eq!(e.pid(), Some(launcher));
    let msg = e.to_string();
    assert!(
        msg.contains(&format!(
            "pool worker {launcher} on host {} died",
            host_name()
        )),
        "{msg}"
    );
    assert!(
        msg.ends_with(&format!(
            "({launcher} is its launcher command's pid; the worker's own was {worker})"
        )),
        "{msg}"
    );
    wait_for("the worker to exit", || exited(worker));
}
