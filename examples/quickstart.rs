//! The README's first command: `cargo run --release --example quickstart`.
//!
//! One typed call in a worker process, a pipe to a child, then the main
//! job: count the primes below 300 million on a pool of workers, with a
//! progress bar, and compare with doing it in this one process.

use std::time::Instant;

use multiproc::{Connection, Pipe, Pool, Process};

/// Counts the primes in `[lo, hi)` with a segmented sieve.
fn count_primes((lo, hi): (u64, u64)) -> u64 {
    let lo = lo.max(2);
    if hi <= lo {
        return 0;
    }
    let root = (hi as f64).sqrt() as u64 + 1;
    let mut small = vec![true; root as usize + 1];
    let mut primes = Vec::new();
    for i in 2..=root {
        if small[i as usize] {
            primes.push(i);
            let mut j = i * i;
            while j <= root {
                small[j as usize] = false;
                j += i;
            }
        }
    }
    let mut seg = vec![true; (hi - lo) as usize];
    for &p in &primes {
        let mut m = (lo.div_ceil(p) * p).max(p * p);
        while m < hi {
            seg[(m - lo) as usize] = false;
            m += p;
        }
    }
    seg.iter().filter(|&&is_prime| is_prime).count() as u64
}

/// Answers every message with its upper-case form until the parent hangs up.
fn shout(conn: Connection) -> usize {
    let mut n = 0;
    while let Ok(s) = conn.recv::<String>() {
        if conn.send(&s.to_uppercase()).is_err() {
            break;
        }
        n += 1;
    }
    n
}

multiproc::entry!(count_primes, shout);

const N: u64 = 300_000_000;
const BLOCK: u64 = 1_000_000;

fn main() -> Result<(), multiproc::Error> {
    multiproc::init(); // in a worker, this runs the requested function and exits

    // One process, one typed call.
    let mut p = Process::spawn(count_primes, (0, 1_000_000))?;
    println!(
        "worker {} says: {} primes below one million",
        p.pid(),
        p.join()?
    );

    // A pipe to a child; the Connection crosses into it.
    let (mine, theirs) = Pipe::duplex()?;
    let mut child = Process::spawn(shout, theirs)?;
    mine.send(&"hello from the parent")?;
    println!("the child answered: {}", mine.recv::<String>()?);
    drop(mine);
    println!("the child handled {} message(s)", child.join()?);

    // The main job: the primes below N, block by block.
    let blocks: Vec<(u64, u64)> = (0..N / BLOCK)
        .map(|i| (i * BLOCK, (i + 1) * BLOCK))
        .collect();
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let t = Instant::now();
    let pool = Pool::new(workers)?;
    let mut on_pool = 0;
    for count in pool.imap_unordered(count_primes, blocks.clone()).progress() {
        on_pool += count?;
    }
    let pool_time = t.elapsed();
    drop(pool);

    let t = Instant::now();
    let here: u64 = blocks.iter().map(|&b| count_primes(b)).sum();
    let here_time = t.elapsed();

    assert_eq!(on_pool, here);
    println!(
        "{on_pool} primes below {N}: {workers} workers {:.2} s (pool start included), \
         one process {:.2} s, speed-up {:.2}x",
        pool_time.as_secs_f64(),
        here_time.as_secs_f64(),
        here_time.as_secs_f64() / pool_time.as_secs_f64()
    );
    Ok(())
}
