//! A probe for the queue's counters per item (issue 12's speed work;
//! `docs/benchmarks.md`), where wall-clock rates are noise:
//!
//! - `queue_probe pair N`: a child puts `0..N` (`u64`), the parent gets
//!   them — the bench's queue row, once, without the spawn in the figure;
//!   run it under `perf stat -e task-clock,context-switches,syscalls:sys_enter_futex`
//!   (with `chrt -f 1` for both processes on the two cores, `taskset -c 0`
//!   for one).
//! - `queue_probe single N`: one thread puts and gets in runs of 1 000,
//!   no second process: the path's instructions under
//!   `valgrind --tool=callgrind` (two `N`s, the difference over their
//!   difference is per put + get pair).

use std::time::Instant;

use multiproc::{Process, Queue};

fn produce((q, n): (Queue<u64>, u64)) {
    for i in 0..n {
        q.put(i).expect("put");
    }
}

multiproc::entry!(produce);

fn main() {
    multiproc::init();
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "pair".into());
    let n: u64 = args.next().map_or(1_000_000, |s| s.parse().expect("N"));
    let q = Queue::<u64>::new().expect("queue");
    let mut t = Instant::now();
    let mut sum = 0u64;
    match mode.as_str() {
        "pair" => {
            let args = (q, n);
            let mut child = Process::spawn(produce, &args).expect("spawn");
            sum = args.0.get().expect("get");
            t = Instant::now(); // from the first item on
            for _ in 1..n {
                sum = sum.wrapping_add(args.0.get().expect("get"));
            }
            child.join().expect("join");
        }
        "single" => {
            let mut i = 0;
            while i < n {
                let k = (n - i).min(1000);
                for j in 0..k {
                    q.put(i + j).expect("put");
                }
                for _ in 0..k {
                    sum = sum.wrapping_add(q.get().expect("get"));
                }
                i += k;
            }
        }
        m => panic!("mode {m}?"),
    }
    assert_eq!(sum, n * (n - 1) / 2);
    let dt = t.elapsed().as_secs_f64();
    eprintln!("{mode} {n}: {:.0} items/s", n as f64 / dt);
}
