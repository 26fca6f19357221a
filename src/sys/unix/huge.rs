//! Huge pages for anonymous shared memory (Linux): the part of `shm.rs`
//! that makes a block of user data (`ShmPages::HugeIfFree`) of them.
//!
//! A block of user data of at least one huge page is first tried as a hugetlb memfd (`MFD_HUGETLB`, the
//! system's default huge page size, 2 MiB on x86-64), whose pages come
//! from the pool the administrator reserved (`vm.nr_hugepages`): every
//! process that maps it then maps 512 times fewer pages, which is what
//! a child reading a large `Frozen` block pays for (docs/benchmarks.md,
//! "broadcast"). A hugetlbfs file's size is whole huge pages
//! (`ftruncate` to anything else is `EINVAL`), so the block's file is
//! its length rounded up, while the block's length stays what was asked.
//! Its pages are reserved (a shared mapping reserves them, or fails with
//! `ENOMEM` when the pool is short, before anything is zeroed) and then
//! allocated (`fallocate`, which fails with `ENOSPC` where a hugetlb
//! cgroup limit says no, instead of a SIGBUS at a later fault). Any
//! refusal falls back to the base-page memfd: a missing pool is never an
//! error. Sealing works the same on hugetlb memfds (since Linux 4.16). A
//! received block on hugetlbfs must have exactly its length rounded up
//! to its huge pages, all of them allocated (so reading it can't fault
//! on a page the pool can't give), and is mapped whole (a hugetlb
//! mapping is unmapped in whole huge pages).
//!
//! Otherwise, transparent huge pages: the block is a base-page memfd, and
//! its whole 2 MiB ranges (a tail under 2 MiB stays of 4 KiB pages) are
//! made huge pages at creation, before anything is written, with
//! `MADV_COLLAPSE` (`collapse`). For shared memory it ignores the
//! system's THP settings (`shmem_enabled`, tmpfs `huge=`) but `deny`
//! (mm/khugepaged.c, `madvise_collapse`; Documentation/admin-guide/mm/
//! transhuge.rst), so it works under `never`, the usual default; it
//! exists for shmem since Linux 6.1 (`EINVAL` before; also under `deny`,
//! and where `prctl(PR_SET_THP_DISABLE)` is set). It needs a page in each
//! range (`EINVAL` on an empty one), so one byte per range is written
//! first; the collapse then allocates each huge page, zeroed, and moves
//! that byte's page into it (a range already written would be copied:
//! slower, hence at creation). Every mapping of the block at a 2 MiB
//! boundary (`map_aligned`; `shm_map` maps every base-page block of
//! 2 MiB or more so, the creator's, the frozen ones and a receiver's)
//! then maps those pages whole, a page-table entry per 2 MiB, at its
//! first touch of each, whatever the system's settings (mm/memory.c
//! `do_set_pmd`, measured on 6.18: a child's first pass over 1 GiB made
//! 512 faults instead of 262 144).
//!
//! The cost: the block's memory is taken now rather than at its first
//! write, as for hugetlb. So the memory rule (`memory_allows`): a block
//! is collapsed only if its whole ranges are at most half of the memory
//! available (`MemAvailable`, and the room under this process's cgroup
//! v2 limit where it has one), so that a large block used sparsely
//! (`SharedMemory` of 1 TiB, a few pages written) keeps 4 KiB pages
//! instead of taking memory the system doesn't have. Any refusal — the
//! rule, the kernel's (`EINVAL`, `ENOMEM` when no huge page can be
//! allocated or charged, `EAGAIN` twice) — leaves the block of 4 KiB
//! pages, logged at debug level, never an error; a refusal part way
//! leaves some ranges huge and the others not.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::OnceLock;

use rustix::mm::{MapFlags, ProtFlags};

use super::shm::{invalid, ShmView};

/// hugetlbfs's `f_type` (`HUGETLBFS_MAGIC`, linux/magic.h).
const HUGETLBFS_MAGIC: u32 = 0x9584_58f6;

