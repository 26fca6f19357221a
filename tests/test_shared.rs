//! Shared memory across real processes: frozen blocks read by children,
//! shared atomics, raw blocks, and blocks that are refused on receipt.

use std::sync::atomic::{AtomicU64, Ordering};

use multiproc::test_hooks::{frozen_handle, raw_handle, ForgedBlock};
use multiproc::{Frozen, PoolBuilder, Process, Shared, SharedMemory, SharedMut};

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

/// What the pool workers' initializer reports, in shared atomics.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Report {
    /// Workers that saw the expected checksum.
    matched: Shared<AtomicU64>,
    /// Workers that ran the initializer.
    ran: Shared<AtomicU64>,
    /// The largest RssAnon a worker had after reading the block (kB).
    max_anon_kb: Shared<AtomicU64>,
    /// The smallest RssShmem + HugetlbPages a worker had after reading the
    /// block (kB).
    min_shmem_kb: Shared<AtomicU64>,
}

impl Report {
    fn new() -> Report {
        let a = |v| Shared::new(AtomicU64::new(v)).unwrap();
        Report {
            matched: a(0),
            ran: a(0),
            max_anon_kb: a(0),
            min_shmem_kb: a(u64::MAX),
        }
    }
}

/// A field of /proc/self/status, in kB (Linux).
fn status_kb(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A pool initializer: checksums the block in this worker's own mapping
/// and reports what it saw and how much memory that took.
fn check_in_worker((block, expected, report): (Frozen<u64>, u64, Report)) {
    if local_checksum(&block) == expected {
        report.matched.fetch_add(1, Ordering::SeqCst);
    }
    if let (Some(anon), Some(shmem)) = (status_kb("RssAnon:"), status_kb("RssShmem:")) {
        // A block of huge pages (where the system has them free) is
        // counted apart: HugetlbPages, not RssShmem.
        let huge = status_kb("HugetlbPages:").unwrap_or(0);
        report.max_anon_kb.fetch_max(anon, Ordering::SeqCst);
        report
            .min_shmem_kb
            .fetch_min(shmem + huge, Ordering::SeqCst);
    }
    report.ran.fetch_add(1, Ordering::SeqCst);
}

/// The inode of the memfd mapped at `addr` in process `pid`, from its
/// /proc/<pid>/maps (Linux).
fn memfd_inode_at(pid: u32, addr: usize) -> Option<u64> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).ok()?;
    maps.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        let (lo, hi) = f.next()?.split_once('-')?;
        let (lo, hi) = (
            usize::from_str_radix(lo, 16).ok()?,
            usize::from_str_radix(hi, 16).ok()?,
        );
        let ino = f.nth(3)?.parse().ok()?;
        let path = f.next()?;
        (lo <= addr && addr < hi && path.starts_with("/memfd:")).then_some(ino)
    })
}

#[cfg(target_os = "linux")]
/// Every process (pid, "maps" or "fd") that maps the memfd with inode
/// `ino` or holds an fd of it, anywhere on the system (Linux).
fn holders(ino: u64) -> Vec<(String, &'static str)> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let pid = e.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let maps = std::fs::read_to_string(e.path().join("maps")).unwrap_or_default();
        let mapped = maps.lines().any(|l| {
            let mut f = l.split_whitespace().skip(4);
            f.next() == Some(&ino.to_string()) && f.next().is_some_and(|p| p.starts_with("/memfd:"))
        });
        if mapped {
            out.push((pid.clone(), "maps"));
        }
        for fd in std::fs::read_dir(e.path().join("fd"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let is_memfd = std::fs::read_link(fd.path())
                .is_ok_and(|t| t.to_string_lossy().starts_with("/memfd:"));
            if is_memfd && std::fs::metadata(fd.path()).is_ok_and(|m| m.ino() == ino) {
                out.push((pid.clone(), "fd"));
            }
        }
    }
    out
}

