//! The queue rows: `u64` items vs CPython's `Queue`, 1 MiB and 4 MiB
//! items vs raw pipes, 4 producers and 4 consumers.

use std::io::{Read, Write};
use std::path::Path;
use std::time::Instant;

use multiproc::Process;

use crate::cpython::cpython_json_args;
use crate::process::RawEcho;
use crate::table::Figures;
use crate::{interleaved, Sizes, BIG, POOL_RUNS};

/// The queue row's producer: puts `0..n`.
fn queue_produce((q, n): (multiproc::Queue<u64>, u64)) {
    for i in 0..n {
        q.put(i).expect("put");
    }
}

/// The big-item rows' producer: puts `n` items of `len` bytes.
fn queue_produce_big((q, n, len): (multiproc::Queue<serde_bytes::ByteBuf>, u64, usize)) {
    let item = serde_bytes::ByteBuf::from(vec![7u8; len]);
    for _ in 0..n {
        q.put(&item).expect("put");
    }
}

/// The 4 x 4 row's consumer: takes items until the queue is closed.
fn queue_consume(q: multiproc::Queue<u64>) -> u64 {
    let mut n = 0;
    while q.get().is_ok() {
        n += 1;
    }
    n
}

multiproc::entry!(queue_produce, queue_produce_big, queue_consume);

/// [`BIG`] bytes in items of `len` bytes from a child, through a queue
/// whose ring is `ring` bytes (the default if `None`), vs the same bytes
/// streamed through raw pipes.
pub(crate) fn queue_big(
    exe: &Path,
    sz: &Sizes,
    len: usize,
    ring: Option<usize>,
) -> Result<Figures, String> {
    const MIB: usize = 1 << 20;
    let n = (BIG / len) as u64;
    let data: Vec<u8> = vec![7u8; BIG];
    let mut raw = RawEcho::start(exe);
    let RawEcho { input, output, .. } = &mut raw;
    let raw_in = input.as_mut().expect("stdin");
    let mut bad = None;
    let (ours, base) = interleaved(
        sz.big_rounds,
        || {
            let run = || -> multiproc::Result<()> {
                let mut b = multiproc::Queue::<serde_bytes::ByteBuf>::builder();
                if let Some(ring) = ring {
                    b.max_bytes(ring);
                }
                let args = (b.build()?, n, len);
                let mut child = Process::spawn(queue_produce_big, &args)?;
                for _ in 0..n {
                    let item = args.0.get()?;
                    assert_eq!(item.len(), len);
                }
                child.join()
            };
            if let Err(e) = run() {
                bad = Some(e.to_string());
            }
        },
        || {
            std::thread::scope(|s| {
                s.spawn(|| raw_in.write_all(&data).expect("raw write"));
                let mut back = vec![0u8; data.len()];
                output.read_exact(&mut back).expect("raw read");
            })
        },
    );
    if let Some(why) = bad {
        return Err(why);
    }
    let mib = |d: f64| BIG as f64 / d / MIB as f64;
    Ok(Figures {
        ours: mib(ours),
        baseline: Some(mib(base)),
    })
}

/// 4 producer processes and 4 consumer processes on one queue: items/s
/// from the first spawn to the last consumer's end, the best of 3.
pub(crate) fn queue_4x4(quick: bool) -> Result<Figures, String> {
    let per: u64 = if quick { 100_000 } else { 500_000 };
    let mut best = 0.0f64;
    for _ in 0..POOL_RUNS {
        let run = || -> multiproc::Result<f64> {
            let args = (multiproc::Queue::<u64>::new()?, per);
            let t = Instant::now();
            let mut consumers = (0..4)
                .map(|_| Process::spawn(queue_consume, &args.0))
                .collect::<multiproc::Result<Vec<Process<u64>>>>()?;
            let producers = (0..4)
                .map(|_| Process::<()>::spawn(queue_produce, &args))
                .collect::<multiproc::Result<Vec<_>>>()?;
            for mut p in producers {
                p.join()?;
            }
            args.0.close()?;
            let mut got = 0;
            for c in &mut consumers {
                got += c.join()?;
            }
            let dt = t.elapsed().as_secs_f64();
            assert_eq!(got, 4 * per);
            Ok(got as f64 / dt)
        };
        best = best.max(run().map_err(|e| e.to_string())?);
    }
    Ok(Figures {
        ours: best,
        baseline: None,
    })
}

/// A child puts `n` items, the parent gets them: the best of 3 runs of
/// items/s from the first item received to the last; the baseline is
/// CPython's `multiprocessing.Queue` measured the same way.
pub(crate) fn queue_row(
    quick: bool,
    no_cpython: bool,
    info: &mut Vec<String>,
) -> Result<Figures, String> {
    let n: u64 = if quick { 200_000 } else { 2_000_000 };
    let mut best = 0.0f64;
    for _ in 0..POOL_RUNS {
        let args = (
            multiproc::Queue::<u64>::new().map_err(|e| e.to_string())?,
            n,
        );
        let mut child = Process::spawn(queue_produce, &args).map_err(|e| e.to_string())?;
        let q = &args.0;
        let mut sum = q.get().map_err(|e| e.to_string())?;
        let t = Instant::now();
        for _ in 1..n {
            sum = sum.wrapping_add(q.get().map_err(|e| e.to_string())?);
        }
        let dt = t.elapsed().as_secs_f64();
        child.join().map_err(|e| e.to_string())?;
        if sum != n * (n - 1) / 2 {
            return Err(format!(
                "the items summed to {sum}, not {}",
                n * (n - 1) / 2
            ));
        }
        best = best.max((n - 1) as f64 / dt);
    }
    let baseline = if no_cpython {
        info.push("queue: cpython n/a (not run: --no-cpython)".into());
        None
    } else {
        match cpython_queue(if quick { 50_000 } else { 200_000 }) {
            Ok((q, simple, python)) => {
                info.push(format!(
                    "queue: cpython {python} (scripts/bench_cpython.py --queue, best of 3): \
                     Queue {q:.0} items/s, SimpleQueue {simple:.0} items/s; \
                     multiproc / SimpleQueue = {:.1} (target 10)",
                    best / simple
                ));
                Some(q)
            }
            Err(why) => {
                info.push(format!("queue: cpython n/a ({why})"));
                None
            }
        }
    };
    Ok(Figures {
        ours: best,
        baseline,
    })
}

/// `scripts/bench_cpython.py --queue N`: (Queue items/s, SimpleQueue
/// items/s, python version).
fn cpython_queue(n: u64) -> Result<(f64, f64, String), String> {
    let json = cpython_json_args(&["--queue", &n.to_string()])?;
    let num = |k: &str| {
        json.get(k)
            .and_then(serde_json::Value::as_f64)
            .ok_or(format!("no {k} in the script's JSON"))
    };
    let python = json
        .get("python")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("?");
    Ok((
        num("queue_items_s")?,
        num("simple_queue_items_s")?,
        python.to_string(),
    ))
}