/// The huge page size of the file behind `fd` if it is on hugetlbfs
/// (statfs(2): `f_bsize` is the huge page size there); `None` otherwise.
pub(super) fn huge_page_size(fd: BorrowedFd<'_>) -> io::Result<Option<usize>> {
    let st = rustix::fs::fstatfs(fd)?;
    // `f_type` is a signed word of the platform's width; the magic is 32
    // bits.
    if st.f_type as u32 != HUGETLBFS_MAGIC {
        return Ok(None);
    }
    usize::try_from(st.f_bsize)
        .ok()
        .filter(|p| p.is_power_of_two())
        .map(Some)
        .ok_or_else(|| invalid(format!("hugetlbfs reports a page size of {}", st.f_bsize)))
}

/// A block of `len` bytes (at least a huge page) of huge pages, its file
/// `len` rounded up to whole huge pages, every page allocated (zeroed)
/// and sealed against resizing; the first refusal otherwise (module
/// docs), having taken nothing from the pool.
pub(super) fn huge_block(len: usize) -> io::Result<OwnedFd> {
    use rustix::fs::{FallocateFlags, MemfdFlags, SealFlags};
    use std::os::fd::AsFd;
    let fd = rustix::fs::memfd_create(
        "multiproc",
        MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING | MemfdFlags::HUGETLB,
    )?;
    let page = huge_page_size(fd.as_fd())?
        .ok_or_else(|| io::Error::other("an MFD_HUGETLB memfd that is not on hugetlbfs"))?;
    if len < page {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{len} bytes is less than a huge page ({page} bytes)"),
        ));
    }
    let size = len
        .checked_next_multiple_of(page)
        .ok_or_else(|| io::Error::other("a block's size overflows in huge pages"))?;
    rustix::fs::ftruncate(&fd, size as u64)?;
    reserve_huge_pages(fd.as_fd(), size)?;
    rustix::fs::fallocate(&fd, FallocateFlags::empty(), 0, size as u64)?;
    rustix::fs::fcntl_add_seals(&fd, SealFlags::SHRINK | SealFlags::GROW)?;
    Ok(fd)
}

/// Reserves the `size` bytes of huge pages of the hugetlbfs file `fd`: a
/// shared mapping takes the pages the file lacks from the pool's free
/// ones, for the file, or fails with `ENOMEM` if there are too few; the
/// reservation stays with the file after the mapping is gone
/// (`hugetlb_reserve_pages`; kernel Documentation/mm/hugetlbfs_reserv.rst
/// on shared mappings, and measured: `HugePages_Rsvd` holds them until
/// `fallocate` takes them). Cheap either way: nothing is allocated or
/// zeroed yet.
fn reserve_huge_pages(fd: BorrowedFd<'_>, size: usize) -> io::Result<()> {
    // SAFETY: a new mapping (null hint: the kernel picks a free range), so
    // no existing memory is affected; it is never read.
    let p = unsafe {
        rustix::mm::mmap(
            std::ptr::null_mut(),
            size,
            ProtFlags::READ,
            MapFlags::SHARED,
            fd,
            0,
        )
    }?;
    // SAFETY: exactly the mapping just made (a whole number of huge
    // pages), which nothing has seen.
    unsafe { rustix::mm::munmap(p, size) }?;
    Ok(())
}

/// The size of a (transparent) huge page on x86-64 and most Linux
/// targets: below it a block is not tried as huge pages at all.
pub(super) const HUGE_PAGE: usize = 2 << 20;

/// `MADV_COLLAPSE` (include/uapi/asm-generic/mman-common.h): not in
/// rustix's `Advice`, and in libc only for some targets.
const MADV_COLLAPSE: libc::c_int = 25;

