//! Pool workers started by a launcher command, which connect back to the
//! pool over loopback TCP (`Launcher::command`).

#[path = "../common/mod.rs"]
mod common;
#[cfg(target_os = "linux")]
mod death;
#[cfg(unix)]
mod handover;
mod heartbeat;
mod launch;
mod listen;
mod ntasks;
mod output;

use std::time::Duration;

use common::{block_forever, host_name, in_scenario, scenario, square, wait_for};
#[cfg(target_os = "linux")]
use common::{mkfifo, signal, LONG};
use multiproc::{Launcher, Pool, PoolBuilder};

multiproc::test_support!();

/// What a worker sees of itself: its command line after the program, and
/// which of the launcher's variables are still in its environment.
fn worker_view(_: u32) -> (Vec<String>, Vec<String>, u32) {
    let args = std::env::args().skip(1).collect();
    let env = std::env::vars()
        .map(|(k, _)| k)
        .filter(|k| k.starts_with("MULTIPROC_"))
        .collect();
    (args, env, std::process::id())
}

multiproc::entry!(worker_view);

fn launched(template: &[&str], workers: usize) -> Pool {
    PoolBuilder::new()
        .workers(workers)
        .launcher(Launcher::command(template.iter().copied()))
        .build()
        .unwrap()
}

/// The error that building a pool of `workers` started by `launcher` must
/// fail with.
fn build_error(workers: usize, launcher: Launcher) -> multiproc::Error {
    PoolBuilder::new()
        .workers(workers)
        .launcher(launcher)
        .build()
        .unwrap_err()
}

/// The message of the spawn error that building a pool of `workers`
/// started by `Launcher::command(template)` must fail with.
fn spawn_error(workers: usize, template: &[&str]) -> String {
    let e = build_error(workers, Launcher::command(template.iter().copied()));
    assert!(e.is_spawn(), "{e}");
    e.to_string()
}

/// The worker's own pid (whatever launched it).
fn own_pid(_: u32) -> u32 {
    std::process::id()
}

multiproc::entry!(own_pid);

/// Whether process `pid` has exited: no `/proc` entry, or a zombie (an
/// orphan whose new parent, this container's pid 1, may never reap it).
#[cfg(target_os = "linux")]
fn exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}
