//! [`SysLane`], Windows: where a queue's large items wait (the design is
//! in `queue/mod.rs`, "Bounds and large items"). Windows has no handle in
//! flight that no process holds: a section lives while some process has a
//! handle or a view of it. So each large item's read-only section handle
//! is *kept* by a process, the queue's **keeper** (`keeper.rs`): a
//! process of the crate's own, started by the queue's first large `put`
//! and living while any process holds the queue, so that no user process,
//! killed or ending with `process::exit`, takes an item with it. The lane
//! is the table that says where each block is, in a block of shared
//! memory of its own (its section is the lane's one handle on the wire):
//!
//! - **holders**: the processes that hold the queue, each named by its id
//!   and creation time (`held::identity`, so that a reused id is never
//!   taken for it) with a count of the queue's copies it holds. A process
//!   joins when it creates or receives the queue and leaves when its last
//!   copy is dropped (`Core`'s `Drop`); one killed never leaves, and is
//!   found dead (its id gone, another process under it, or exited) and
//!   forgotten by the next process that looks at it. The keeper waits on
//!   them: it exits when none is alive.
//! - **the keeper**: its id, creation time and the value of its wake
//!   event in its own table (a holder that leaves sets it, so that the
//!   keeper looks at the holders again).
//! - **slots**: one per block kept, its item's tag and where it is: the
//!   keeper (or a holder's index) and the handle's value in that
//!   process's table. The queue's large record keeps the slot's index.
//!
//! A producer pushes its block into the keeper, starting one first if
//! there is none alive (`DuplicateHandle` into that process: "the source
//! process may push a handle into a target process it opened with
//! `PROCESS_DUP_HANDLE`", MSDN). A consumer duplicates the value out of
//! the keeper (a copy: the keeper's stays), maps and checks it, and only
//! after its commit frees the slot and closes the keeper's copy
//! (`DUPLICATE_CLOSE_SOURCE` with no target), so a consumer killed before
//! that leaves the item to the next.
//!
//! Where no keeper can be started (`keeper.rs` says when; a copy of the
//! queue that failed once does not try again), blocks go where they went
//! before the keeper: into the first live holder other than the producer
//! (itself only if there is none), and a holder that leaves hands the
//! blocks it keeps on to the keeper, else to the first other live holder.
//! Then a holder killed, or ending without dropping its copies, takes the
//! blocks it keeps with it: their records are skipped by consumers.
//!
//! Why a process of its own and not, say, each block in two holders: any
//! set of user processes can all be killed while the queue lives on in
//! another (two keepers, two kills), and a block kept by no process is
//! gone. Only a process whose life the crate controls — one that ends
//! when the queue's last holder does, and no user process's death ends —
//! keeps the guarantee Linux gets from the kernel.
//!
//! Every call is made under the queue's lock, which orders them (the
//! keeper's decision to exit too); the table's words are atomics only
//! because other processes map them.
//!
//! What is left, and what it costs:
//!
//! - the keeper **killed** (by hand: it is no user process) takes the
//!   blocks it keeps with it, as a holder did; the next large `put`
//!   starts a new one;
//! - the first large `put` of a queue (and the first after its keeper
//!   exited) starts the keeper under the queue's lock and waits until it
//!   is ready: a process start (tens of milliseconds; more under Wine);
//! - a producer killed between its push and its commit, or a consumer
//!   between its commit and the close, leaves a slot that no record
//!   names: the next large `put` frees it and closes its handle
//!   ([`SysLane::sweep`]). A slot is freed before its handle is closed,
//!   and filled only after the push returned: a process killed in the
//!   few instructions between those two steps leaves one handle in the
//!   keeper until it exits (never a slot naming a closed handle, which
//!   could close another one later);
//! - a queue no process holds (in flight in a message whose sender
//!   dropped it) has no keeper: the keeper exits with the last holder,
//!   and the blocks with it;
//! - at most [`SLOTS`] blocks wait at once (a large `put` waits for a
//!   free slot as for room) and [`HOLDERS`] processes hold the queue at
//!   once as holders (one more still uses the queue; the keeper does not
//!   wait for it);
//! - the table is writable by every holder, so a process that holds the
//!   queue can name any handle in the keeper or another holder for it to
//!   close, the same exposure as `held.rs`'s (a process of the same user).