/// Makes the whole 2 MiB ranges of the new base-page memfd `fd` (`len`
/// bytes, at least `HUGE_PAGE`, nothing written yet) transparent huge
/// pages, now (module docs): the memory check first, then a writable
/// mapping of them at a 2 MiB boundary, one byte written in each range
/// (`MADV_COLLAPSE` fails with `EINVAL` on a range with nothing in it),
/// and `MADV_COLLAPSE` over them, which allocates a zeroed huge page for
/// each range and puts the byte's page into it. The mapping is gone on
/// return; the pages stay with the file, and every later mapping of it at
/// a 2 MiB boundary maps them whole (a page-table entry per 2 MiB). The
/// refusal otherwise (the memory rule's, or `madvise`'s: then some ranges
/// may be huge pages and others not, which changes nothing for the
/// block's users). Assumes 2 MiB is the PMD size (x86-64, arm64 with
/// 4 KiB pages); elsewhere the kernel refuses and the block stays small.
pub(super) fn collapse(fd: BorrowedFd<'_>, len: usize) -> io::Result<()> {
    let whole = len - len % HUGE_PAGE;
    memory_allows(whole)?;
    let view = map_aligned(fd, whole, ProtFlags::READ | ProtFlags::WRITE)?;
    for at in (0..whole).step_by(HUGE_PAGE) {
        // SAFETY: in bounds of the writable mapping just made of a block
        // that is new and only this thread has; the byte was zero (a new
        // memfd), and stays zero.
        unsafe { view.as_ptr().add(at).write_volatile(0) };
    }
    let mut again = true;
    loop {
        // SAFETY: exactly the mapping made above; MADV_COLLAPSE changes
        // which pages back it, never what they hold (madvise(2)).
        let r = unsafe { libc::madvise(view.as_ptr().cast(), whole, MADV_COLLAPSE) };
        if r == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        // EAGAIN: a page was busy for a moment (madvise(2)): once more.
        if e.raw_os_error() != Some(libc::EAGAIN) || !again {
            return Err(e);
        }
        again = false;
    }
}

/// Maps `len` bytes of `fd` (shared, `prot`) at an address that is a
/// multiple of `HUGE_PAGE`, so that each 2 MiB of the file that is a huge
/// page can be mapped by one page-table entry: shmem's own choice of
/// address aligns only where `shmem_enabled` allows huge pages (mm/shmem.c
/// `shmem_get_unmapped_area`), not under `never`, the usual default. The
/// address space is reserved first (`len` + 2 MiB, inaccessible), the
/// block mapped over it at the boundary (`MAP_FIXED`), and the rest of
/// the reservation unmapped. `fd` must have `len` bytes.
pub(super) fn map_aligned(fd: BorrowedFd<'_>, len: usize, prot: ProtFlags) -> io::Result<ShmView> {
    let span = len
        .checked_add(HUGE_PAGE)
        .ok_or_else(|| io::Error::other("a mapping's length overflows"))?;
    // SAFETY: a new anonymous mapping (null hint: the kernel picks a free
    // range), inaccessible and not accounted (no write access, no
    // reserve): only address space, which no existing memory shares.
    let base = unsafe {
        rustix::mm::mmap_anonymous(
            std::ptr::null_mut(),
            span,
            ProtFlags::empty(),
            MapFlags::PRIVATE | MapFlags::NORESERVE,
        )
    }?;
    let head = (base as usize).wrapping_neg() % HUGE_PAGE;
    let tail = span - head - len;
    let at = base.cast::<u8>().wrapping_add(head);
    // SAFETY: `[at, at + len)` lies inside the reservation just made
    // (`head + len <= span`), which nothing else uses, so MAP_FIXED
    // replaces nothing but it; the file has `len` bytes (the caller's
    // contract), so every byte of the mapping is backed.
    let mapped = unsafe {
        rustix::mm::mmap(
            at.cast(),
            len,
            prot,
            MapFlags::SHARED | MapFlags::FIXED,
            fd,
            0,
        )
    };
    if let Err(e) = mapped {
        // SAFETY: exactly the reservation (whatever of it a failed
        // MAP_FIXED left), which nothing else uses.
        let _ = unsafe { rustix::mm::munmap(base, span) };
        return Err(e.into());
    }
    let ptr = NonNull::new(at).ok_or_else(|| io::Error::other("mmap returned null"))?;
    let view = ShmView { ptr, len };
    if head > 0 {
        // SAFETY: the part of the reservation before the block's mapping,
        // which nothing uses. A failure leaves address space reserved,
        // nothing else.
        let _ = unsafe { rustix::mm::munmap(base, head) };
    }
    if tail > 0 {
        // SAFETY: the part of the reservation after the block's mapping.
        let _ = unsafe { rustix::mm::munmap(at.wrapping_add(len).cast(), tail) };
    }
    Ok(view)
}

