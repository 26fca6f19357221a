//! Heartbeats: a silent worker is given up, a parent that ends or stops
//! takes its workers with it.

use super::*;

/// Sleeps `ms` milliseconds: a task that takes longer than a heartbeat
/// timeout (its worker must keep sending heartbeats meanwhile).
fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

multiproc::entry!(sleep_ms);

/// The heartbeat timeout of the heartbeat tests: short, but far above
/// any pause of a loaded test machine's threads.
#[cfg(target_os = "linux")]
const HEARTBEAT: Duration = Duration::from_secs(2);

/// The pid of the one child of process `pid` (from `/proc/*/stat`).
#[cfg(target_os = "linux")]
fn child_of(pid: u32) -> u32 {
    let mut kids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid ..."
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let ppid = rest.split_whitespace().nth(1).and_then(|v| v.parse().ok());
        if ppid == Some(pid) {
            kids.push(entry.file_name().to_string_lossy().parse::<u32>().unwrap());
        }
    }
    assert_eq!(kids.len(), 1, "the children of {pid}: {kids:?}");
    kids[0]
}

#[test]
fn a_zero_heartbeat_timeout_is_a_usage_error() {
    let e = PoolBuilder::new()
        .launcher(Launcher::command(["{exe}"]).heartbeat(Duration::ZERO))
        .build()
        .unwrap_err();
    assert!(e.is_usage(), "{e}");
}

#[cfg(target_os = "linux")]
#[test]
fn a_stopped_launched_worker_dies_of_silence_while_a_busy_one_keeps_beating() {
    // No `exec`: the pool's kill of the silent worker's shell leaves the
    // stopped worker itself, which the test kills at the end.
    let p = PoolBuilder::new()
        .workers(2)
        .launcher(Launcher::command(["sh", "-c", "\"$0\"; :", "{exe}"]).heartbeat(HEARTBEAT))
        .build()
        .unwrap();
    // One worker blocks; its process (the shell's child) is stopped.
    let mut stopped = p.submit(block_forever, ());
    let busy = p.wait_busy(LONG);
    assert_eq!(busy.len(), 1);
    let stopped_launcher = busy[0];
    let stopped_pid = child_of(stopped_launcher);
    // A task three heartbeat timeouts long, which runs on a live worker
    // (the other one, or after the stopped one is given up, on another):
    // that worker must keep sending heartbeats while it runs.
    let long = p.submit(sleep_ms, 3 * HEARTBEAT.as_millis() as u64);
    signal(stopped_pid, "STOP");
    let e = stopped
        .get_timeout(LONG)
        .expect("the stopped worker's task fails rather than waits forever")
        .unwrap_err();
    assert!(e.is_worker_died(), "{e}");
    assert_eq!(e.pid(), Some(stopped_launcher));
    assert!(
        e.to_string().contains(&format!(
            "pool worker {stopped_launcher} on host {} died (no heartbeat for 2s; ",
            host_name()
        )),
        "{e}"
    );
    // The busy worker was silent but for its heartbeats all along: it
    // finished its task.
    assert_eq!(long.get().unwrap(), 3 * HEARTBEAT.as_millis() as u64);
    assert_eq!(p.map(square, 1..=3u64).unwrap(), vec![1, 4, 9]);
    wait_for("the replacement worker", || p.pids().len() == 2);
    assert!(!p.pids().contains(&stopped_launcher));
    signal(stopped_pid, "KILL");
}

/// Runs `scenario_parent_of_busy_workers` as a program of its own; once
/// it reported its workers' pids, `end` is done to it (by pid); then each
/// of those workers must be gone within two heartbeat timeouts.
#[cfg(target_os = "linux")]
fn parent_ends_workers_follow(end: &[&str]) {
    use std::io::BufRead;
    let mut cmd = common::scenario_command(
        &std::env::current_exe().unwrap(),
        "heartbeat::scenario_parent_of_busy_workers",
    );
    let mut parent = cmd.stdout(std::process::Stdio::piped()).spawn().unwrap();
    let out = std::io::BufReader::new(parent.stdout.take().unwrap());
    let mut workers = Vec::new();
    for line in out.lines() {
        let line = line.unwrap();
        // libtest's "test NAME ... " may start the line.
        if let Some((_, list)) = line.split_once("REPORT workers=") {
            workers = list.split(',').map(|p| p.parse::<u32>().unwrap()).collect();
            break;
        }
    }
    assert_eq!(workers.len(), 2, "the scenario reported its workers");
    for s in end {
        signal(parent.id(), s);
    }
    let deadline = std::time::Instant::now() + 2 * HEARTBEAT;
    while !workers.iter().all(|&w| exited(w)) {
        assert!(
            std::time::Instant::now() < deadline,
            "workers {workers:?} still running {:?} after their parent's {end:?}",
            2 * HEARTBEAT
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = parent.kill();
    let _ = parent.wait();
}

#[cfg(target_os = "linux")]
#[test]
fn a_killed_parent_leaves_no_launched_worker_running() {
    // The parent's connections close with it: the workers, busy in
    // tasks, see that and exit.
    parent_ends_workers_follow(&["KILL"]);
}

#[cfg(target_os = "linux")]
#[test]
fn the_workers_of_a_stopped_parent_exit_after_the_heartbeat_timeout() {
    // The connections stay open, but no heartbeat comes.
    parent_ends_workers_follow(&["STOP"]);
}

#[cfg(target_os = "linux")]
#[test]
#[ignore = "a scenario, run by parent_ends_workers_follow"]
fn scenario_parent_of_busy_workers() {
    if !in_scenario("heartbeat::scenario_parent_of_busy_workers") {
        return;
    }
    let p = PoolBuilder::new()
        .workers(2)
        .launcher(Launcher::command(["sh", "-c", "exec \"$0\"", "{exe}"]).heartbeat(HEARTBEAT))
        .build()
        .unwrap();
    let _tasks: Vec<_> = (0..2).map(|_| p.submit(block_forever, ())).collect();
    wait_for("both workers busy", || p.wait_busy(LONG).len() == 2);
    // With `exec`, the launcher's pid is the worker's.
    let list: Vec<String> = p.wait_busy(LONG).iter().map(u32::to_string).collect();
    println!("REPORT workers={}", list.join(","));
    loop {
        std::thread::park();
    }
}
