//! Pool throughput against chunk size, for `scripts/plot_chunksize.py`:
//! prints one JSON object `{"chunksize": tasks_per_second, ..., "auto": ..}`
//! for `x * x` on u64 with 2 workers (best of 3 runs each).

use std::time::Instant;

fn square(x: u64) -> u64 {
    x * x
}

multiproc::entry!(square);

const SIZES: [usize; 8] = [1, 4, 16, 64, 256, 1024, 4096, 16384];

fn rate(n: u64, run: impl Fn() -> Vec<u64>) -> f64 {
    (0..3)
        .map(|_| {
            let t = Instant::now();
            let out = run();
            assert_eq!(out.len() as u64, n);
            n as f64 / t.elapsed().as_secs_f64()
        })
        .fold(0.0, f64::max)
}

fn main() -> Result<(), multiproc::Error> {
    multiproc::init();
    let pool = multiproc::Pool::new(2)?;
    pool.map(square, 0..10_000u64)?; // warm up
    let mut fields = Vec::new();
    for cs in SIZES {
        let n: u64 = if cs < 16 { 100_000 } else { 2_000_000 };
        let r = rate(n, || pool.map_chunked(square, 0..n, cs).expect("map"));
        fields.push(format!("\"{cs}\": {r:.0}"));
    }
    let n = 2_000_000u64;
    let r = rate(n, || pool.map(square, 0..n).expect("map"));
    fields.push(format!("\"auto\": {r:.0}"));
    println!("{{{}}}", fields.join(", "));
    Ok(())
}