/// The memory rule for `collapse` (module docs): `bytes` of huge pages
/// taken now only if that is at most half of the memory available; an
/// `OutOfMemory` error saying so otherwise.
fn memory_allows(bytes: usize) -> io::Result<()> {
    let available = available_memory()?;
    if bytes as u64 > available / 2 {
        return Err(io::Error::new(
            io::ErrorKind::OutOfMemory,
            format!(
                "{bytes} bytes of huge pages now would be more than half of the {available} \
                 bytes of memory available"
            ),
        ));
    }
    Ok(())
}

/// The memory this process can have without the system or its cgroup
/// reclaiming or killing for it, in bytes: `MemAvailable` of
/// /proc/meminfo (the kernel's own estimate: free memory and what it can
/// reclaim without swapping), and no more than its cgroup's room where
/// that has a limit (`cgroup_room`).
fn available_memory() -> io::Result<u64> {
    #[cfg(feature = "test-hooks")]
    if let Some(bytes) = hooks::memory_available() {
        return Ok(bytes);
    }
    let meminfo = std::fs::read_to_string("/proc/meminfo")?;
    let kb = kb_field(&meminfo, "MemAvailable:")
        .ok_or_else(|| io::Error::other("no MemAvailable in /proc/meminfo"))?;
    let available = kb.saturating_mul(1024);
    Ok(cgroup_room().map_or(available, |room| available.min(room)))
}

/// The number after `field` at the start of a line of `text` (a kB
/// figure of /proc/meminfo, or a byte count of a cgroup's memory.stat).
fn kb_field(text: &str, field: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(field))?;
    line[field.len()..].split_whitespace().next()?.parse().ok()
}

/// How much more memory this process's cgroup (v2) may take before its
/// limit (`memory.max`): the limit less what it holds (`memory.current`),
/// counting its page cache but shared memory (memory.stat's `file` less
/// `shmem`) as room, since the kernel reclaims that first. `None` without
/// a limit, without cgroup v2's memory controller, or where the files
/// can't be read. Only the process's own cgroup is read (a limit set on
/// an ancestor alone is not seen), and its path once per process.
fn cgroup_room() -> Option<u64> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    let dir = DIR
        .get_or_init(|| {
            let cgroups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
            let path = cgroups.lines().find_map(|l| l.strip_prefix("0::"))?;
            Some(Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/')))
        })
        .as_ref()?;
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).ok();
    // "max" (no limit) doesn't parse: no room to compute.
    let max: u64 = read("memory.max")?.trim().parse().ok()?;
    let current: u64 = read("memory.current")?.trim().parse().ok()?;
    let stat = read("memory.stat").unwrap_or_default();
    let cache = kb_field(&stat, "file ")
        .unwrap_or(0)
        .saturating_sub(kb_field(&stat, "shmem ").unwrap_or(0));
    Some(max.saturating_sub(current.saturating_sub(cache)))
}

/// Test hooks: how this thread's last block that could have been of huge
/// pages went (hugetlb, then the collapse); no huge pages for this
/// thread's blocks; the memory this thread's blocks see as available.
#[cfg(feature = "test-hooks")]
pub(crate) mod hooks {
    use std::cell::{Cell, RefCell};
    use std::io;

    thread_local! {
        static REFUSAL: RefCell<Option<io::Error>> = const { RefCell::new(None) };
        static COLLAPSE: RefCell<Option<io::Result<()>>> = const { RefCell::new(None) };
        static ALLOWED: Cell<bool> = const { Cell::new(true) };
        static AVAILABLE: Cell<Option<u64>> = const { Cell::new(None) };
    }

    /// Whether blocks this thread creates may be of huge pages (default:
    /// yes), for a bench that compares both kinds in one run.
    pub(crate) fn set_huge_pages(allowed: bool) {
        ALLOWED.with(|a| a.set(allowed));
    }

    pub(crate) fn huge_pages_allowed() -> bool {
        ALLOWED.with(Cell::get)
    }