#[cfg(target_os = "linux")]
/// Names in /dev/shm that a POSIX shared-memory block of ours would have
/// (`shm_open` names; Linux uses memfds and should leave none).
fn dev_shm_names() -> Vec<String> {
    std::fs::read_dir("/dev/shm")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("mp") || n.contains("multiproc"))
        .collect()
}

/// Returns the inode of the memfd behind `block` as this child maps it.
fn inode_in_child(block: Frozen<u64>) -> Option<u64> {
    memfd_inode_at(std::process::id(), block.as_ptr() as usize)
}

/// Keeps the block (in a pool initializer) until the worker exits.
fn hold(block: Frozen<u64>) {
    static HELD: std::sync::OnceLock<Frozen<u64>> = std::sync::OnceLock::new();
    let _ = HELD.set(block);
}

/// An intermediate process: makes a block, has 2 pool workers hold it,
/// reports the block's inode and the workers' pids, then waits to be
/// killed.
fn make_block_and_wait(report: multiproc::Connection) {
    let mut block = SharedMut::<u64>::zeroed(1 << 17).unwrap();
    block[0] = 1;
    let block = block.freeze().unwrap();
    let ino = memfd_inode_at(std::process::id(), block.as_ptr() as usize);
    let pool = PoolBuilder::new()
        .workers(2)
        .initializer(hold, block.clone())
        .build()
        .unwrap();
    report.send(&(ino, pool.pids())).unwrap();
    common::block_forever(());
}

/// Adds 1 to slot `i` and to the last slot, `n` times each.
fn count_slots((slots, i, n): (Shared<[AtomicU64]>, usize, u64)) {
    let last = slots.len() - 1;
    for _ in 0..n {
        slots[i].fetch_add(1, Ordering::Relaxed);
        slots[last].fetch_add(1, Ordering::Relaxed);
    }
}

fn forged_slots(f: ForgedBlock<Shared<[AtomicU64]>>) -> usize {
    f.into_received().expect("decoded").len()
}

multiproc::entry!(
    count_slots,
    forged_slots,
    checksum,
    count,
    poke,
    forged_frozen,
    forged_atomic,
    check_in_worker,
    inode_in_child,
    hold,
    make_block_and_wait,
    pass_blocks,
);

/// Receives blocks and reads one element of each.
fn pass_blocks(blocks: Vec<Frozen<u64>>) -> u64 {
    blocks.iter().map(|b| b[0]).sum()
}

/// Starts 2 pool workers that check `block` in their initializer, lets
/// them exit, and returns the report.
fn checked_by_two_workers(block: &Frozen<u64>, expected: u64) -> Report {
    let report = Report::new();
    let init = (block.clone(), expected, report.clone());
    let pool = PoolBuilder::new()
        .workers(2)
        .initializer(check_in_worker, init)
        .build()
        .unwrap();
    // Both initializers ran once `build` returned (it waits for ready
    // workers); `join` waits for the workers to exit.
    pool.close();
    pool.join().unwrap();
    report
}

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

/// Not only at a worker's start: as pool task arguments too, on every
/// platform (the crate docs' "Sharing state" says where blocks cross).
#[test]
fn blocks_cross_in_pool_task_arguments() {
    let data: Vec<u64> = (0..10_000u64).map(|i| i ^ 0x5a5a).collect();
    let block = SharedMut::from_slice(&data).unwrap().freeze().unwrap();
    let counter = Shared::new(AtomicU64::new(0)).unwrap();
    let pool = PoolBuilder::new().workers(2).build().unwrap();
    pool.map(count, (0..4).map(|_| (counter.clone(), 1_000)))
        .unwrap();
    assert_eq!(counter.load(Ordering::SeqCst), 4_000);
    let got = pool.map(checksum, (0..4).map(|_| block.clone())).unwrap();
    assert_eq!(got, vec![(local_checksum(&data), data.len()); 4]);
}

