//! The pool rows: startup, idle worker RSS, tiny tasks (chunksize 1,
//! automatic chunking) and async.

use std::io::{Read, Write};
use std::path::Path;
#[cfg(target_os = "linux")]
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use multiproc::Pool;

use crate::process::bare_spawn_wait;
use crate::table::Figures;
use crate::{us, Sizes, POOL_RUNS, POOL_WORKERS};

pub(crate) fn square(x: u64) -> u64 {
    x * x
}

multiproc::entry!(square);

pub(crate) fn pool_startup(exe: &Path, sz: &Sizes) -> Result<Figures, String> {
    let new_pool = || Pool::new(POOL_WORKERS).map_err(|e| format!("Pool::new: {e}"));
    drop(new_pool()?); // warm-up, untimed
    let (mut ours, mut base) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..sz.startup_rounds {
        let t = Instant::now();
        let pool = new_pool()?;
        ours += t.elapsed();
        // Dropping the pool (kill, reap, join its threads) is not timed.
        drop(pool);
        let t = Instant::now();
        for _ in 0..POOL_WORKERS {
            bare_spawn_wait(exe);
        }
        base += t.elapsed();
    }
    let mean = |d: Duration| us(d.as_secs_f64() / sz.startup_rounds as f64);
    Ok(Figures {
        ours: mean(ours),
        baseline: Some(mean(base)),
    })
}

/// Linux: `VmRSS` of a ready, idle pool worker vs a bare child of this
/// binary blocked reading stdin.
#[cfg(target_os = "linux")]
pub(crate) fn idle_rss(exe: &Path) -> Result<Figures, String> {
    use std::io::{BufRead, BufReader};

    let pool = Pool::new(POOL_WORKERS).map_err(|e| format!("Pool::new: {e}"))?;
    // Let the workers settle into their wait for work.
    std::thread::sleep(Duration::from_millis(100));
    let pids = pool.pids();
    if pids.is_empty() {
        return Err("the pool reports no ready worker".into());
    }
    let mut ours = 0.0;
    for &pid in &pids {
        ours += vm_rss_kib(pid)? as f64;
    }
    ours /= pids.len() as f64;

    let mut child = Command::new(exe)
        .arg("--block-stdin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("bare child: {e}"))?;
    let input = child.stdin.take();
    let mut line = String::new();
    let ready = BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line);
    std::thread::sleep(Duration::from_millis(100));
    let base = match ready {
        Ok(_) if line.trim() == "ready" => vm_rss_kib(child.id()),
        Ok(_) => Err(format!("bare child said {line:?}, not \"ready\"")),
        Err(e) => Err(format!("bare child: {e}")),
    };
    drop(input);
    let _ = child.wait();
    Ok(Figures {
        ours,
        baseline: Some(base? as f64),
    })
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn idle_rss(_exe: &Path) -> Result<Figures, String> {
    Err("Linux only (reads /proc/<pid>/status)".into()) // not called: see `run`
}

/// The resident set size of `pid` in KiB, from `/proc/<pid>/status`.
#[cfg(target_os = "linux")]
fn vm_rss_kib(pid: u32) -> Result<u64, String> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| format!("{path}: no VmRSS line"))
}

/// The bare child of the RSS row: says it is ready, then blocks reading
/// stdin until EOF.
pub(crate) fn block_stdin() {
    let mut out = std::io::stdout().lock();
    if writeln!(out, "ready").and_then(|_| out.flush()).is_err() {
        return;
    }
    let mut sink = Vec::new();
    let _ = std::io::stdin().lock().read_to_end(&mut sink);
}

/// A started pool whose workers have run `square` (so that the first
/// timed run doesn't pay for page faults or the first chunk-size guess).
pub(crate) fn warm_pool() -> Result<Pool, String> {
    let pool = Pool::new(POOL_WORKERS).map_err(|e| format!("Pool::new: {e}"))?;
    let out: Vec<u64> = pool
        .map(square, 0..10_000u64)
        .map_err(|e| format!("warm-up map: {e}"))?;
    check_squares(&out, 10_000)?;
    Ok(pool)
}

pub(crate) fn check_squares(out: &[u64], n: u64) -> Result<(), String> {
    if out.len() as u64 != n {
        return Err(format!("{} results for {n} tasks", out.len()));
    }
    if let Some(i) = out
        .iter()
        .enumerate()
        .position(|(i, &v)| v != square(i as u64))
    {
        return Err(format!(
            "result {i} is {}, not {}",
            out[i],
            square(i as u64)
        ));
    }
    Ok(())
}

/// The best of `POOL_RUNS` runs of `f` over `n` tasks, in tasks/s.
fn best_rate(n: u64, mut f: impl FnMut() -> multiproc::Result<Vec<u64>>) -> Result<f64, String> {
    let mut best: f64 = 0.0;
    for _ in 0..POOL_RUNS {
        let t = Instant::now();
        let out = f().map_err(|e| e.to_string())?;
        let secs = t.elapsed().as_secs_f64();
        check_squares(&out, n)?;
        best = best.max(n as f64 / secs);
    }
    Ok(best)
}

pub(crate) fn pool_chunk1(sz: &Sizes, cpython: Option<f64>) -> Result<Figures, String> {
    let pool = warm_pool()?;
    let n = sz.chunk1_n;
    let ours = best_rate(n, || pool.imap(square, 0..n).chunksize(1).collect())?;
    Ok(Figures {
        ours,
        baseline: cpython,
    })
}

pub(crate) fn pool_auto(
    sz: &Sizes,
    cpython: Option<f64>,
    info: &mut Vec<String>,
) -> Result<Figures, String> {
    let pool = warm_pool()?;
    let n = sz.auto_n;
    let ours = best_rate(n, || pool.map(square, 0..n))?;
    #[cfg(target_os = "linux")]
    {
        let rss: Vec<String> = pool
            .pids()
            .iter()
            .map(|&pid| vm_rss_kib(pid).map_or_else(|e| e, |k| format!("{k} KiB")))
            .collect();
        info.push(format!(
            "pool worker RSS after the auto-chunk runs ({POOL_RUNS} x {n} tasks): {}",
            rss.join(", ")
        ));
    }
    #[cfg(not(target_os = "linux"))]
    let _ = info;
    Ok(Figures {
        ours,
        baseline: cpython,
    })
}

/// `submit` + await of `async_n` tasks on a current-thread runtime vs a
/// blocking `imap_unordered` with chunksize 1, alternating; the best rate
/// of each.
pub(crate) fn pool_async(sz: &Sizes) -> Result<Figures, String> {
    let pool = warm_pool()?;
    let n = sz.async_n;
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    let (mut ours, mut baseline) = (0f64, 0f64);
    for _ in 0..POOL_RUNS {
        let t = Instant::now();
        let out: Vec<u64> = rt
            .block_on(futures_util::future::join_all(
                (0..n).map(|i| pool.submit(square, i)),
            ))
            .into_iter()
            .collect::<multiproc::Result<_>>()
            .map_err(|e| e.to_string())?;
        ours = ours.max(n as f64 / t.elapsed().as_secs_f64());
        check_squares(&out, n)?;

        let t = Instant::now();
        let mut out: Vec<u64> = pool
            .imap_unordered(square, 0..n)
            .chunksize(1)
            .collect::<multiproc::Result<_>>()
            .map_err(|e| e.to_string())?;
        baseline = baseline.max(n as f64 / t.elapsed().as_secs_f64());
        out.sort_unstable();
        check_squares(&out, n)?;
    }
    Ok(Figures {
        ours,
        baseline: Some(baseline),
    })
}