    /// Notes how this thread's last try for hugetlb pages went (`None`:
    /// it got them), and that no collapse was tried after it (yet).
    pub(crate) fn note(refusal: Option<io::Error>) {
        REFUSAL.with(|r| *r.borrow_mut() = refusal);
        COLLAPSE.with(|c| *c.borrow_mut() = None);
    }

    /// Notes how this thread's last collapse went.
    pub(crate) fn note_collapse(outcome: io::Result<()>) {
        COLLAPSE.with(|c| *c.borrow_mut() = Some(outcome));
    }

    /// Why the last block this thread created that could have been of
    /// huge pages (user data of at least 2 MiB, Linux) is not of hugetlb
    /// pages: the refusal of the first step that failed (`ENOMEM`: the
    /// pool had too few free pages to reserve). `None` if it is, or if
    /// there was none.
    pub(crate) fn huge_page_refusal() -> Option<io::Error> {
        REFUSAL.with(|r| r.borrow_mut().take())
    }

    /// How the transparent huge pages of the last block this thread
    /// created that could have been of huge pages went (the hugetlb try
    /// failed, Linux): `Some(Ok(()))` collapsed, `Some(Err(e))` refused
    /// (an `OutOfMemory` error: the memory rule; else `madvise`'s error),
    /// `None` not tried (or no such block since the last call: each call
    /// takes the note).
    pub fn collapse_outcome() -> Option<io::Result<()>> {
        COLLAPSE.with(|c| c.borrow_mut().take())
    }

    /// From now on, blocks this thread creates take `bytes` (`None`: the
    /// system's figure, the default) as the memory available for the
    /// memory rule of transparent huge pages (a block takes them only if
    /// its whole 2 MiB ranges are at most half of it).
    pub fn set_memory_available(bytes: Option<u64>) {
        AVAILABLE.with(|a| a.set(bytes));
    }

    pub(crate) fn memory_available() -> Option<u64> {
        AVAILABLE.with(Cell::get)
    }
}

#[cfg(test)]
mod tests {
    use super::super::shm::tests::refused;
    use super::super::shm::{shm_create, shm_freeze, shm_map};
    use super::*;
    use crate::sys::{ShmAccess, ShmPages};

    use std::os::fd::AsFd;

    /// The line starting with `field` of the mapping that starts at
    /// `addr`, from /proc/self/smaps.
    #[cfg(target_os = "linux")]
    fn smaps_line(addr: *mut u8, field: &str) -> String {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let start = format!("{:x}-", addr as usize);
        let entry = smaps
            .split_once(&format!("\n{start}"))
            .map(|(_, rest)| rest)
            .unwrap_or_else(|| panic!("no mapping at {start} in smaps"));
        let line = entry.lines().find(|l| l.starts_with(field)).unwrap();
        line.to_string()
    }

