//! Isolation under concurrency, and pool workers orphaned by a killed
//! parent.

use multiproc::{Connection, Pool, PoolBuilder, Process};

multiproc::test_support!();

mod common;
use common::block_forever;

/// How many fds (Unix: beyond stdio) / pipe handles (Windows: beyond the
/// std handles) this process can see.
fn visible_handles(_: u64) -> usize {
    multiproc::test_hooks::open_ipc_handles()
        .expect("list handles")
        .len()
}

/// Builds a pool whose workers die with this process, reports their pids,
/// then blocks until killed.
fn pool_owner(report: Connection) {
    let pool = Pool::new(2).expect("pool");
    report.send(&pool.pids()).expect("report pids");
    block_forever(());
}

multiproc::entry!(visible_handles, pool_owner);

#[test]
fn concurrent_processes_and_pools_see_only_their_own_pipes() {
    std::thread::scope(|s| {
        let threads: Vec<_> = (0..8)
            .map(|t| {
                s.spawn(move || {
                    let mut seen = Vec::new();
                    for round in 0..3u64 {
                        // A process: its bootstrap channel only.
                        let mut p = Process::spawn(visible_handles, round).unwrap();
                        seen.push(("process", p.join().unwrap(), 1));
                        // A pool worker: bootstrap channel + its task pipe
                        // (on Unix a pipe each way and a bulk socket; on
                        // Windows one duplex named pipe).
                        let task_pipe = if cfg!(unix) { 3 } else { 1 };
                        let pool = PoolBuilder::new().workers(1).build().unwrap();
                        for n in pool.map_chunked(visible_handles, [t, round], 1).unwrap() {
                            seen.push(("pool worker", n, 1 + task_pipe));
                        }
                    }
                    seen
                })
            })
            .collect();
        for t in threads {
            for (who, saw, expected) in t.join().unwrap() {
                assert_eq!(
                    saw, expected,
                    "a {who} saw {saw} pipe handles, expected {expected}"
                );
            }
        }
    });
}

#[cfg(any(target_os = "linux", windows))]
#[test]
fn pool_workers_die_when_their_parent_is_killed_outright() {
    use multiproc::{Pipe, ProcessBuilder};
    use std::time::Duration;
    let (mine, theirs) = Pipe::duplex().unwrap();
    let mut owner = ProcessBuilder::new().spawn(pool_owner, theirs).unwrap();
    let workers: Vec<u32> = mine.recv().unwrap();
    assert_eq!(workers.len(), 2);
    let watches: Vec<_> = workers
        .iter()
        .map(|&pid| multiproc::test_hooks::watch_pid(pid).unwrap())
        .collect();
    owner.kill().unwrap();
    assert!(owner.join().unwrap_err().is_terminated());
    for (w, pid) in watches.iter().zip(workers) {
        assert!(
            w.wait(Duration::from_secs(30)).unwrap(),
            "pool worker {pid} outlived its killed parent"
        );
    }
}
