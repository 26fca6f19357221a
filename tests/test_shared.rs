//! Shared memory across real processes: frozen blocks read by children,
//! shared atomics, raw blocks, and blocks that are refused on receipt.

use std::sync::atomic::{AtomicU64, Ordering};

use multiproc::test_hooks::{frozen_handle, raw_handle, ForgedBlock};
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

fn forged_frozen(f: ForgedBlock<Frozen<u64>>) -> usize {
    f.into_received().expect("decoded").len()
}

fn forged_atomic(f: ForgedBlock<Shared<AtomicU64>>) -> u64 {
    f.into_received().expect("decoded").load(Ordering::SeqCst)
}

multiproc::entry!(checksum, count, poke, forged_frozen, forged_atomic);

/// The message of the bootstrap failure a forged block causes in a
/// worker running `$entry` (which refuses it while decoding its argument).
macro_rules! refusal {
    ($entry:expr, $forged:expr) => {{
        let err = Process::spawn($entry, $forged).unwrap().join().unwrap_err();
        assert!(err.is_bootstrap_failure(), "{err}");
        err.to_string()
    }};
}

fn a_pipe_end() -> multiproc::test_hooks::OwnedRaw {
    let (r, _w) = std::io::pipe().unwrap();
    r.into()
}

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

#[test]
fn a_handle_that_is_no_block_is_refused() {
    let m = refusal!(forged_frozen, ForgedBlock::new(a_pipe_end(), 4096, true));
    assert!(m.contains("not a shared-memory"), "{m}");
    let m = refusal!(forged_atomic, ForgedBlock::new(a_pipe_end(), 8, false));
    assert!(m.contains("not a shared-memory"), "{m}");
}

#[test]
fn a_size_other_than_the_blocks_is_refused() {
    let block = SharedMut::<u64>::zeroed(512).unwrap().freeze().unwrap();
    let forged = ForgedBlock::new(frozen_handle(&block).unwrap(), 4096 * 3, true);
    let m = refusal!(forged_frozen, forged);
    assert!(m.contains("a shared-memory block refused"), "{m}");
    assert!(m.contains("12288"), "{m}");
    // A raw block where one atomic is expected.
    let raw = SharedMemory::new(4096).unwrap();
    let m = refusal!(
        forged_atomic,
        ForgedBlock::new(raw_handle(&raw).unwrap(), 4096, false)
    );
    assert!(m.contains("4096 bytes arrived for a"), "{m}");
}

#[test]
fn a_writable_block_sent_as_frozen_is_refused() {
    let raw = SharedMemory::new(4096).unwrap();
    let m = refusal!(
        forged_frozen,
        ForgedBlock::new(raw_handle(&raw).unwrap(), 4096, true)
    );
    // Linux: no write seal; Windows: the handle still maps writable.
    let why = if cfg!(windows) {
        "allows writing"
    } else {
        "F_SEAL_WRITE"
    };
    assert!(m.contains(why), "{m}");
}

#[test]
fn a_frozen_block_sent_as_writable_is_refused() {
    let block = SharedMut::<u64>::zeroed(1).unwrap().freeze().unwrap();
    let forged = ForgedBlock::new(frozen_handle(&block).unwrap(), 8, false);
    let m = refusal!(forged_atomic, forged);
    // Linux: it has the write seal; Windows: its handle can't map writable.
    assert!(m.contains("a shared-memory block refused"), "{m}");
    if cfg!(target_os = "linux") {
        assert!(m.contains("sealed against writing"), "{m}");
    }
}

#[test]
fn a_block_that_is_no_whole_number_of_elements_is_refused() {
    let block = SharedMut::<u8>::zeroed(12).unwrap().freeze().unwrap();
    let forged = ForgedBlock::new(frozen_handle(&block).unwrap(), 12, true);
    let m = refusal!(forged_frozen, forged);
    assert!(m.contains("not a whole number of `u64`"), "{m}");
}

#[test]
fn a_missing_handle_or_a_length_over_the_cap_is_refused() {
    let m = refusal!(forged_frozen, ForgedBlock::token_only(3, 4096, true));
    assert!(
        m.contains("cannot take a shared-memory block's handle"),
        "{m}"
    );
    let m = refusal!(forged_frozen, ForgedBlock::token_only(3, u64::MAX, true));
    assert!(m.contains("over the cap"), "{m}");
}