use std::io;
use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle};
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use windows_sys::Win32::Foundation::{
    DuplicateHandle, DUPLICATE_CLOSE_SOURCE, DUPLICATE_SAME_ACCESS, ERROR_INVALID_HANDLE, FALSE,
    HANDLE,
};
use windows_sys::Win32::System::Threading::GetCurrentProcess;

use super::held::{identity, open_live};
use super::{cvt, is_os_error, keeper, BorrowedRaw, OwnedRaw};
use crate::sys::{Guarded, Shm, ShmAccess};

/// The most processes the table names as holders at once.
pub(crate) const HOLDERS: usize = 64;
/// The most blocks kept at once.
pub(crate) const SLOTS: usize = 256;

/// A slot's holder index for the blocks the lane's keeper keeps.
const KEEPER: usize = HOLDERS;

/// The table's first word.
const MAGIC: u64 = u64::from_le_bytes(*b"MPQLANE2");
/// Word offsets: the magic, then two words per holder (pid and count,
/// creation time), then two per slot (tag, where), then the keeper's
/// three (pid, creation time, its wake event's value in its table).
const HOLDERS_AT: usize = 1;
const SLOTS_AT: usize = HOLDERS_AT + 2 * HOLDERS;
const KEEPER_AT: usize = SLOTS_AT + 2 * SLOTS;
const WORDS: usize = KEEPER_AT + 3;
/// The table's length in bytes.
const TABLE_LEN: usize = WORDS * 8;

/// The lane of one queue (see the module docs): its table.
#[derive(Debug)]
pub(crate) struct SysLane {
    table: Shm,
    /// This process counted itself as a holder for this copy.
    joined: AtomicBool,
    /// A keeper could not be started from this copy: its large `put`s
    /// push blocks into holders, as before the keeper.
    no_keeper: AtomicBool,
}

/// What the keeper found under the queue's lock (`keeper.rs`).
pub(super) enum KeeperCheck {
    /// It is not (or no longer) the lane's keeper: exit.
    Retire,
    /// A live holder to wait on.
    Watch(OwnedHandle),
    /// Holders that can't be opened: look again later.
    Blind,
}

/// A holder's process, opened to push or take handles.
enum Proc {
    /// This process (its pseudo handle).
    Me,
    Other(OwnedHandle),
}

impl Proc {
    fn raw(&self) -> HANDLE {
        match self {
            // SAFETY: plain call; a pseudo handle that needs no closing.
            Proc::Me => unsafe { GetCurrentProcess() },
            Proc::Other(h) => h.as_raw_handle() as HANDLE,
        }
    }
}

/// What a holder's process is now.
enum Found {
    Live(Proc),
    /// Exited, or its id is gone or another process's: to forget.
    Dead,
    /// Can't tell (it could not be opened for another reason).
    Unknown,
}

impl SysLane {
    /// The lane carries blocks on Windows.
    pub(crate) const ENABLED: bool = true;

    /// Processes join and leave the lane (module docs).
    pub(crate) const MEMBERSHIP: bool = true;

    /// The handles of its wire form: the table's section.
    pub(crate) const HANDLES: usize = 1;

    /// A new lane: an empty table, which this process joins with
    /// [`join`](SysLane::join).
    pub(crate) fn new() -> io::Result<SysLane> {
        let mut table = Shm::create(TABLE_LEN)?;
        table.share();
        let lane = SysLane {
            table,
            joined: AtomicBool::new(false),
            no_keeper: AtomicBool::new(false),
        };
        lane.words()[0].store(MAGIC, Ordering::SeqCst);
        Ok(lane)
    }

    /// The handles and the word of its wire form (the word is 0).
    pub(crate) fn parts(&self) -> (Vec<BorrowedRaw<'_>>, u64) {
        let h = self
            .table
            .handle_to_pass()
            .expect("a lane's table is shared from its creation");
        (vec![h], 0)
    }

    /// A received lane: one handle, checked to be a section of the table's
    /// size (`shm_map`) that starts with the table's magic.
    pub(crate) fn from_parts(handles: Vec<OwnedRaw>, _word: u64) -> io::Result<SysLane> {
        let [handle]: [OwnedHandle; 1] = handles.try_into().map_err(|h: Vec<OwnedHandle>| {
            invalid(format!("a queue's lane with {} handles, not 1", h.len()))
        })?;
        let table = Shm::open(handle, TABLE_LEN, ShmAccess::ReadWrite)
            .map_err(|e| invalid(format!("a queue's lane is not its table: {e}")))?;
        let lane = SysLane {
            table,
            joined: AtomicBool::new(false),
            no_keeper: AtomicBool::new(false),
        };
        if lane.words()[0].load(Ordering::SeqCst) != MAGIC {
            return Err(invalid("a queue's lane is not its table".into()));
        }
        Ok(lane)
    }