#[test]
fn two_pool_workers_read_a_frozen_block_with_the_parents_checksum() {
    let data: Vec<u64> = (0..300_000u64)
        .map(|i| i.wrapping_mul(i) ^ 0xabcd)
        .collect();
    let block = SharedMut::from_slice(&data).unwrap().freeze().unwrap();
    let report = checked_by_two_workers(&block, local_checksum(&data));
    assert_eq!(report.ran.load(Ordering::SeqCst), 2);
    assert_eq!(report.matched.load(Ordering::SeqCst), 2);
}

/// 1 GiB, frozen, read in full by 2 pool workers: each sees the parent's
/// checksum, and (Linux) has the block in its shared-memory RSS (or its
/// hugetlb pages, where the system had them free), not in its anonymous
/// memory: mapped, not copied. Windows has no such split in
/// a cheap counter; there the checksum is what is checked (the view is a
/// mapped section by construction: `VirtualQuery` says `MEM_MAPPED` when
/// the block is received).
#[test]
fn a_gibibyte_frozen_block_is_mapped_not_copied_in_two_pool_workers() {
    const LEN: usize = (1 << 30) / 8;
    let mut block = SharedMut::<u64>::zeroed(LEN).unwrap();
    for (i, x) in block.iter_mut().enumerate() {
        *x = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    let block = block.freeze().unwrap();
    let expected = local_checksum(&block);
    let report = checked_by_two_workers(&block, expected);
    assert_eq!(report.ran.load(Ordering::SeqCst), 2);
    assert_eq!(report.matched.load(Ordering::SeqCst), 2);
    if cfg!(target_os = "linux") {
        let shmem = report.min_shmem_kb.load(Ordering::SeqCst);
        let anon = report.max_anon_kb.load(Ordering::SeqCst);
        eprintln!("worker RssShmem + HugetlbPages >= {shmem} kB, RssAnon <= {anon} kB");
        assert!(
            shmem >= 1 << 20,
            "RssShmem + HugetlbPages {shmem} kB: the block is not mapped whole"
        );
        assert!(anon < 256 << 10, "RssAnon {anon} kB: the block was copied");
    }
}

/// A scenario (a fresh process that spawns nothing else meanwhile): while
/// another test thread's child is between its spawn and its exec, it
/// holds a copy of every fd of this process, the block's included.
#[cfg(target_os = "linux")]
#[test]
fn a_block_is_gone_once_the_last_process_let_go() {
    let out = common::scenario("scenario_block_gone", |_| {});
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("block gone"));
}

#[cfg(target_os = "linux")]
#[test]
#[ignore = "a scenario, run by a_block_is_gone_once_the_last_process_let_go"]
fn scenario_block_gone() {
    if !common::in_scenario("scenario_block_gone") {
        return;
    }
    let shm_before = dev_shm_names();
    let block = SharedMut::from_slice(&[5u64; 1000])
        .unwrap()
        .freeze()
        .unwrap();
    let ino = memfd_inode_at(std::process::id(), block.as_ptr() as usize).expect("our memfd");
    assert_eq!(
        holders(ino),
        [
            (std::process::id().to_string(), "maps"),
            (std::process::id().to_string(), "fd")
        ]
    );
    let seen = Process::spawn(inode_in_child, &block)
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(seen, Some(ino), "the child maps the same block");
    drop(block);
    assert_eq!(holders(ino), []);
    assert_eq!(dev_shm_names(), shm_before);
    println!("block gone");
}

