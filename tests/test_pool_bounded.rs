//! A lazy million-task `imap`: the handle count must not grow with the
//! number of tasks. Alone in its test binary, because the count covers the
//! whole process and other tests' pools would move it.

multiproc::test_support!();

mod common;
use common::{pool, square};

#[test]
fn a_million_lazy_tasks_keep_fds_and_memory_bounded() {
    let n: u64 = if cfg!(windows) { 100_000 } else { 1_000_000 };
    let p = pool(2);
    let mut fds_before = 0;
    let mut max_fds = 0;
    let mut sum = 0u64;
    for (i, r) in p.imap(square, 0..n).enumerate() {
        sum = sum.wrapping_add(r.unwrap());
        if i % 25_000 == 0 && i >= 25_000 {
            let now = multiproc::test_hooks::open_handle_count().unwrap();
            if i == 25_000 {
                // Once the pool's threads have done their first I/O (on
                // Windows each makes its event handles then).
                fds_before = now;
            }
            max_fds = max_fds.max(now);
        }
    }
    let expect = (0..n).fold(0u64, |a, x| a.wrapping_add(x * x));
    assert_eq!(sum, expect);
    // Queued tasks hold no fd or handle: nothing grows with the task count.
    assert!(
        max_fds <= fds_before + 4,
        "fds grew from {fds_before} to {max_fds}"
    );
}