    fn words(&self) -> &[AtomicU64] {
        self.table
            .atomics::<AtomicU64>()
            .expect("a lane's table is writable, shared and page-aligned")
    }

    fn holder(&self, i: usize) -> (u32, u32, u64) {
        let w = self.words();
        let a = w[HOLDERS_AT + 2 * i].load(Ordering::SeqCst);
        (
            a as u32,
            (a >> 32) as u32,
            w[HOLDERS_AT + 2 * i + 1].load(Ordering::SeqCst),
        )
    }

    fn set_holder(&self, i: usize, pid: u32, count: u32, start: u64) {
        let w = self.words();
        w[HOLDERS_AT + 2 * i + 1].store(start, Ordering::SeqCst);
        w[HOLDERS_AT + 2 * i].store(u64::from(pid) | u64::from(count) << 32, Ordering::SeqCst);
    }

    /// Slot `k`: (tag, holder index, value), or `None` if it is free or
    /// names no holder.
    fn slot(&self, k: usize) -> Option<(u64, usize, u32)> {
        let w = self.words();
        let at = w[SLOTS_AT + 2 * k + 1].load(Ordering::SeqCst);
        let (i, v) = ((at >> 32) as usize, at as u32);
        (at != 0 && i <= KEEPER && v != 0)
            .then(|| (w[SLOTS_AT + 2 * k].load(Ordering::SeqCst), i, v))
    }

    fn set_slot(&self, k: usize, tag: u64, i: usize, v: u32) {
        let w = self.words();
        w[SLOTS_AT + 2 * k].store(tag, Ordering::SeqCst);
        w[SLOTS_AT + 2 * k + 1].store((i as u64) << 32 | u64::from(v), Ordering::SeqCst);
    }

    fn free_slot(&self, k: usize) {
        self.words()[SLOTS_AT + 2 * k + 1].store(0, Ordering::SeqCst);
    }

    /// The keeper: (pid, creation time, wake event's value); pid 0: none.
    fn keeper(&self) -> (u32, u64, u32) {
        let w = self.words();
        (
            w[KEEPER_AT].load(Ordering::SeqCst) as u32,
            w[KEEPER_AT + 1].load(Ordering::SeqCst),
            w[KEEPER_AT + 2].load(Ordering::SeqCst) as u32,
        )
    }

    fn set_keeper(&self, pid: u32, start: u64, wake: u32) {
        let w = self.words();
        w[KEEPER_AT + 1].store(start, Ordering::SeqCst);
        w[KEEPER_AT + 2].store(u64::from(wake), Ordering::SeqCst);
        w[KEEPER_AT].store(u64::from(pid), Ordering::SeqCst);
    }

    /// This process's index among the holders, if it is one.
    fn my_index(&self, me: (u32, u64)) -> Option<usize> {
        (0..HOLDERS).find(|&i| {
            let (pid, count, start) = self.holder(i);
            pid != 0 && count > 0 && (pid, start) == me
        })
    }

    /// Holder `i`'s process (the keeper's for [`KEEPER`]), if it is alive.
    fn find(&self, i: usize, me: (u32, u64)) -> Found {
        let (pid, count, start) = match i {
            KEEPER => {
                let (pid, start, _) = self.keeper();
                (pid, 1, start)
            }
            _ => self.holder(i),
        };
        if pid == 0 || count == 0 {
            return Found::Dead;
        }
        if (pid, start) == me {
            return Found::Live(Proc::Me);
        }
        match open_live(pid, start) {
            Ok(Some(opened)) => Found::Live(Proc::Other(opened)),
            Ok(None) => Found::Dead,
            Err(_) => Found::Unknown,
        }
    }

    /// The first live holder other than entry `mine` (this process's, if
    /// it holds the queue) and the process opened; dead ones met on the
    /// way are forgotten.
    fn first_live_other(&self, me: (u32, u64), mine: Option<usize>) -> Option<(usize, Proc)> {
        (0..HOLDERS)
            .filter(|&j| Some(j) != mine)
            .find_map(|j| match self.find(j, me) {
                Found::Live(p) => Some((j, p)),
                Found::Dead => {
                    self.forget(j);
                    None
                }
                Found::Unknown => None,
            })
    }

