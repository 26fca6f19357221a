//! Isolation under concurrency, pool workers orphaned by a killed parent,
//! and the rest of what held when issue 9 tried the crate as an outsider
//! would ("What held (keep it so)"): no fd of ours reaches a `Command`
//! child started at the same time, a parent ended by SIGTERM or SIGINT
//! takes its pool and `kill_on_parent_death` workers along, a stopped
//! worker past its task's time limit is replaced, a task whose allocation
//! fails fails alone.

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

/// Builds a pool of two and starts a `kill_on_parent_death` process,
/// reports the three workers' pids, then blocks until killed.
#[cfg(target_os = "linux")]
fn pool_and_process_owner(report: Connection) {
    common::default_action_for_sigint_and_sigterm();
    let pool = Pool::new(2).expect("pool");
    let child = multiproc::ProcessBuilder::new()
        .kill_on_parent_death(true)
        .spawn::<_, _, ()>(block_forever, ())
        .expect("process");
    let mut pids = pool.pids();
    pids.push(child.pid());
    report.send(&pids).expect("report pids");
    block_forever(());
}

/// Stops its own process (SIGSTOP), as a debugger or a job-control
/// accident would; returns only if someone continues it.
#[cfg(target_os = "linux")]
fn stop_myself(_: ()) -> u32 {
    rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::STOP)
        .expect("SIGSTOP to myself");
    std::process::id()
}

/// Asks the allocator for more memory than any system has; Rust's answer
/// to an allocation that fails (`handle_alloc_error`) ends the process.
fn allocate_too_much(_: ()) -> usize {
    let v: Vec<u8> = Vec::with_capacity(isize::MAX as usize);
    v.capacity()
}

fn my_pid(_: u64) -> u32 {
    std::process::id()
}

multiproc::entry!(visible_handles, pool_owner, allocate_too_much, my_pid);
#[cfg(target_os = "linux")]
multiproc::entry!(pool_and_process_owner, stop_myself);

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

// What held: a pool and a `kill_on_parent_death` process go with their
// parent also when it ends of SIGTERM or SIGINT (a service stopped, Ctrl-C
// to it alone), not only of SIGKILL (above).
#[cfg(target_os = "linux")]
#[test]
fn pool_and_kill_on_parent_death_workers_die_when_their_parent_gets_sigterm_or_sigint() {
    use multiproc::{Pipe, ProcessBuilder};
    use rustix::process::{kill_process, Pid, Signal};
    for signal in [Signal::TERM, Signal::INT] {
        let (mine, theirs) = Pipe::duplex().unwrap();
        let mut owner = ProcessBuilder::new()
            .spawn::<_, _, ()>(pool_and_process_owner, theirs)
            .unwrap();
        let workers: Vec<u32> = mine.recv().unwrap();
        assert_eq!(workers.len(), 3);
        let watches: Vec<_> = workers
            .iter()
            .map(|&pid| multiproc::test_hooks::watch_pid(pid).unwrap())
            .collect();
        kill_process(Pid::from_raw(owner.pid() as i32).unwrap(), signal).unwrap();
        let err = match owner.join_timeout(common::LONG) {
            Err(e) => e,
            Ok(r) => {
                let _ = owner.kill();
                panic!("the owner outlived its {signal:?}: {r:?}");
            }
        };
        assert_eq!(
            err.exit_status().and_then(|s| s.signal()),
            Some(signal.as_raw()),
            "{err}"
        );
        for (w, pid) in watches.iter().zip(workers) {
            assert!(
                w.wait(common::LONG).unwrap(),
                "worker {pid} outlived its parent's {signal:?}"
            );
        }
    }
}

// What held: no fd this crate opens reaches a child that someone else
// starts with std's `Command` while workers are being spawned, pools built
// and pipes made on other threads (every fd is close-on-exec from its
// creation; the worker's own fds are placed in the worker only).
#[cfg(target_os = "linux")]
#[test]
fn a_command_started_while_workers_spawn_gets_none_of_their_fds() {
    use multiproc::Pipe;
    use std::sync::atomic::{AtomicBool, Ordering};
    // `ls` lists its own fds: stdin, stdout, stderr, whatever this test
    // inherited without close-on-exec from whoever started it, and the
    // directory it reads (the lowest free fd). Listed once before anything
    // is spawned here, then while spawns run: the same every time.
    let ls_fds = || {
        let out = std::process::Command::new("ls")
            .arg("/proc/self/fd")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let before = ls_fds();
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        let spawners: Vec<_> = (0..3u64)
            .map(|t| {
                let done = &done;
                s.spawn(move || {
                    let mut rounds = 0u32;
                    while !done.load(Ordering::Relaxed) {
                        let (mine, theirs) = Pipe::duplex().unwrap();
                        let mut p = Process::spawn(visible_handles, t).unwrap();
                        drop((mine, theirs));
                        p.join().unwrap();
                        if t == 0 {
                            let pool = PoolBuilder::new().workers(1).build().unwrap();
                            assert_eq!(pool.map(common::square, [3u64]).unwrap(), vec![9]);
                        }
                        rounds += 1;
                    }
                    rounds
                })
            })
            .collect();
        for i in 0..60 {
            let fds = ls_fds();
            if fds != before {
                done.store(true, Ordering::Relaxed);
                panic!("command {i} had fds {fds:?}, not {before:?}");
            }
        }
        done.store(true, Ordering::Relaxed);
        for t in spawners {
            assert!(t.join().unwrap() > 0, "a spawner never finished a round");
        }
    });
}

// What held: a worker that stops (SIGSTOP) in a task with a time limit is
// killed at the limit and replaced; the task fails as timed out, the next
// ones run.
#[cfg(target_os = "linux")]
#[test]
fn a_stopped_worker_past_its_task_timeout_is_replaced() {
    use std::time::Duration;
    let p = PoolBuilder::new()
        .workers(1)
        .task_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let before = p.pids();
    let err = p.submit(stop_myself, ()).get().unwrap_err();
    assert!(err.is_timeout(), "{err}");
    let after = p.map_chunked(my_pid, 0..4u64, 1).unwrap();
    assert!(
        after.iter().all(|pid| !before.contains(pid)),
        "{before:?} {after:?}"
    );
    assert_eq!(p.map(common::square, 0..3u64).unwrap(), vec![0, 1, 4]);
}

// What held: a task whose allocation fails (Rust aborts the process on
// that) fails alone, as a dead worker; the pool replaces the worker and
// runs the rest.
#[test]
fn a_task_whose_allocation_fails_fails_alone() {
    let p = PoolBuilder::new().workers(1).build().unwrap();
    let before = p.pids();
    let ok = p.submit(common::square, 4u64);
    let err = p.submit(allocate_too_much, ()).get().unwrap_err();
    assert!(err.is_worker_died(), "{err}");
    assert_eq!(ok.get().unwrap(), 16);
    let after = p.map_chunked(my_pid, 0..2u64, 1).unwrap();
    assert!(
        after.iter().all(|pid| !before.contains(pid)),
        "{before:?} {after:?}"
    );
    assert_eq!(p.map(common::square, 0..3u64).unwrap(), vec![0, 1, 4]);
}
