//! Shared memory across real processes: frozen blocks read by children,
//! shared atomics, raw blocks, and blocks that are refused on receipt.

use std::sync::atomic::{AtomicU64, Ordering};

use multiproc::{Frozen, Process, Shared, SharedMemory, SharedMut};

multiproc::test_support!();

mod common;

/// The block's checksum, computed in the child from its own mapping.
fn checksum(block: Frozen<u64>) -> (u64, usize) {
    let sum = block.iter().fold(0u64, |acc, &x| {
        acc.rotate_left(5) ^ x.wrapping_mul(0x9e37_79b9_7f4a_7c15)
    });
    (sum, block.len())
}

fn local_checksum(v: &[u64]) -> u64 {
    v.iter().fold(0u64, |acc, &x| {
        acc.rotate_left(5) ^ x.wrapping_mul(0x9e37_79b9_7f4a_7c15)
    })
}

/// Adds 1 to the counter `n` times.
fn count((counter, n): (Shared<AtomicU64>, u64)) {
    for _ in 0..n {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Writes `value` at byte `at` of the raw block, through a pointer.
fn poke((block, at, value): (SharedMemory, usize, u8)) {
    assert!(at < block.len());
    // SAFETY: in bounds; the parent does not touch the block until this
    // process has exited.
    unsafe { block.as_ptr().add(at).write(value) };
}

multiproc::entry!(checksum, count, poke);

#[test]
fn a_frozen_block_reads_the_same_in_a_child() {
    let data: Vec<u64> = (0..100_000u64).map(|i| i * i + 7).collect();
    let block = SharedMut::from_slice(&data).unwrap().freeze().unwrap();
    let mut p = Process::spawn(checksum, block.clone()).unwrap();
    assert_eq!(p.join().unwrap(), (local_checksum(&data), data.len()));
    assert_eq!(local_checksum(&block), local_checksum(&data));
}

#[test]
fn eight_processes_count_exactly_on_a_shared_atomic() {
    let counter = Shared::new(AtomicU64::new(0)).unwrap();
    let mut procs: Vec<_> = (0..8)
        .map(|_| Process::spawn(count, (counter.clone(), 10_000)).unwrap())
        .collect();
    for p in &mut procs {
        p.join().unwrap();
    }
    assert_eq!(counter.load(Ordering::SeqCst), 80_000);
}

#[test]
fn a_childs_write_to_a_raw_block_is_seen_here() {
    let arg = (SharedMemory::new(10_000).unwrap(), 9_999, 42);
    let mut p = Process::spawn(poke, &arg).unwrap();
    p.join().unwrap();
    // SAFETY: in bounds; the child that wrote it has exited.
    let got = unsafe { arg.0.as_ptr().add(9_999).read() };
    assert_eq!(got, 42);
}