    /// Forgets dead holder `i` (or the keeper, [`KEEPER`]): the blocks it
    /// kept went with it (their slots are freed first, so that no slot
    /// names whoever takes its place).
    fn forget(&self, i: usize) {
        for k in 0..SLOTS {
            if matches!(self.slot(k), Some((_, h, _)) if h == i) {
                self.free_slot(k);
            }
        }
        match i {
            KEEPER => self.set_keeper(0, 0, 0),
            _ => self.set_holder(i, 0, 0, 0),
        }
    }

    /// The keeper's process, if there is one alive (a dead one is
    /// forgotten).
    fn live_keeper(&self, me: (u32, u64)) -> Option<Proc> {
        match self.find(KEEPER, me) {
            Found::Live(p) => Some(p),
            Found::Dead => {
                if self.keeper().0 != 0 {
                    self.forget(KEEPER);
                }
                None
            }
            Found::Unknown => None,
        }
    }

    /// `block` pushed into the keeper, started first if there is none
    /// (`keeper.rs`): its value there; `None` if no keeper can keep it
    /// (holders do); an error if the OS refused to start one.
    fn push_to_keeper(
        &self,
        block: HANDLE,
        me: (u32, u64),
        queue: &Guarded,
    ) -> io::Result<Option<u32>> {
        let keeper = match self.live_keeper(me) {
            Some(p) => p,
            None if self.no_keeper.load(Ordering::SeqCst) || self.keeper().0 != 0 => {
                return Ok(None)
            }
            None => {
                let ((mutex, _), _) = queue.parts();
                let Some(table) = self.table.handle_to_pass() else {
                    return Ok(None);
                };
                let started = keeper::start(table, &mutex).map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!("cannot start the queue's lane keeper: {e}"),
                    )
                })?;
                let Some(k) = started else {
                    self.no_keeper.store(true, Ordering::SeqCst);
                    return Ok(None);
                };
                self.set_keeper(k.pid, k.start, k.wake);
                Proc::Other(k.process)
            }
        };
        match push(block, &keeper) {
            Ok(v) => Ok(Some(v)),
            Err(_) => {
                // Gone meanwhile (then forgotten), or refusing: holders
                // keep this one.
                self.live_keeper(me);
                Ok(None)
            }
        }
    }

    /// Wakes the keeper, if there is one (a holder left).
    fn wake_keeper(&self, me: (u32, u64)) {
        if let Some(Proc::Other(p)) = self.live_keeper(me) {
            keeper::wake(&p, self.keeper().2);
        }
    }

    /// For the keeper, under the queue's lock (`keeper.rs`): whether it
    /// is still the lane's keeper and which live holder to wait on; with
    /// none alive it stops being the keeper (its blocks let go: no process
    /// holds the queue to get them).
    pub(super) fn keeper_check(&self, me: (u32, u64)) -> KeeperCheck {
        let (pid, start, _) = self.keeper();
        if (pid, start) != me {
            return KeeperCheck::Retire;
        }
        let mut unknown = false;
        for j in 0..HOLDERS {
            if self.holder(j).0 == 0 {
                continue;
            }
            match self.find(j, me) {
                Found::Live(Proc::Other(h)) => return KeeperCheck::Watch(h),
                Found::Live(Proc::Me) => {}
                Found::Dead => self.forget(j),
                Found::Unknown => unknown = true,
            }
        }
        if unknown {
            return KeeperCheck::Blind;
        }
        self.forget(KEEPER);
        KeeperCheck::Retire
    }

    /// Counts this copy of the queue in this process as a holder (under
    /// the queue's lock, once per copy). A full table leaves it out.
    pub(crate) fn join(&self) -> io::Result<()> {
        let me = identity()?;
        if let Some(i) = self.my_index(me) {
            let (pid, count, start) = self.holder(i);
            self.set_holder(i, pid, count.saturating_add(1), start);
            self.joined.store(true, Ordering::SeqCst);
            return Ok(());
        }
        // An empty entry first (no process to open), else a dead one's.
        let empty = (0..HOLDERS).find(|&i| matches!(self.holder(i), (0, _, _) | (_, 0, _)));
        let free =
            empty.or_else(|| (0..HOLDERS).find(|&i| matches!(self.find(i, me), Found::Dead)));
        if let Some(i) = free {
            self.forget(i);
            self.set_holder(i, me.0, 1, me.1);
            self.joined.store(true, Ordering::SeqCst);
        }
        Ok(())
    }

    /// Uncounts this copy (under the queue's lock); the last copy in this
    /// process hands the blocks this process keeps on to the first other
    /// live holder (module docs) and leaves the table.
    pub(crate) fn leave(&self) {
        if !self.joined.swap(false, Ordering::SeqCst) {
            return;
        }
        let Ok(me) = identity() else { return };
        let Some(i) = self.my_index(me) else { return };
        let (pid, count, start) = self.holder(i);
        if count > 1 {
            self.set_holder(i, pid, count - 1, start);
            return;
        }
        // An heir only for blocks this process keeps (no process opened
        // at the drop of a queue that keeps none here): the keeper if
        // there is one, else another holder.
        let keeps = (0..SLOTS).any(|k| matches!(self.slot(k), Some((_, h, _)) if h == i));
        let heir = match keeps {
            true => (self.live_keeper(me).map(|p| (KEEPER, p)))
                .or_else(|| self.first_live_other(me, Some(i))),
            false => None,
        };
        for k in 0..SLOTS {
            let Some((tag, h, v)) = self.slot(k) else {
                continue;
            };
            if h != i {
                continue;
            }
            match &heir {
                Some((j, p)) => match push(v as usize as HANDLE, p) {
                    Ok(nv) => self.set_slot(k, tag, *j, nv),
                    Err(_) => self.free_slot(k),
                },
                None => self.free_slot(k),
            }
            close_in(&Proc::Me, v as usize);
        }
        self.set_holder(i, 0, 0, 0);
        // It may have been the last holder alive.
        self.wake_keeper(me);
    }

    /// Hands `block` to the lane's keeper (module docs), started if there
    /// is none (`queue` is the queue's lock, which the keeper needs); if
    /// none can be, to the first live holder other than this process,
    /// else this one. The slot's index, which the queue's record keeps;
    /// `None` if every slot is taken (the queue waits for room); an error
    /// if the OS refused to start a keeper, or no process can keep it.
    pub(crate) fn send(
        &self,
        block: BorrowedRaw<'_>,
        tag: u64,
        queue: &Guarded,
    ) -> io::Result<Option<u64>> {
        let Some(k) = (0..SLOTS).find(|&k| self.slot(k).is_none()) else {
            return Ok(None);
        };
        let me = identity()?;
        if let Some(v) = self.push_to_keeper(block.as_raw_handle() as HANDLE, me, queue)? {
            self.set_slot(k, tag, KEEPER, v);
            return Ok(Some(k as u64));
        }
        let mine = self.my_index(me);
        let keeper = self
            .first_live_other(me, mine)
            .or(mine.map(|i| (i, Proc::Me)));
        let Some((j, p)) = keeper else {
            return Err(io::Error::other(
                "no process that holds this queue can keep a large item for it \
                 (the table of its holders is full)",
            ));
        };
        let v = push(block.as_raw_handle() as HANDLE, &p).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot hand a large item to its keeper: {e}"),
            )
        })?;
        self.set_slot(k, tag, j, v);
        Ok(Some(k as u64))
    }

    /// A copy of the block in slot `loc`, which keeps it; `None` if the
    /// slot is not `tag`'s or its keeper is gone.
    pub(crate) fn open(&self, tag: u64, loc: u64) -> io::Result<Option<OwnedRaw>> {
        let Some((t, i, v)) = self.named(tag, loc) else {
            return Ok(None);
        };
        debug_assert_eq!(t, tag);
        let p = match self.find(i, identity()?) {
            Found::Live(p) => p,
            Found::Dead => {
                self.forget(i);
                return Ok(None);
            }
            Found::Unknown => return Ok(None),
        };
        // SAFETY: plain call; a pseudo handle that needs no closing.
        let me = unsafe { GetCurrentProcess() };
        let mut out: HANDLE = ptr::null_mut();
        // SAFETY: `p` is open with PROCESS_DUP_HANDLE (or this process's
        // pseudo handle); `v` is only a value in its table, which the OS
        // checks there; `out` is a valid place for the result, a new
        // handle in this process.
        let ok = unsafe {
            DuplicateHandle(
                p.raw(),
                v as usize as HANDLE,
                me,
                &mut out,
                0,
                FALSE,
                DUPLICATE_SAME_ACCESS,
            )
        };
        match cvt(ok) {
            // SAFETY: on success `out` is a new handle in this process,
            // ours alone.
            Ok(()) => Ok(Some(unsafe { OwnedHandle::from_raw_handle(out) })),
            Err(e) if is_os_error(&e, ERROR_INVALID_HANDLE) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Slot `loc`, if it holds `tag`'s block.
    fn named(&self, tag: u64, loc: u64) -> Option<(u64, usize, u32)> {
        let k = usize::try_from(loc).ok().filter(|&k| k < SLOTS)?;
        self.slot(k).filter(|&(t, _, _)| t == tag)
    }

    /// Lets go of `tag`'s block in slot `loc` once its item left the
    /// queue: the slot is freed, then the keeper's copy closed.
    pub(crate) fn taken(&self, tag: u64, loc: u64) {
        let Some((_, i, v)) = self.named(tag, loc) else {
            return;
        };
        self.free_slot(loc as usize);
        if let Ok(me) = identity() {
            if let Found::Live(p) = self.find(i, me) {
                close_in(&p, v as usize);
            }
        }
    }

    /// Lets go of every block whose slot no record names (`named`: the
    /// (tag, slot) of every large record in the ring): left by a process
    /// killed between its push and its commit, or its commit and
    /// [`taken`](SysLane::taken).
    pub(crate) fn sweep(&self, named: &[(u64, u64)]) {
        for k in 0..SLOTS {
            let Some((tag, _, _)) = self.slot(k) else {
                continue;
            };
            if !named.contains(&(tag, k as u64)) {
                self.taken(tag, k as u64);
            }
        }
    }

    /// How many blocks the lane holds (a test hook, under the queue's
    /// lock): the slots taken.
    #[cfg(any(test, feature = "test-hooks"))]
    pub(crate) fn blocks(&self) -> io::Result<usize> {
        Ok((0..SLOTS).filter(|&k| self.slot(k).is_some()).count())
    }

    /// The pid of the lane's keeper, if one is alive (a test hook, under
    /// the queue's lock).
    #[cfg(any(test, feature = "test-hooks"))]
    pub(crate) fn keeper_pid(&self) -> io::Result<Option<u32>> {
        let me = identity()?;
        Ok(self.live_keeper(me).map(|_| self.keeper().0))
    }
}

/// A copy of `handle` (this process's) in `p`'s table: its value there,
/// which the lane's slot owns from then on.
fn push(handle: HANDLE, p: &Proc) -> io::Result<u32> {
    // SAFETY: plain call; a pseudo handle that needs no closing.
    let me = unsafe { GetCurrentProcess() };
    let mut out: HANDLE = ptr::null_mut();
    // SAFETY: `handle` is open in this process for the call; `p` is open
    // with PROCESS_DUP_HANDLE (or this process's pseudo handle); `out` is
    // a valid place for the result, a value in `p`'s table that the caller
    // stores in a slot.
    let ok = unsafe {
        DuplicateHandle(
            me,
            handle,
            p.raw(),
            &mut out,
            0,
            FALSE,
            DUPLICATE_SAME_ACCESS,
        )
    };
    cvt(ok)?;
    match u32::try_from(out as usize) {
        Ok(v) if v != 0 => Ok(v),
        _ => {
            close_in(p, out as usize);
            Err(io::Error::other("a handle value beyond 32 bits"))
        }
    }
}

/// Closes value `v` in `p`'s table: a block's copy that a slot owned and
/// that was just freed (or never stored), so nothing else closes it.
fn close_in(p: &Proc, v: usize) {
    // SAFETY: `p` is open with PROCESS_DUP_HANDLE (or this process's
    // pseudo handle); DUPLICATE_CLOSE_SOURCE with no target only closes
    // `v` there, a block's copy the lane owned (see the callers), under
    // the queue's lock, so no other process closes it too.
    unsafe {
        DuplicateHandle(
            p.raw(),
            v as HANDLE,
            ptr::null_mut(),
            ptr::null_mut(),
            0,
            FALSE,
            DUPLICATE_CLOSE_SOURCE,
        )
    };
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

#[cfg(test)]
mod tests;
