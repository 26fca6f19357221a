//! Huge pages for shared blocks (Linux): a block of user data of at least
//! a huge page is made of reserved (hugetlb) ones where the system has
//! enough free, else its whole 2 MiB ranges are made transparent huge
//! pages (`MADV_COLLAPSE`) where the kernel and the memory rule allow, and
//! it is of base pages otherwise, or when asked (`Pages::Small`); a child
//! reads the same bytes either way.
//!
//! These tests never change the system's settings (`/proc/sys/vm`,
//! `/sys/kernel/mm`): the one that needs hugetlb pages skips (and says
//! so) when too few are free, the fallback one always runs (it asks for
//! more than the whole pool), and the transparent ones skip only where
//! the kernel can't collapse shared memory (before Linux 6.1, or
//! `shmem_enabled` = `deny`). They have this binary to themselves so that
//! no other test takes huge pages from under them (test_shared's 1 GiB
//! block would).
#![cfg(target_os = "linux")]

use multiproc::test_hooks::{collapse_outcome, huge_page_refusal, set_memory_available};
use multiproc::{Frozen, Pages, Process, SharedMut};

multiproc::test_support!();

mod common;

/// The line of /proc/self/smaps starting with `field` for the mapping
/// that contains `addr`, its number (kB).
fn smaps_kb(addr: usize, field: &str) -> u64 {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let mut inside = false;
    for line in smaps.lines() {
        if let Some((range, _)) = line.split_once(' ') {
            if let Some((lo, hi)) = range.split_once('-') {
                if let (Ok(lo), Ok(hi)) =
                    (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
                {
                    inside = lo <= addr && addr < hi;
                    continue;
                }
            }
        }
        if inside && line.starts_with(field) {
            return line.split_whitespace().nth(1).unwrap().parse().unwrap();
        }
    }
    panic!("no {field} for a mapping at {addr:#x} in smaps");
}

/// A field of /proc/meminfo (a count, or kB).
fn meminfo(field: &str) -> Option<u64> {
    let m = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = m.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Huge pages free and not reserved, now.
fn huge_pages_available() -> u64 {
    let free = meminfo("HugePages_Free:").unwrap_or(0);
    free.saturating_sub(meminfo("HugePages_Rsvd:").unwrap_or(0))
}

fn pattern(i: usize) -> u64 {
    (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 7
}

fn checksum(v: &[u64]) -> u64 {
    v.iter().enumerate().fold(0u64, |a, (i, &x)| {
        a.rotate_left(5) ^ x.wrapping_add(i as u64)
    })
}

/// In the child: the block's checksum and length, and the page size of
/// the child's own mapping of it (kB).
fn read_all(block: Frozen<u64>) -> (u64, usize, u64) {
    let kb = smaps_kb(block.as_ptr() as usize, "KernelPageSize:");
    (checksum(&block), block.len(), kb)
}

/// In the child: the block's first and last elements and length, and the
/// page size of its mapping (kB), reading nothing else (the block is
/// large and mostly never touched).
fn read_ends(block: Frozen<u64>) -> (u64, u64, usize, u64) {
    let kb = smaps_kb(block.as_ptr() as usize, "KernelPageSize:");
    (block[0], block[block.len() - 1], block.len(), kb)
}

/// In the child: the block's checksum and length, and how much of the
/// child's own mapping of it (kB) is mapped by whole 2 MiB pages after
/// reading it all.
fn read_all_pmd(block: Frozen<u64>) -> (u64, usize, u64) {
    let sum = checksum(&block);
    let pmd = smaps_kb(block.as_ptr() as usize, "ShmemPmdMapped:");
    (sum, block.len(), pmd)
}

multiproc::entry!(read_all, read_ends, read_all_pmd);

/// 5 MiB and 8 bytes (3 huge pages of 2 MiB), filled, frozen, read by a
/// child: every mapping of it (the writer's, the frozen one, the
/// child's) is of 2 MiB pages, and the child sees exactly the bytes and
/// the length written. Skips, saying so, where fewer than 3 are free.
#[test]
fn a_block_of_huge_pages_reads_exactly_in_a_child() {
    const PAGES: u64 = 3;
    let n = (5 << 20) / 8 + 1;
    let mut block = SharedMut::<u64>::zeroed(n).unwrap();
    if let Some(e) = huge_page_refusal() {
        // Only a pool that is short now excuses a refusal.
        let free = huge_pages_available();
        if matches!(e.raw_os_error(), Some(libc::ENOMEM | libc::ENOSPC)) && free < PAGES {
            println!(
                "skipped: {PAGES} free huge pages needed, {free} free ({e}); reserve some \
                 with `echo 8 > /proc/sys/vm/nr_hugepages` as root"
            );
            return;
        }
        panic!("huge pages refused while {free} are free: {e}");
    }
    assert_eq!(smaps_kb(block.as_ptr() as usize, "KernelPageSize:"), 2048);
    for (i, x) in block.iter_mut().enumerate() {
        *x = pattern(i);
    }
    let expected = checksum(&block);
    let block = block.freeze().unwrap();
    assert_eq!(block.len(), n, "the block's length is not rounded up");
    assert_eq!(smaps_kb(block.as_ptr() as usize, "KernelPageSize:"), 2048);
    assert_eq!(checksum(&block), expected);
    let got = Process::spawn(read_all, &block).unwrap().join().unwrap();
    assert_eq!(got, (expected, n, 2048));
}

/// A block of more huge pages than the whole pool could ever give (its
/// total and its overcommit): refused at the reservation (`ENOMEM`),
/// made of a base-page memfd instead (4 KiB pages as the mapping's
/// kernel page size, whether or not its first 2 MiB became a transparent
/// huge page), and read the same in a child. Runs whatever the pool.
#[test]
fn a_block_the_pool_cant_give_falls_back_to_base_pages() {
    let overcommit = std::fs::read_to_string("/proc/sys/vm/nr_overcommit_hugepages")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let huge_kb = meminfo("Hugepagesize:");
    let pages = meminfo("HugePages_Total:").unwrap_or(0) + overcommit + 1;
    let bytes = pages * huge_kb.unwrap_or(2048) * 1024;
    let n = usize::try_from(bytes / 8 + 1).unwrap();
    let mut block = SharedMut::<u64>::zeroed(n).unwrap();
    let refusal = huge_page_refusal().expect("a refusal: the pool is too small");
    if huge_kb == Some(2048) {
        // hugetlb memfds are there; the pool said no before any page was
        // allocated.
        assert_eq!(refusal.raw_os_error(), Some(libc::ENOMEM), "{refusal}");
    }
    assert_eq!(smaps_kb(block.as_ptr() as usize, "KernelPageSize:"), 4);
    block[0] = 11;
    block[n - 1] = 13;
    let block = block.freeze().unwrap();
    assert_eq!(smaps_kb(block.as_ptr() as usize, "KernelPageSize:"), 4);
    let got = Process::spawn(read_ends, &block).unwrap().join().unwrap();
    assert_eq!(got, (11, 13, n, 4));
}

/// A block under 2 MiB never tries huge pages (so leaves no refusal), and
/// is of base pages in the child too.
#[test]
fn a_small_block_is_of_base_pages() {
    let _ = huge_page_refusal();
    let _ = collapse_outcome();
    let mut block = SharedMut::<u64>::zeroed((1 << 20) / 8).unwrap();
    assert!(huge_page_refusal().is_none(), "no try for a 1 MiB block");
    assert!(collapse_outcome().is_none(), "no collapse of a 1 MiB block");
    block[0] = 5;
    let last = block.len() - 1;
    block[last] = 6;
    let block = block.freeze().unwrap();
    let got = Process::spawn(read_ends, &block).unwrap().join().unwrap();
    assert_eq!(got, (5, 6, (1 << 20) / 8, 4));
}

const HUGE: usize = 2 << 20;

/// 64 MiB and a tail of 4 KiB and 8 bytes, in `u64`s: 32 whole 2 MiB
/// ranges (65 536 kB) and a tail that stays of 4 KiB pages.
const N: usize = (64 << 20) / 8 + 513;
const WHOLE_KB: u64 = 64 << 10;

/// The kernel's shared-memory THP setting (the bracketed word of
/// /sys/kernel/mm/transparent_hugepage/shmem_enabled), or "n/a".
fn shmem_enabled() -> String {
    std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/shmem_enabled")
        .ok()
        .and_then(|s| Some(s.split_once('[')?.1.split_once(']')?.0.to_string()))
        .unwrap_or_else(|| "n/a".into())
}

/// Whether the administrator's setting may give shared memory huge pages
/// nobody asked for (then a block of `Pages::Small` may have some).
fn shmem_huge_by_default() -> bool {
    matches!(shmem_enabled().as_str(), "always" | "within_size" | "force")
}

/// The probe: whether this kernel collapses shared memory into huge pages
/// (`MADV_COLLAPSE`, Linux 6.1, not under `shmem_enabled` = `deny`),
/// tried on a block of one huge page. `false` (printing why the test is
/// skipped) only where the kernel lacks it; any other refusal fails the
/// test. `None`: the block got hugetlb pages, so nothing was probed.
fn collapse_works_here() -> Option<bool> {
    let _ = huge_page_refusal();
    let _ = collapse_outcome();
    let _block = SharedMut::<u8>::zeroed(HUGE).unwrap();
    // No refusal: hugetlb pages, nothing to probe.
    huge_page_refusal()?;
    match collapse_outcome().expect("a 2 MiB block of base pages tries a collapse") {
        Ok(()) => Some(true),
        Err(e) => {
            let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
            let mut v = release
                .trim()
                .split(['.', '-'])
                .map(|x| x.parse::<u32>().ok());
            let (major, minor) = (v.next().flatten(), v.next().flatten());
            let old = matches!((major, minor), (Some(a), Some(b)) if (a, b) < (6, 1));
            let deny = shmem_enabled() == "deny";
            if e.raw_os_error() == Some(libc::EINVAL) && (old || deny) {
                println!(
                    "skipped: no MADV_COLLAPSE of shared memory on kernel {} (shmem_enabled {}): {e}",
                    release.trim(),
                    shmem_enabled()
                );
                return Some(false);
            }
            panic!(
                "MADV_COLLAPSE refused on kernel {} (shmem_enabled {}): {e}",
                release.trim(),
                shmem_enabled()
            );
        }
    }
}

/// A block of 64 MiB and a tail, not of hugetlb pages (none free here):
/// its whole 2 MiB ranges become transparent huge pages at creation, so
/// the writer's mapping, the frozen one and a child's map all 32 of them
/// by whole 2 MiB pages (ShmemPmdMapped: 65 536 kB, the tail not), and
/// the child reads exactly the bytes written.
#[test]
fn a_frozen_block_is_mapped_by_huge_pages_in_a_child() {
    let Some(true) = collapse_works_here() else {
        return println!("skipped: hugetlb pages or no collapse here (see above)");
    };
    let _ = collapse_outcome();
    let mut block = SharedMut::<u64>::zeroed(N).unwrap();
    assert!(
        huge_page_refusal().is_some(),
        "no hugetlb pages for 64 MiB here"
    );
    collapse_outcome()
        .expect("a collapse was tried")
        .expect("and it worked, as the probe's");
    for (i, x) in block.iter_mut().enumerate() {
        *x = pattern(i);
    }
    let at = block.as_ptr() as usize;
    assert_eq!(
        at % HUGE,
        0,
        "the writer's mapping starts at a 2 MiB boundary"
    );
    assert_eq!(smaps_kb(at, "ShmemPmdMapped:"), WHOLE_KB);
    let expected = checksum(&block);
    let block = block.freeze().unwrap();
    assert_eq!(checksum(&block), expected);
    let at = block.as_ptr() as usize;
    assert_eq!(at % HUGE, 0, "the frozen mapping too");
    assert_eq!(smaps_kb(at, "ShmemPmdMapped:"), WHOLE_KB);
    let got = Process::spawn(read_all_pmd, &block)
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(got, (expected, N, WHOLE_KB));
}

/// `Pages::Small`: no huge pages tried (neither hugetlb nor a collapse),
/// so no mapping of it has a 2 MiB page, the child's included; the child
/// reads exactly the bytes written.
#[test]
fn a_block_of_small_pages_has_no_huge_page_anywhere() {
    let _ = huge_page_refusal();
    let _ = collapse_outcome();
    let mut block = SharedMut::<u64>::zeroed_with_pages(N, Pages::Small).unwrap();
    assert!(huge_page_refusal().is_none(), "no hugetlb try");
    assert!(collapse_outcome().is_none(), "no collapse");
    for (i, x) in block.iter_mut().enumerate() {
        *x = pattern(i);
    }
    let expected = checksum(&block);
    let block = block.freeze().unwrap();
    assert_eq!(smaps_kb(block.as_ptr() as usize, "KernelPageSize:"), 4);
    let (sum, len, pmd) = Process::spawn(read_all_pmd, &block)
        .unwrap()
        .join()
        .unwrap();
    assert_eq!((sum, len), (expected, N));
    if shmem_huge_by_default() {
        println!(
            "the administrator's shmem_enabled ({}) may give it huge pages",
            shmem_enabled()
        );
    } else {
        assert_eq!(pmd, 0, "no 2 MiB page in the child");
        assert_eq!(smaps_kb(block.as_ptr() as usize, "ShmemPmdMapped:"), 0);
    }
}

/// The memory rule: a block takes huge pages at creation only if its
/// whole 2 MiB ranges are at most half of the memory available. With
/// 128 MiB - 1 available (this thread's view, the test hook), 64 MiB is
/// refused (`OutOfMemory`) and keeps 4 KiB pages, in the child too, which
/// reads the bytes written; with 128 MiB it is collapsed.
#[test]
fn a_block_over_half_of_the_memory_available_keeps_small_pages() {
    let works = collapse_works_here();
    set_memory_available(Some(2 * (WHOLE_KB << 10) - 1));
    let _ = collapse_outcome();
    let made = SharedMut::<u64>::zeroed(N);
    let outcome = collapse_outcome();
    set_memory_available(None);
    let mut block = made.unwrap();
    if works.is_none() {
        return println!("skipped: the block got hugetlb pages");
    }
    let e = outcome.expect("a collapse was tried").unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::OutOfMemory, "{e}");
    assert!(e.to_string().contains("more than half"), "{e}");
    for (i, x) in block.iter_mut().enumerate() {
        *x = pattern(i);
    }
    let expected = checksum(&block);
    let block = block.freeze().unwrap();
    let (sum, len, pmd) = Process::spawn(read_all_pmd, &block)
        .unwrap()
        .join()
        .unwrap();
    assert_eq!((sum, len), (expected, N));
    if !shmem_huge_by_default() {
        assert_eq!(pmd, 0, "no 2 MiB page in the child");
    }
    drop(block);

    set_memory_available(Some(2 * (WHOLE_KB << 10)));
    let _ = collapse_outcome();
    let made = SharedMut::<u64>::zeroed(N);
    let outcome = collapse_outcome();
    set_memory_available(None);
    made.unwrap();
    if works == Some(true) {
        outcome
            .expect("a collapse was tried")
            .expect("at exactly half, allowed");
    }
}
