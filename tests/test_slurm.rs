//! Pool workers started by a real Slurm (`Launcher::slurm()`: one
//! `srun --ntasks=1` job per worker) that connect back over TCP to the
//! address this host's name resolves to (`Launcher::slurm()`'s default; a
//! loopback address here — where it is not, the tests give 127.0.0.1
//! instead, as network tests stay on loopback).
//!
//! Needs a running cluster (`bash scripts/start-slurm.sh`; `.ci/run` starts
//! one). Without `srun` on PATH each test says why and passes — unless `CI`
//! is set, where it fails: CI starts the cluster, so a missing `srun` there
//! is a broken setup, not a machine without Slurm.

#![cfg(unix)]

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::time::Duration;

use common::{block_forever, in_scenario, scenario, slurm_here, square, wait_for};
use multiproc::{Launcher, Pool, PoolBuilder};

multiproc::test_support!();

/// The Slurm job the worker runs in.
fn job_id(_: u32) -> String {
    std::env::var("SLURM_JOB_ID").unwrap_or_default()
}

multiproc::entry!(job_id);

/// `Launcher::slurm()` with its default address — this host's, where it
/// is a loopback one, else 127.0.0.1 (see `common::loopback_host_address`)
/// — and the address its workers are given.
fn slurm_launcher() -> (Launcher, IpAddr) {
    match common::loopback_host_address() {
        Some(ip) => (Launcher::slurm(), ip),
        None => (
            Launcher::slurm().listen((Ipv4Addr::LOCALHOST, 0)),
            Ipv4Addr::LOCALHOST.into(),
        ),
    }
}

fn slurm_pool(workers: usize) -> Pool {
    PoolBuilder::new()
        .workers(workers)
        .launcher(slurm_launcher().0)
        .build()
        .unwrap()
}

/// The variable `name` of the environment process `pid` was started with
/// (`/proc/PID/environ`: its initial environment, proc(5)); empty when it
/// had none.
fn environ_var(pid: u32, name: &str) -> String {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let prefix = format!("{name}=");
    environ
        .split(|&b| b == 0)
        .find_map(|v| v.strip_prefix(prefix.as_bytes()))
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default()
}

/// The jobs of `ids` that `squeue` still lists (pending, running or
/// completing).
fn queued(ids: &[String]) -> Vec<String> {
    let out = Command::new("squeue")
        .args(["-h", "-o", "%i", "-j", &ids.join(",")])
        .output()
        .expect("squeue runs");
    assert!(out.status.success(), "squeue: {out:?}");
    let mut ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(String::from)
        .collect();
    ids.sort();
    ids
}

/// Each worker's job id, as many times as asked (at least one per worker
/// run of the map; not necessarily every worker).
fn jobs_of(p: &Pool) -> Vec<String> {
    let mut ids = p.map(job_id, 0..16).unwrap();
    ids.sort();
    ids.dedup();
    assert!(
        ids.iter()
            .all(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit())),
        "the workers run as Slurm jobs: {ids:?}"
    );
    ids
}

/// Waits until none of `ids` is in the queue any more.
fn gone(ids: &[String]) {
    wait_for("the workers' Slurm jobs to leave the queue", || {
        queued(ids).is_empty()
    });
}

#[test]
fn a_pool_of_srun_workers_maps_exactly() {
    if !slurm_here() {
        return;
    }
    let (launcher, host_ip) = slurm_launcher();
    let p = PoolBuilder::new()
        .workers(2)
        .launcher(launcher)
        .build()
        .unwrap();
    // The workers were told this host's address (a pool's pid of a
    // launched worker is its srun's, which has the variables srun passed on).
    for srun in p.pids() {
        let given: std::net::SocketAddr = environ_var(srun, "MULTIPROC_CONNECT").parse().unwrap();
        assert_eq!(
            given.ip(),
            host_ip,
            "srun {srun}'s worker was given {given}"
        );
    }
    let want: Vec<u64> = (0..300u64).map(|x| x * x).collect();
    assert_eq!(p.map(square, 0..300u64).unwrap(), want);
    assert_eq!(p.map_chunked(square, 0..300u64, 1).unwrap(), want);
    let got: Vec<u64> = p.imap(square, 0..100u64).map(|r| r.unwrap()).collect();
    assert_eq!(got, want[..100]);
    let sum: u64 = p
        .imap_unordered(square, 0..100u64)
        .map(|r| r.unwrap())
        .sum();
    assert_eq!(sum, 328_350);
    let ids = jobs_of(&p);
    assert_eq!(
        queued(&ids),
        ids,
        "the workers' jobs run while the pool does"
    );
    drop(p);
    gone(&ids);
}

