//! A [`Core`]'s wire form: its mutex, block, semaphores and lane, the
//! block's size checked before anything is mapped; a received queue joins
//! the lane.

use std::sync::Mutex;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{io, lane_bound, ring, ring_max, Copied, Core};
use crate::sync::wire::{self, ObjectWire, Tag};
use crate::sys;

impl Serialize for Core {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let (mutex, block) = self.guarded.parts();
        (
            Tag::Queue,
            wire::ser::<S::Error>(mutex)?,
            wire::ser::<S::Error>(block)?,
            wire::ser::<S::Error>(self.items.parts())?,
            wire::ser::<S::Error>(self.room.parts())?,
            wire::ser::<S::Error>((self.lane.parts().0, self.max_large))?,
        )
            .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Core {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let (tag, m, b, i, r, l) = <(
            Tag,
            ObjectWire,
            ObjectWire,
            ObjectWire,
            ObjectWire,
            ObjectWire,
        )>::deserialize(d)?;
        wire::check_tag(tag, Tag::Queue)?;
        // The size before anything is mapped.
        let len = usize::try_from(b.word)
            .ok()
            .filter(|l| {
                (ring::block_len(ring::MIN_CAP)..=ring::block_len(ring::MAX_CAP)).contains(l)
            })
            .ok_or_else(|| {
                wire::refuse(format!("a queue's block of {} bytes can't be one", b.word))
            })?;
        let mutex = wire::de(m, sys::SysMutex::HANDLES, |h, word| {
            sys::SysMutex::from_parts(h, word, false)
        })?;
        let guarded = wire::de(b, 1, |mut h, _| {
            let handle = h.pop().expect("one handle, counted");
            sys::Guarded::open(mutex, handle, len, ring::PREFIX)
        })?;
        let max_large = lane_bound(l.word);
        let core = Core {
            guarded,
            items: Self::semaphore_from_wire(i)?,
            room: Self::semaphore_from_wire(r)?,
            lane: wire::de(l, sys::SysLane::HANDLES, sys::SysLane::from_parts)?,
            max_large,
            ring_max: ring_max(len - ring::PREFIX - ring::HEADER),
            copied: Mutex::new(Copied::new()),
        };
        core.locked(|_| core.lane.join())
            .and_then(|r| r.map_err(io("cannot join a queue's lane")))
            .map_err(|e| wire::refuse(format!("a queue refused: {e}")))?;
        Ok(core)
    }
}
