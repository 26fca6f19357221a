//! The remote rows: a pool of workers started by a launcher command
//! (and by srun) vs the local pool.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use multiproc::Pool;

use crate::pool::{check_squares, square, warm_pool};
use crate::table::Figures;
use crate::{us, POOL_RUNS, POOL_WORKERS};

/// The launcher command of the remote rows: the worker started by `sh -c
/// 'exec …'` (Windows has no `sh`: the worker program itself).
pub(crate) fn launcher_command() -> multiproc::Launcher {
    if cfg!(unix) {
        multiproc::Launcher::command(["sh", "-c", "exec \"$0\"", "{exe}"])
    } else {
        multiproc::Launcher::command(["{exe}"])
    }
}

/// A pool of `workers` started by `launcher`.
fn launched_pool(launcher: multiproc::Launcher, workers: usize) -> Result<Pool, String> {
    Pool::builder()
        .workers(workers)
        .launcher(launcher)
        .build()
        .map_err(|e| format!("launched pool: {e}"))
}

/// `n` tiny tasks (`chunksize` 1, or automatic chunking) on a pool of
/// workers started by the launcher command vs the local pool; the two
/// alternate, best of `POOL_RUNS` runs each. On Linux, where the time
/// goes: the CPU time of this process and the pool's workers per task,
/// user and system, over all runs (an info line).
pub(crate) fn remote_pool(
    n: u64,
    chunksize: Option<usize>,
    info: &mut Vec<String>,
) -> Result<Figures, String> {
    let local = warm_pool()?;
    let remote = launched_pool(launcher_command(), POOL_WORKERS)?;
    check_squares(
        &remote
            .map(square, 0..10_000u64)
            .map_err(|e| format!("warm-up map: {e}"))?,
        10_000,
    )?;
    let run = |pool: &Pool| -> multiproc::Result<Vec<u64>> {
        match chunksize {
            Some(c) => pool.imap(square, 0..n).chunksize(c).collect(),
            None => pool.map(square, 0..n),
        }
    };
    let (mut ours, mut base) = (0f64, 0f64);
    let (mut cpu_ours, mut cpu_base) = ([0f64; 2], [0f64; 2]);
    for _ in 0..POOL_RUNS {
        let before = cpu_secs(&remote);
        ours = ours.max(rate_of(n, || run(&remote))?);
        add_cpu(&mut cpu_ours, before, cpu_secs(&remote));
        let before = cpu_secs(&local);
        base = base.max(rate_of(n, || run(&local))?);
        add_cpu(&mut cpu_base, before, cpu_secs(&local));
    }
    if cfg!(target_os = "linux") {
        let per_task = |c: [f64; 2]| {
            let us = |s: f64| s * 1e6 / (n * POOL_RUNS as u64) as f64;
            format!(
                "{:.2} us (user {:.2}, system {:.2})",
                us(c[0] + c[1]),
                us(c[0]),
                us(c[1])
            )
        };
        info.push(format!(
            "remote pool, {}: CPU per task, this process + workers: over TCP {}, local {}",
            chunksize.map_or("auto chunks".to_string(), |c| format!("chunksize {c}")),
            per_task(cpu_ours),
            per_task(cpu_base)
        ));
    }
    Ok(Figures {
        ours,
        baseline: Some(base),
    })
}

/// User and system CPU seconds so far of this process and of `pool`'s
/// workers (Linux: `/proc/PID/stat`; zero elsewhere).
fn cpu_secs(pool: &Pool) -> [f64; 2] {
    let mut total = [0f64; 2];
    let pids = std::iter::once(std::process::id()).chain(pool.pids());
    for pid in pids {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // utime and stime are the 14th and 15th fields; the 2nd (comm)
        // may hold spaces. In clock ticks, 100 a second on Linux.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
        for (i, f) in [11, 12].into_iter().enumerate() {
            total[i] += fields
                .get(f)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
                / 100.0;
        }
    }
    total
}

fn add_cpu(sum: &mut [f64; 2], before: [f64; 2], after: [f64; 2]) {
    for i in 0..2 {
        sum[i] += after[i] - before[i];
    }
}

/// One run of `f` over `n` tasks, checked, in tasks/s.
fn rate_of(n: u64, f: impl FnOnce() -> multiproc::Result<Vec<u64>>) -> Result<f64, String> {
    let t = Instant::now();
    let out = f().map_err(|e| e.to_string())?;
    let secs = t.elapsed().as_secs_f64();
    check_squares(&out, n)?;
    Ok(n as f64 / secs)
}

/// A pool of one worker through `launcher`, until it ran a task, vs the
/// same with a local worker; alternating, the mean of `rounds` each. The
/// pools' ends are not timed: each is closed and joined (its worker exits
/// on its own) before the next start — a dropped pool kills its srun, and
/// Slurm then takes seconds to clean up the killed job, which a next srun
/// waits for.
pub(crate) fn remote_start(
    launcher: multiproc::Launcher,
    rounds: usize,
) -> Result<Figures, String> {
    let end = |pool: Pool| -> Result<(), String> {
        pool.close();
        pool.join().map_err(|e| format!("join: {e}"))
    };
    let start = |launcher: multiproc::Launcher| -> Result<(Duration, Pool), String> {
        let t = Instant::now();
        let pool = launched_pool(launcher, 1)?;
        let r = pool
            .submit(square, 3u64)
            .get()
            .map_err(|e| format!("first task: {e}"))?;
        let took = t.elapsed();
        if r != 9 {
            return Err(format!("square(3) = {r}"));
        }
        Ok((took, pool))
    };
    // Warm-up, untimed.
    end(start(launcher.clone())?.1)?;
    end(start(multiproc::Launcher::local())?.1)?;
    let (mut ours, mut base) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..rounds {
        let (t, pool) = start(launcher.clone())?;
        ours += t;
        end(pool)?;
        let (t, pool) = start(multiproc::Launcher::local())?;
        base += t;
        end(pool)?;
    }
    let mean = |d: Duration| us(d.as_secs_f64() / rounds as f64);
    Ok(Figures {
        ours: mean(ours),
        baseline: Some(mean(base)),
    })
}

/// `Ok` when `srun` is on `PATH` and the cluster answers (`sinfo` lists a
/// node that is up, within 10 s); else why not.
pub(crate) fn slurm_answers() -> Result<(), String> {
    let on_path = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("srun").is_file()));
    if !on_path {
        return Err("srun is not on PATH".into());
    }
    let mut child = Command::new("sinfo")
        .args(["-h", "-o", "%T"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("sinfo: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while child
        .try_wait()
        .map_err(|e| format!("sinfo: {e}"))?
        .is_none()
    {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err("the cluster does not answer (sinfo still running after 10 s)".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("sinfo: {e}"))?;
    let states = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "sinfo failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    // Up: any state but down, drained, failed or not responding (`*`).
    let up = |s: &str| {
        !s.ends_with('*')
            && !["down", "drain", "fail", "unk", "no_resp", "future"]
                .iter()
                .any(|d| s.starts_with(d))
    };
    if !states.split_whitespace().any(up) {
        return Err(format!(
            "no node of the cluster is up (sinfo: {})",
            states.trim()
        ));
    }
    Ok(())
}