#[test]
fn a_worker_whose_srun_is_killed_fails_only_its_task_and_leaves_no_job() {
    if !slurm_here() {
        return;
    }
    let p = slurm_pool(2);
    let mut ids = jobs_of(&p);
    let h = p.submit(block_forever, ());
    let busy = p.wait_busy(Duration::from_secs(30));
    assert_eq!(busy.len(), 1, "one worker runs `block_forever`");
    // The pool's pid of a launched worker is its srun's: SIGKILL to it.
    assert!(p.kill_worker(busy[0]));
    let e = h.get().unwrap_err();
    assert!(e.is_worker_died(), "{e}");
    assert_eq!(e.pid(), Some(busy[0]));
    // It names the node the worker ran on (this one: a single-node cluster).
    let host = Command::new("uname")
        .arg("-n")
        .output()
        .expect("uname runs");
    let host = String::from_utf8_lossy(&host.stdout).trim().to_string();
    assert!(
        e.to_string()
            .contains(&format!("pool worker {} on host {host} died", busy[0])),
        "{e}"
    );
    // The rest completes, on the survivor and the replacement.
    let want: Vec<u64> = (0..200u64).map(|x| x * x).collect();
    assert_eq!(p.map_chunked(square, 0..200u64, 1).unwrap(), want);
    // The map may have run on the survivor alone while srun started the
    // replacement.
    wait_for("the replacement worker", || p.pids().len() == 2);
    assert!(!p.pids().contains(&busy[0]));
    ids.extend(jobs_of(&p));
    ids.sort();
    ids.dedup();
    drop(p);
    gone(&ids);
}

#[test]
fn a_scancelled_worker_fails_only_its_task_and_is_replaced() {
    if !slurm_here() {
        return;
    }
    let p = slurm_pool(1);
    let first = jobs_of(&p);
    assert_eq!(first.len(), 1, "one worker, one job: {first:?}");
    let h = p.submit(block_forever, ());
    let busy = p.wait_busy(Duration::from_secs(30));
    assert_eq!(busy.len(), 1);
    let out = Command::new("scancel")
        .arg(&first[0])
        .output()
        .expect("scancel runs");
    assert!(out.status.success(), "scancel: {out:?}");
    let e = h.get().unwrap_err();
    assert!(e.is_worker_died(), "{e}");
    assert_eq!(e.pid(), Some(busy[0]));
    // Replaced through srun: a new job, and the work completes.
    assert_eq!(p.map(square, 1..=5u64).unwrap(), vec![1, 4, 9, 16, 25]);
    let second = jobs_of(&p);
    assert_eq!(second.len(), 1);
    assert_ne!(second, first, "the replacement is another job");
    drop(p);
    gone(&[first, second].concat());
}

/// Prints a line to stdout and one to stderr; the worker's own pid.
fn say_hello(i: u32) -> u32 {
    println!("hello {i} from a srun worker");
    eprintln!("complaint {i} from a srun worker");
    std::process::id()
}

multiproc::entry!(say_hello);

#[test]
fn a_srun_workers_lines_are_prefixed_with_its_own_pid_not_sruns() {
    if !slurm_here() {
        return;
    }
    let out = scenario("scenario_srun_output", |_| {});
    assert!(out.status.success(), "{}", out.status);
    let text = String::from_utf8_lossy(&out.stdout);
    let report = text
        .lines()
        .find_map(|l| l.strip_prefix("REPORT "))
        .expect("the scenario's report");
    let [worker, srun]: [u32; 2] = report
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect::<Vec<_>>()
        .try_into()
        .unwrap();
    assert_ne!(worker, srun, "the worker runs under srun, not as srun");
    let host = Command::new("uname").arg("-n").output().expect("uname");
    let host = String::from_utf8_lossy(&host.stdout).trim().to_string();
    let stderr = String::from_utf8_lossy(&out.stderr);
    for i in 0..3 {
        let line = format!("[{host}:{worker}] hello {i} from a srun worker");
        assert_eq!(text.lines().filter(|l| *l == line).count(), 1, "{line}");
        let line = format!("[{host}:{worker}] complaint {i} from a srun worker");
        assert_eq!(stderr.lines().filter(|l| *l == line).count(), 1, "{line}");
    }
}

#[test]
#[ignore = "a scenario, run by a_srun_workers_lines_are_prefixed_with_its_own_pid_not_sruns"]
fn scenario_srun_output() {
    if !in_scenario("scenario_srun_output") {
        return;
    }
    // Ends libtest's "test NAME ... " line.
    println!();
    let p = slurm_pool(1);
    let srun = p.pids()[0];
    let pids = p.map_chunked(say_hello, 0..3u32, 1).unwrap();
    assert!(pids.iter().all(|&pid| pid == pids[0]), "{pids:?}");
    // The worker exits on its own and srun with it, after it passed on all
    // of the worker's output (dropping the pool would kill srun, and with it
    // any line srun had not passed on yet).
    p.close();
    p.join().unwrap();
    drop(p);
    println!("REPORT {} {srun}", pids[0]);
}

