//! Huge pages for shared blocks (Linux): a block of user data of at least
//! a huge page is made of them where the system has enough free ones, and
//! of base pages otherwise; a child reads the same bytes either way.
//!
//! These tests never change the system's pool (`/proc/sys/vm`): the one
//! that needs huge pages skips (and says so) when too few are free, the
//! fallback one always runs (it asks for more than the whole pool). They
//! have this binary to themselves so that no other test takes huge pages
//! from under them (test_shared's 1 GiB block would).
#![cfg(target_os = "linux")]

use multiproc::test_hooks::huge_page_refusal;
use multiproc::{Frozen, Process, SharedMut};

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

multiproc::entry!(read_all, read_ends);

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
/// made of base pages instead, and read the same in a child. Runs
/// whatever the pool.
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
    let mut block = SharedMut::<u64>::zeroed((1 << 20) / 8).unwrap();
    assert!(huge_page_refusal().is_none(), "no try for a 1 MiB block");
    block[0] = 5;
    let last = block.len() - 1;
    block[last] = 6;
    let block = block.freeze().unwrap();
    let got = Process::spawn(read_ends, &block).unwrap().join().unwrap();
    assert_eq!(got, (5, 6, (1 << 20) / 8, 4));
}