    /// The `KernelPageSize` of the mapping that starts at `addr`, in kB.
    #[cfg(target_os = "linux")]
    fn kernel_page_kb(addr: *mut u8) -> u64 {
        let line = smaps_line(addr, "KernelPageSize:");
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// A field of /proc/meminfo (a count, or kB).
    #[cfg(target_os = "linux")]
    fn meminfo(field: &str) -> Option<u64> {
        let m = std::fs::read_to_string("/proc/meminfo").ok()?;
        let line = m.lines().find(|l| l.starts_with(field))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    /// Huge pages free and not reserved, now.
    #[cfg(target_os = "linux")]
    fn huge_pages_available() -> u64 {
        let free = meminfo("HugePages_Free:").unwrap_or(0);
        free.saturating_sub(meminfo("HugePages_Rsvd:").unwrap_or(0))
    }

    /// `huge_block(len)`, or `None` (printing why the test is skipped)
    /// where the pool has fewer than `pages` free, now that it refused.
    /// Any other refusal fails the test.
    #[cfg(target_os = "linux")]
    fn huge_block_if_free(len: usize, pages: u64) -> Option<OwnedFd> {
        match huge_block(len) {
            Ok(fd) => Some(fd),
            Err(e)
                if matches!(e.raw_os_error(), Some(libc::ENOMEM | libc::ENOSPC))
                    && huge_pages_available() < pages =>
            {
                println!(
                    "skipped: {pages} free huge pages needed, {} free ({e}); \
                     reserve some with `echo 8 > /proc/sys/vm/nr_hugepages` as root",
                    huge_pages_available()
                );
                None
            }
            Err(e) => panic!(
                "huge pages refused while {} free: {e}",
                huge_pages_available()
            ),
        }
    }

    /// Needs 2 free huge pages of 2 MiB: skips (and says so) without.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_block_of_huge_pages_is_whole_pages_and_seals_like_base_pages() {
        let len = 3 * (1 << 20) + 5;
        let Some(fd) = huge_block_if_free(len, 2) else {
            return;
        };
        let st = rustix::fs::fstat(&fd).unwrap();
        assert_eq!(st.st_size, 4 << 20, "the file is whole huge pages");
        assert_eq!(st.st_blocks * 512, 4 << 20, "every page allocated");
        let v = shm_map(fd.as_fd(), len, ShmAccess::ReadWrite).unwrap();
        assert_eq!(kernel_page_kb(v.as_ptr()), 2048);
        assert_eq!(v.len, 4 << 20, "mapped (and unmapped) in whole pages");
        // SAFETY: in bounds of a writable mapping only this test has.
        unsafe { v.as_ptr().add(len - 1).write(7) };
        // Frozen: F_SEAL_WRITE works on a hugetlb memfd (Linux 4.16+),
        // once no writable mapping is left.
        assert_eq!(
            shm_freeze(fd.try_clone().unwrap())
                .unwrap_err()
                .raw_os_error(),
            Some(libc::EBUSY)
        );
        drop(v);
        let fd = shm_freeze(fd).unwrap();
        let ro = shm_map(fd.as_fd(), len, ShmAccess::ReadOnly).unwrap();
        // SAFETY: in bounds; frozen, so nothing writes it.
        assert_eq!(unsafe { ro.as_ptr().add(len - 1).read() }, 7);
        assert_eq!(kernel_page_kb(ro.as_ptr()), 2048);
        refused(shm_map(fd.as_fd(), len, ShmAccess::ReadWrite));
        // Lengths that round up to these 2 pages pass, others don't.
        shm_map(fd.as_fd(), 4 << 20, ShmAccess::ReadOnly).unwrap();
        let m = refused(shm_map(fd.as_fd(), 2 << 20, ShmAccess::ReadOnly));
        assert!(m.contains("huge pages"), "{m}");
        refused(shm_map(fd.as_fd(), (4 << 20) + 1, ShmAccess::ReadOnly));
    }

    /// Runs wherever hugetlb memfds can be made, with or without a pool.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_huge_page_block_with_pages_missing_or_resizable_is_refused() {
        use rustix::fs::{MemfdFlags, SealFlags};
        let flags = MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING | MemfdFlags::HUGETLB;
        let fd = match rustix::fs::memfd_create("x", flags) {
            Ok(fd) => fd,
            Err(e) => return println!("skipped: no hugetlb memfd here ({e})"),
        };
        assert_eq!(huge_page_size(fd.as_fd()).unwrap(), Some(2 << 20));
        rustix::fs::ftruncate(&fd, 4 << 20).unwrap();
        let m = refused(shm_map(fd.as_fd(), 4 << 20, ShmAccess::ReadWrite));
        assert!(m.contains("resizing"), "{m}");
        rustix::fs::fcntl_add_seals(&fd, SealFlags::SHRINK | SealFlags::GROW).unwrap();
        // No page allocated: a read would take one from the pool, which
        // can fail as a SIGBUS.
        let m = refused(shm_map(fd.as_fd(), 4 << 20, ShmAccess::ReadWrite));
        assert!(m.contains("0 of its 4194304 bytes allocated"), "{m}");
        let m = refused(shm_map(fd.as_fd(), 1 << 20, ShmAccess::ReadWrite));
        assert!(
            m.contains("has 4194304 bytes, its wire form says 1048576"),
            "{m}"
        );
    }

