//! A put on a [`Ring`]: [`prepare`](Ring::prepare) writes the record
//! past the tail, [`commit`](Ring::commit) stores the tail word, the
//! commit point (the ring's module docs, "Commit points"); what they
//! return ([`Prepared`], [`Putting`]), and `push`, both at
//! once, for the unit tests and the fuzz entry.

use super::{
    put_u32, put_u64, record_len, Corrupt, End, LargeRef, Ring, FRAME, HEADER, LARGE_MARK, TAIL_AT,
};

/// What [`Ring::push`] did.
#[cfg(any(test, feature = "test-hooks"))] // the fuzz entry and the unit tests
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Push {
    /// The item is in the ring.
    Done,
    /// No room now (items or bytes).
    Full,
    /// The ring is closed: nothing more goes in.
    Closed,
    /// The item is larger than the whole data area: it can never fit.
    TooLarge,
}

/// What [`Ring::prepare`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Prepared {
    /// The record is written past the tail; [`Ring::commit`] puts it in.
    Ready(Putting),
    /// No room now (items or bytes).
    Full,
    /// The ring is closed: nothing more goes in.
    Closed,
    /// The item is larger than the whole data area: it can never fit.
    TooLarge,
}

/// A record written past the tail, the tail word that puts it in, and
/// the bytes in use once it is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Putting(End, usize);

impl Putting {
    /// The bytes in use once the record is in.
    pub(crate) fn used_after(&self) -> usize {
        self.1
    }
}

impl Ring<'_> {
    /// Appends `item` as the newest record, if there is room
    /// ([`prepare`](Ring::prepare) then [`commit`](Ring::commit)).
    #[cfg(any(test, feature = "test-hooks"))] // the fuzz entry and the unit tests
    pub(crate) fn push(&mut self, item: &[u8]) -> Result<Push, Corrupt> {
        Ok(match self.prepare(item)? {
            Prepared::Ready(p) => {
                self.commit(p);
                Push::Done
            }
            Prepared::Full => Push::Full,
            Prepared::Closed => Push::Closed,
            Prepared::TooLarge => Push::TooLarge,
        })
    }

    /// Writes `item` as a record past the tail, if there is room, without
    /// putting it in: until [`commit`](Ring::commit) stores the tail word
    /// the bytes are never read, and the next `prepare` overwrites them.
    pub(crate) fn prepare(&mut self, item: &[u8]) -> Result<Prepared, Corrupt> {
        self.prepare_framed(item, false)
    }

    /// [`prepare`](Ring::prepare) for a large record standing for the
    /// item `r` names.
    pub(crate) fn prepare_large(&mut self, r: LargeRef) -> Result<Prepared, Corrupt> {
        self.prepare_framed(&r.to_bytes(), true)
    }

    fn prepare_framed(&mut self, item: &[u8], large: bool) -> Result<Prepared, Corrupt> {
        if self.is_closed() {
            return Ok(Prepared::Closed);
        }
        if item.len() > self.max_item_len() {
            return Ok(Prepared::TooLarge);
        }
        let (head, tail, used) = self.ends()?;
        let need = record_len(item.len());
        let n = tail.items.wrapping_sub(head.items) as u64;
        if n >= self.max_items || self.cap - used < need {
            return Ok(Prepared::Full);
        }
        let len = item.len() as u32;
        let t = tail.pos as usize;
        put_u32(self.mem, HEADER + t, len);
        let check = if large { !len ^ LARGE_MARK } else { !len };
        put_u32(self.mem, HEADER + t + 4, check);
        self.write_at(self.wrap(t + FRAME), item);
        let next = End {
            items: tail.items.wrapping_add(1),
            pos: self.wrap(t + need) as u32,
        };
        Ok(Prepared::Ready(Putting(next, used + need)))
    }

    /// Puts the record [`prepare`](Ring::prepare) wrote in: one 8-byte
    /// store of the tail word, the commit point (nothing else changed
    /// the ring since).
    pub(crate) fn commit(&mut self, p: Putting) {
        if let Some((head, _, _)) = self.ends {
            self.ends = Some((head, p.0, p.1));
        }
        put_u64(self.mem, TAIL_AT, p.0.word());
    }
}