#[cfg(target_os = "linux")]
#[test]
fn a_block_is_gone_when_its_creator_is_killed() {
    let shm_before = dev_shm_names();
    let (mine, theirs) = multiproc::Pipe::duplex().unwrap();
    let mut creator = Process::spawn(make_block_and_wait, theirs).unwrap();
    let (ino, workers): (Option<u64>, Vec<u32>) = mine.recv().unwrap();
    let ino = ino.expect("the creator's memfd");
    // The creator and both workers have it.
    let mut who: Vec<u32> = holders(ino)
        .iter()
        .map(|(p, _)| p.parse().unwrap())
        .collect();
    who.dedup();
    let mut expected = vec![creator.pid()];
    expected.extend(&workers);
    who.sort();
    expected.sort();
    assert_eq!(who, expected);

    creator.kill().unwrap();
    assert!(creator.join().unwrap_err().is_terminated());
    // Its workers die with it (kill_on_parent_death, the pool default).
    for pid in workers {
        assert!(
            multiproc::test_hooks::wait_pid_exit(pid, common::LONG).unwrap(),
            "worker {pid} still runs"
        );
    }
    assert_eq!(holders(ino), []);
    assert_eq!(dev_shm_names(), shm_before);
}

/// 1 000 blocks created, passed to a child and dropped (100 spawns of 10
/// blocks each): the fd/handle count and (Linux) the number of the blocks'
/// mappings return to where they started. A scenario: a fresh process, so
/// other tests' fds and mappings don't blur the counts.
#[test]
fn counts_return_to_their_start_after_a_thousand_blocks() {
    let out = common::scenario("scenario_a_thousand_blocks", |_| {});
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("blocks: counts back to start"));
}

#[test]
#[ignore = "a scenario, run by counts_return_to_their_start_after_a_thousand_blocks"]
fn scenario_a_thousand_blocks() {
    if !common::in_scenario("scenario_a_thousand_blocks") {
        return;
    }
    let census = || {
        while multiproc::test_hooks::settle() > 0 {
            std::thread::yield_now();
        }
        let handles = multiproc::test_hooks::open_handle_count().unwrap();
        // Linux only: under Wine this would read the Wine process's maps.
        // Only the blocks' own mappings (memfd "multiproc") count: the
        // allocator may map or unmap an arena for a thread at any time.
        let maps = cfg!(target_os = "linux")
            .then(|| {
                std::fs::read_to_string("/proc/self/maps")
                    .map(|m| m.lines().filter(|l| l.contains("/memfd:multiproc")).count())
            })
            .transpose()
            .unwrap();
        (handles, maps)
    };
    let round = |r: u64| {
        let blocks: Vec<Frozen<u64>> = (0..10)
            .map(|i| {
                SharedMut::from_slice(&[r * 10 + i; 512])
                    .unwrap()
                    .freeze()
                    .unwrap()
            })
            .collect();
        let got = Process::spawn(pass_blocks, &blocks)
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(got, (0..10).map(|i| r * 10 + i).sum::<u64>());
    };
    round(0); // warm-up: whatever a first spawn sets up once
    let start = census();
    for r in 1..=100 {
        round(r);
    }
    assert_eq!(census(), start, "after 1 000 blocks");
    println!("blocks: counts back to start: {start:?}");
}

#[test]
fn each_process_counts_in_its_slot_of_a_shared_array() {
    let slots = Shared::<[AtomicU64]>::zeroed(5).unwrap();
    let mut procs: Vec<_> = (0..4)
        .map(|i| Process::spawn(count_slots, (slots.clone(), i, 1_000 * (i as u64 + 1))).unwrap())
        .collect();
    for p in &mut procs {
        p.join().unwrap();
    }
    let got: Vec<u64> = slots.iter().map(|s| s.load(Ordering::SeqCst)).collect();
    assert_eq!(got, [1_000, 2_000, 3_000, 4_000, 10_000]);
}

#[test]
fn a_block_that_is_no_whole_number_of_atomics_is_refused() {
    let raw = SharedMemory::new(12).unwrap();
    let m = refusal!(
        forged_slots,
        ForgedBlock::new(raw_handle(&raw).unwrap(), 12, false)
    );
    assert!(
        m.contains("not a whole number of `core::sync::atomic::AtomicU64`"),
        "{m}"
    );
}
