//! Leaks, zombies and orphans under repetition: spawn/join cycles,
//! Connection open/close cycles, and a pool that keeps replacing workers.
//! One test per phase would run them in parallel and blur the counts, so
//! the phases run in order inside one test (the only one in this binary).

use std::time::Duration;

use multiproc::{Pipe, PoolBuilder, Process};

multiproc::test_support!();

mod common;
use common::square;

/// (open fds/handles, threads where the OS tells us cheaply).
fn census() -> (usize, Option<usize>) {
    // Windows keeps a dropped child's kill-on-close job until its
    // processes are gone; Wine updates a job's process count a moment
    // after the exit. Nothing here starts grandchildren, so every kept job
    // empties: wait for that (bounded), then count.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while multiproc::test_hooks::settle() > 0 && std::time::Instant::now() < deadline {
        std::thread::yield_now();
    }
    let handles = multiproc::test_hooks::open_handle_count().unwrap();
    let threads = std::fs::read_dir("/proc/self/task").ok().map(|d| d.count());
    (handles, threads)
}

/// Our children that are zombies (Linux): exited, never reaped.
fn zombies() -> Vec<u32> {
    let me = std::process::id();
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...; comm may hold spaces, so split after ')'.
        let Some(after) = stat.rsplit_once(')').map(|(_, a)| a) else {
            continue;
        };
        let mut f = after.split_whitespace();
        let (state, ppid) = (f.next(), f.next().and_then(|p| p.parse::<u32>().ok()));
        if state == Some("Z") && ppid == Some(me) {
            out.push(e.file_name().to_string_lossy().parse().unwrap_or(0));
        }
    }
    out
}

#[test]
fn counts_return_to_their_start_after_many_cycles() {
    // Under Wine a process start costs ~50 ms: fewer cycles there.
    let (spawns, conns, tasks) = if cfg!(windows) {
        (150, 1_000, 10_000)
    } else {
        (1_000, 1_000, 100_000)
    };

    // Warm-up: whatever a first spawn, pipe and pool set up once.
    Process::spawn(square, 2).unwrap().join().unwrap();
    drop(Pipe::duplex().unwrap());
    drop(PoolBuilder::new().workers(1).build().unwrap());
    let start = census();

    for i in 0..spawns {
        assert_eq!(Process::spawn(square, i).unwrap().join().unwrap(), i * i);
    }
    assert_eq!(census(), start, "after {spawns} spawn/join cycles");

    for i in 0..conns {
        let (a, b) = Pipe::duplex().unwrap();
        a.send(&i).unwrap();
        assert_eq!(b.recv::<u64>().unwrap(), i);
    }
    assert_eq!(
        census(),
        start,
        "after {conns} Connection open/close cycles"
    );

    {
        let pool = PoolBuilder::new()
            .workers(4)
            .max_tasks_per_child(100)
            .build()
            .unwrap();
        let sum: u64 = pool
            .imap_unordered(square, 0..tasks)
            .map(|r| r.unwrap())
            .fold(0u64, u64::wrapping_add);
        assert_eq!(sum, (0..tasks).fold(0u64, |a, x| a.wrapping_add(x * x)));
        pool.close();
        pool.join().unwrap();
    }
    assert_eq!(
        census(),
        start,
        "after a pool ran {tasks} tasks, replacing workers every 100"
    );

    // Reaping is synchronous in join/wait; the reaper thread handles only
    // children dropped while running. Give an exiting child a moment, then
    // there must be none left.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !zombies().is_empty() && std::time::Instant::now() < deadline {
        std::thread::yield_now();
    }
    assert_eq!(zombies(), Vec::<u32>::new(), "zombie children left");
}