/// Worker `pid`'s Slurm job, step and rank, from its environment in
/// `/proc` (the single-node cluster runs it on this machine).
fn job_step_rank(pid: u32) -> (String, String, String) {
    (
        environ_var(pid, "SLURM_JOB_ID"),
        environ_var(pid, "SLURM_STEP_ID"),
        environ_var(pid, "SLURM_PROCID"),
    )
}

#[test]
fn all_at_once_one_srun_starts_every_worker_as_one_job_step() {
    if !slurm_here() {
        return;
    }
    let (launcher, host_ip) = slurm_launcher();
    let p = PoolBuilder::new()
        .workers(3)
        .launcher(launcher.all_at_once())
        .build()
        .unwrap();
    let want: Vec<u64> = (0..300u64).map(|x| x * x).collect();
    assert_eq!(p.map(square, 0..300u64).unwrap(), want);
    assert_eq!(p.map_chunked(square, 0..300u64, 1).unwrap(), want);
    // Three workers, each answering a task: tasks 0, 1, 2 of one step of
    // one job.
    let pids = common::pids_of_n_workers(&p, 3);
    let mut known = p.pids();
    known.sort_unstable();
    assert_eq!(pids, known);
    // Each was told this host's address (these pids are the workers' own).
    for &pid in &pids {
        let given: std::net::SocketAddr = environ_var(pid, "MULTIPROC_CONNECT").parse().unwrap();
        assert_eq!(given.ip(), host_ip, "worker {pid} was given {given}");
    }
    let mut seen: Vec<_> = pids.iter().map(|&pid| job_step_rank(pid)).collect();
    seen.sort();
    let (job, step) = (seen[0].0.clone(), seen[0].1.clone());
    assert!(!job.is_empty(), "{seen:?}");
    for (i, s) in seen.iter().enumerate() {
        assert_eq!(
            (&s.0, &s.1, &s.2),
            (&job, &step, &i.to_string()),
            "{seen:?}"
        );
    }
    // squeue: that one job, with that one step.
    let listed = queued(std::slice::from_ref(&job));
    assert_eq!(listed, std::slice::from_ref(&job));
    let out = Command::new("squeue")
        .args(["-h", "-s", "-o", "%i", "-j", &job])
        .output()
        .expect("squeue runs");
    assert!(out.status.success(), "squeue: {out:?}");
    let steps: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(String::from)
        .collect();
    assert_eq!(steps, [format!("{job}.{step}")]);
    drop(p);
    gone(&[job]);
}

#[test]
fn a_killed_parent_leaves_no_srun_worker_job_in_the_queue() {
    use std::io::BufRead;
    if !slurm_here() {
        return;
    }
    let mut cmd = common::scenario_command(
        &std::env::current_exe().unwrap(),
        "scenario_parent_of_a_busy_srun_worker",
    );
    let mut parent = cmd.stdout(std::process::Stdio::piped()).spawn().unwrap();
    let out = std::io::BufReader::new(parent.stdout.take().unwrap());
    let mut ids = Vec::new();
    for line in out.lines() {
        let line = line.unwrap();
        // libtest's "test NAME ... " may start the line.
        if let Some((_, id)) = line.split_once("REPORT job=") {
            ids.push(id.trim().to_string());
            break;
        }
    }
    assert_eq!(ids.len(), 1, "the scenario reported its worker's job");
    assert_eq!(
        queued(&ids),
        ids,
        "the worker's job runs while its parent does"
    );
    // SIGKILL: the parent's connections close with it; its worker, busy
    // in a task, exits, and srun and the job step with it.
    parent.kill().unwrap();
    parent.wait().unwrap();
    gone(&ids);
}

#[test]
#[ignore = "a scenario, run by a_killed_parent_leaves_no_srun_worker_job_in_the_queue"]
fn scenario_parent_of_a_busy_srun_worker() {
    if !in_scenario("scenario_parent_of_a_busy_srun_worker") {
        return;
    }
    let p = PoolBuilder::new()
        .workers(1)
        .launcher(slurm_launcher().0.heartbeat(Duration::from_secs(2)))
        .build()
        .unwrap();
    let ids = jobs_of(&p);
    assert_eq!(ids.len(), 1, "{ids:?}");
    let _task = p.submit(block_forever, ());
    assert_eq!(p.wait_busy(Duration::from_secs(30)).len(), 1);
    println!("REPORT job={}", ids[0]);
    loop {
        std::thread::park();
    }
}
