//! The lock rows: an uncontended `Lock` vs CPython's, and a `Value`'s lock
//! contended by 2 processes vs a `Mutex` between 2 threads.

use std::sync::Mutex;
use std::time::Instant;

use multiproc::Process;

use crate::cpython::cpython_json;
use crate::table::Figures;

/// The lock-contended row's child: says it is ready, waits for the start,
/// then takes the counter's lock `n` times.
fn contend(
    (counter, ready, go, n): (
        multiproc::Value<u64>,
        multiproc::Semaphore,
        multiproc::Event,
        u64,
    ),
) {
    ready.release().expect("ready");
    go.wait().expect("go");
    for _ in 0..n {
        *counter.lock().expect("lock") += 1;
    }
}

multiproc::entry!(contend);

/// Acquisitions per lock run.
const LOCK_N: u64 = 1_000_000;

/// The lock row: ns per uncontended `Lock` acquire + release (best of 3
/// runs of 1 M) vs CPython's `multiprocessing.Lock`, measured by the
/// script in the same run.
pub(crate) fn lock_uncontended(
    no_cpython: bool,
    info: &mut Vec<String>,
) -> Result<Figures, String> {
    let lock = multiproc::Lock::new().map_err(|e| e.to_string())?;
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let t = Instant::now();
        for _ in 0..LOCK_N {
            drop(std::hint::black_box(
                lock.acquire().map_err(|e| e.to_string())?,
            ));
        }
        best = best.min(t.elapsed().as_secs_f64() * 1e9 / LOCK_N as f64);
    }
    let baseline = if no_cpython {
        info.push("lock: cpython n/a (not run: --no-cpython)".into());
        None
    } else {
        match cpython_json("--lock").and_then(|j| {
            let ns = j
                .get("lock_ns")
                .and_then(serde_json::Value::as_f64)
                .ok_or("no lock_ns in the script's JSON")?;
            let python = j
                .get("python")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("?");
            Ok((ns, python.to_string()))
        }) {
            Ok((ns, python)) => {
                info.push(format!(
                    "lock: baseline is cpython {python} multiprocessing.Lock acquire + release ({ns:.0} ns, best of 3 x 1 M)"
                ));
                Some(ns)
            }
            Err(why) => {
                info.push(format!("lock: cpython n/a ({why})"));
                None
            }
        }
    };
    Ok(Figures {
        ours: best,
        baseline,
    })
}

/// The lock-contended row: 2 processes x 500 000 acquisitions of a
/// `Value<u64>`'s lock (timed from the start signal to both joined), ns
/// per acquisition, vs a `std::sync::Mutex<u64>` between 2 threads.
pub(crate) fn lock_contended() -> Result<Figures, String> {
    let err = |e: multiproc::Error| e.to_string();
    let half = LOCK_N / 2;
    let args = (
        multiproc::Value::new(0u64).map_err(err)?,
        multiproc::Semaphore::new(0).map_err(err)?,
        multiproc::Event::new().map_err(err)?,
        half,
    );
    let mut ps = Vec::new();
    for _ in 0..2 {
        ps.push(Process::<()>::spawn(contend, &args).map_err(err)?);
    }
    for _ in 0..2 {
        args.1.acquire().map_err(err)?.forget();
    }
    let t = Instant::now();
    args.2.set().map_err(err)?;
    for p in &mut ps {
        p.join().map_err(err)?;
    }
    let ours = t.elapsed().as_secs_f64() * 1e9 / LOCK_N as f64;
    let total = args.0.get().map_err(err)?;
    if total != LOCK_N {
        return Err(format!("the counter reads {total}, not {LOCK_N}"));
    }

    let m = std::sync::Arc::new(Mutex::new(0u64));
    let t = Instant::now();
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let m = std::sync::Arc::clone(&m);
            std::thread::spawn(move || {
                for _ in 0..half {
                    *m.lock().unwrap() += 1;
                }
            })
        })
        .collect();
    for th in threads {
        th.join().map_err(|_| "a thread panicked".to_string())?;
    }
    let threads = t.elapsed().as_secs_f64() * 1e9 / LOCK_N as f64;
    Ok(Figures {
        ours,
        baseline: Some(threads),
    })
}