    /// Runs always: a block larger than the whole pool (its total and its
    /// overcommit) is refused at the reservation, before anything is
    /// zeroed, and made of base pages instead.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_block_the_pool_cant_give_is_of_base_pages() {
        let overcommit = std::fs::read_to_string("/proc/sys/vm/nr_overcommit_hugepages")
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(0);
        let pages = meminfo("HugePages_Total:").unwrap_or(0) + overcommit + 1;
        let len = usize::try_from(pages * (2 << 20) + 8).unwrap();
        if let Ok(fd) = rustix::fs::memfd_create(
            "x",
            rustix::fs::MemfdFlags::CLOEXEC | rustix::fs::MemfdFlags::HUGETLB,
        ) {
            if huge_page_size(fd.as_fd()).unwrap() == Some(2 << 20) {
                let e = huge_block(len).unwrap_err();
                assert_eq!(e.raw_os_error(), Some(libc::ENOMEM), "{e}");
            }
        }
        let fd = shm_create(len, ShmPages::HugeIfFree).unwrap();
        assert_eq!(huge_page_size(fd.as_fd()).unwrap(), None);
        assert_eq!(rustix::fs::fstat(&fd).unwrap().st_size as usize, len);
        let v = shm_map(fd.as_fd(), len, ShmAccess::ReadWrite).unwrap();
        assert_eq!(kernel_page_kb(v.as_ptr()), 4);
        assert_eq!(v.len, len);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn large_mappings_start_at_a_huge_page_boundary() {
        let len = 2 * HUGE_PAGE + 4096;
        let fd = shm_create(len, ShmPages::Base).unwrap();
        let v = shm_map(fd.as_fd(), len, ShmAccess::ReadWrite).unwrap();
        assert_eq!(v.as_ptr() as usize % HUGE_PAGE, 0);
        assert_eq!(v.len, len, "the block, no more");
        drop(v);
        let fd = shm_freeze(fd).unwrap();
        let ro = shm_map(fd.as_fd(), len, ShmAccess::ReadOnly).unwrap();
        assert_eq!(ro.as_ptr() as usize % HUGE_PAGE, 0);
        assert_eq!(ro.len, len);
    }

    /// Skips (and says so) where the kernel can't collapse shared memory
    /// (`EINVAL`: before Linux 6.1, or `shmem_enabled` = `deny`) or has
    /// no huge page to give now (`ENOMEM`).
    #[cfg(target_os = "linux")]
    #[test]
    fn a_collapsed_block_is_of_huge_pages_in_later_mappings_and_seals_as_any() {
        let len = 2 * HUGE_PAGE + 4096;
        let fd = shm_create(len, ShmPages::Base).unwrap();
        match collapse(fd.as_fd(), len) {
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                return println!("skipped: no MADV_COLLAPSE of shared memory here ({e})")
            }
            // No free 2 MiB block now (fragmented memory full of cache).
            Err(e) if e.raw_os_error() == Some(libc::ENOMEM) => {
                return println!("skipped: no huge page to be had now ({e})")
            }
            r => r.unwrap(),
        }
        let v = shm_map(fd.as_fd(), len, ShmAccess::ReadWrite).unwrap();
        for at in [0, HUGE_PAGE, len - 1] {
            // SAFETY: in bounds of a writable mapping only this test has.
            unsafe { v.as_ptr().add(at).write(7) };
        }
        let pmd = smaps_line(v.as_ptr(), "ShmemPmdMapped:");
        assert!(pmd.split_whitespace().any(|w| w == "4096"), "{pmd}");
        drop(v);
        let fd = shm_freeze(fd).unwrap();
        refused(shm_map(fd.as_fd(), len, ShmAccess::ReadWrite));
        let ro = shm_map(fd.as_fd(), len, ShmAccess::ReadOnly).unwrap();
        for at in [0, HUGE_PAGE, len - 1] {
            // SAFETY: in bounds; frozen, so nothing writes it.
            assert_eq!(unsafe { ro.as_ptr().add(at).read() }, 7);
        }
        let pmd = smaps_line(ro.as_ptr(), "ShmemPmdMapped:");
        assert!(pmd.split_whitespace().any(|w| w == "4096"), "{pmd}");
    }
}
