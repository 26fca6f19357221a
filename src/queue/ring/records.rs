//! Reading a [`Ring`]'s records: a plain record's frame checked and its
//! payload reached (`item_at`, `with_payload`), a large record's
//! [`LargeRef`] (`large_at`), the walk over every record
//! ([`large_refs`](Ring::large_refs)), and the test hook that writes
//! garbage over the oldest.

use super::{
    get_u32, get_u64, put_u32, put_u64, record_len, Corrupt, End, Ring, Taking, FRAME, HEADER,
    LARGE_MAGIC, LARGE_MARK, LARGE_REF_LEN,
};

/// A large record's payload: where an item too large for the ring waits
/// (module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LargeRef {
    /// The item's tag: random, written in its block too.
    pub tag: u64,
    /// The item's length in bytes.
    pub len: u64,
    /// The word the lane keeps for it (`sys::SysLane::send`).
    pub loc: u64,
}

impl LargeRef {
    /// The payload bytes.
    pub(crate) fn to_bytes(self) -> [u8; LARGE_REF_LEN] {
        let mut b = [0u8; LARGE_REF_LEN];
        put_u32(&mut b, 0, LARGE_MAGIC);
        put_u64(&mut b, 8, self.tag);
        put_u64(&mut b, 16, self.len);
        put_u64(&mut b, 24, self.loc);
        b
    }

    /// Read from payload bytes; `None` if they are not a `LargeRef`.
    pub(crate) fn from_bytes(b: &[u8]) -> Option<LargeRef> {
        if b.len() != LARGE_REF_LEN || get_u32(b, 0) != LARGE_MAGIC || get_u32(b, 4) != 0 {
            return None;
        }
        Some(LargeRef {
            tag: get_u64(b, 8),
            len: get_u64(b, 16),
            loc: get_u64(b, 24),
        })
    }
}

impl Ring<'_> {
    /// The record at `head` with `used` bytes in use up to `tail`, if its
    /// frame is a plain record's that fits: its payload's data offset and
    /// length, and what taking it makes.
    pub(super) fn item_at(
        &self,
        head: End,
        tail: End,
        used: usize,
    ) -> Option<(usize, usize, Taking)> {
        let h = head.pos as usize;
        let len = get_u32(self.mem, HEADER + h);
        let check = get_u32(self.mem, HEADER + h + 4);
        let need = record_len(len as usize);
        if check != !len || need > used {
            return None;
        }
        let next = End {
            items: head.items.wrapping_add(1),
            pos: self.wrap(h + need) as u32,
        };
        let left = tail.items.wrapping_sub(next.items);
        Some((
            self.wrap(h + FRAME),
            len as usize,
            Taking(next, left, used - need),
        ))
    }

    /// Runs `f` on `len` payload bytes at data offset `at`: the ring's
    /// own bytes, or a copy if they wrap around the end.
    pub(super) fn with_payload<R>(&self, at: usize, len: usize, f: impl FnOnce(&[u8]) -> R) -> R {
        if at + len <= self.cap {
            f(&self.mem[HEADER + at..HEADER + at + len])
        } else {
            let mut copy = Vec::with_capacity(len);
            self.append_from(at, len, &mut copy);
            f(&copy)
        }
    }

    /// The large record at data offset `h` whose frame says `len` and
    /// `check`, if it is one and fits in the `used` bytes.
    pub(super) fn large_at(&self, h: usize, len: u32, check: u32, used: usize) -> Option<LargeRef> {
        if check != !len ^ LARGE_MARK
            || len as usize != LARGE_REF_LEN
            || record_len(LARGE_REF_LEN) > used
        {
            return None;
        }
        let mut b = Vec::with_capacity(LARGE_REF_LEN);
        self.append_from(self.wrap(h + FRAME), LARGE_REF_LEN, &mut b);
        LargeRef::from_bytes(&b)
    }

    /// The bytes of the items that large records in the ring stand for,
    /// in total (a walk over every record: [`large_refs`](Ring::large_refs)).
    #[cfg(test)]
    pub(crate) fn large_bytes(&self) -> Result<u64, Corrupt> {
        Ok(self
            .large_refs()?
            .iter()
            .fold(0u64, |t, r| t.saturating_add(r.len)))
    }

    /// The large records in the ring, oldest first: a walk over every
    /// record (only a large `put` calls it, for the lane's bound and the
    /// blocks no record names).
    pub(crate) fn large_refs(&self) -> Result<Vec<LargeRef>, Corrupt> {
        let (head, _, mut used) = self.ends()?;
        let mut at = head.pos as usize;
        let mut found = Vec::new();
        while used > 0 {
            let len = get_u32(self.mem, HEADER + at);
            let check = get_u32(self.mem, HEADER + at + 4);
            let need = record_len(len as usize);
            if check == !len && need <= used {
                // An item in the ring.
            } else if let Some(r) = self.large_at(at, len, check, used) {
                found.push(r);
            } else {
                return Err(Corrupt(format!(
                    "a record's frame says {len} bytes (check {check:#x}) with {used} bytes in use"
                )));
            }
            used -= need;
            at = self.wrap(at + need);
        }
        Ok(found)
    }

    /// Writes `bytes` over the oldest record, frame first (wrapping at
    /// the end); false if the ring is empty. A test hook: what a process
    /// writing garbage into the block does.
    #[cfg(feature = "test-hooks")]
    pub(crate) fn scribble_over_oldest(&mut self, bytes: &[u8]) -> bool {
        match self.ends() {
            Ok((head, _, used)) if used > 0 => {
                let bytes = &bytes[..bytes.len().min(self.cap)];
                self.write_at(head.pos as usize, bytes);
                true
            }
            _ => false,
        }
    }
}
