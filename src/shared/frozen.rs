//! [`SharedMut`] and [`Frozen`]: a block written by one process, then
//! frozen and read by many.

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use bytemuck::Pod;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::region::Region;
use super::Pages;
use crate::encode;
use crate::error::{Error, Kind, Result};

/// The byte length of `n` elements of `T`, for a block of them: a usage
/// error for a zero-sized `T`, an alignment over a page, or an overflow.
fn byte_len<T>(n: usize) -> Result<usize> {
    let usage = |m: String| Error::new(Kind::Usage(m));
    let size = std::mem::size_of::<T>();
    if size == 0 {
        return Err(usage(format!(
            "`{}` is zero-sized: a shared block needs elements with a size",
            std::any::type_name::<T>()
        )));
    }
    if std::mem::align_of::<T>() > super::PAGE {
        return Err(usage(format!(
            "`{}` is aligned to more than a page",
            std::any::type_name::<T>()
        )));
    }
    n.checked_mul(size)
        .filter(|&b| b <= Region::MAX_LEN)
        .ok_or_else(|| {
            usage(format!(
                "{n} elements of `{}` are over the shared-memory cap of {} bytes",
                std::any::type_name::<T>(),
                Region::MAX_LEN
            ))
        })
}

/// A block of shared memory that only this process can see and write, to
/// fill before [`freeze`](SharedMut::freeze)-ing it into a [`Frozen`]
/// block that other processes can read.
///
/// It dereferences to `[T]` (`T` is any [`bytemuck::Pod`] type: plain
/// numbers, arrays and `#[repr(C)]` structs of them). It can't be sent to
/// another process (it has no `Serialize`): that is what makes `&mut [T]`
/// sound. Dropping it frees the block.
///
/// ```
/// let mut block = multiproc::SharedMut::<u64>::zeroed(4)?;
/// block.copy_from_slice(&[1, 2, 3, 4]);
/// let frozen = block.freeze()?;
/// assert_eq!(frozen.iter().sum::<u64>(), 10);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct SharedMut<T> {
    region: Region,
    _t: PhantomData<T>,
}

impl<T: Pod> SharedMut<T> {
    /// A block of `len` elements, all zero.
    ///
    /// On Linux a block of at least one huge page (2 MiB on x86-64) is
    /// made of huge pages where the system can give them, taken (and
    /// zeroed) now, and of 4 KiB pages otherwise (see [huge
    /// pages](crate#huge-pages)); [`zeroed_with_pages`](SharedMut::zeroed_with_pages)
    /// chooses.
    ///
    /// A [usage error](Error::is_usage) for a zero-sized `T`, or over
    /// 1 TiB; an I/O error if the OS can't make the block.
    pub fn zeroed(len: usize) -> Result<Self> {
        Self::zeroed_with_pages(len, Pages::Huge)
    }

    /// A block of `len` elements, all zero, of the pages `pages` asks
    /// for: [`Pages::Small`] for 4 KiB pages only, taken as they are
    /// first written; [`Pages::Huge`] is what [`zeroed`](SharedMut::zeroed)
    /// does.
    ///
    /// ```
    /// use multiproc::{Pages, SharedMut};
    ///
    /// let mut block = SharedMut::<u64>::zeroed_with_pages(1 << 20, Pages::Small)?;
    /// block[7] = 3;
    /// assert_eq!(block.freeze()?.iter().sum::<u64>(), 3);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn zeroed_with_pages(len: usize, pages: Pages) -> Result<Self> {
        let region = Region::new_exclusive_with(byte_len::<T>(len)?, pages)?;
        Ok(SharedMut {
            region,
            _t: PhantomData,
        })
    }

    /// A block holding a copy of `data`.
    pub fn from_slice(data: &[T]) -> Result<Self> {
        let mut block = Self::zeroed(data.len())?;
        block.copy_from_slice(data);
        Ok(block)
    }

    /// Makes the block read-only for good, in every process, and shareable.
    ///
    /// Linux seals it (`F_SEAL_WRITE`); Windows keeps only a read-only
    /// handle to it; macOS maps it read-only (see the platform table in
    /// the [crate docs](crate#sharing-state)). On error (the OS refused
    /// the seal or the mapping) the block is gone.
    pub fn freeze(self) -> Result<Frozen<T>> {
        Ok(Frozen {
            region: Arc::new(self.region.freeze()?),
            _t: PhantomData,
        })
    }
}

impl<T: Pod> Deref for SharedMut<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // Exclusive until frozen (`SharedMut` never gives the region out).
        let bytes = self
            .region
            .bytes()
            .expect("a SharedMut's block is exclusive");
        // `byte_len` made the length a multiple of `T`'s size; the block
        // is page-aligned, `T` at most page-aligned.
        bytemuck::cast_slice(bytes)
    }
}

impl<T: Pod> DerefMut for SharedMut<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        let bytes = self
            .region
            .bytes_mut()
            .expect("a SharedMut's block is exclusive");
        bytemuck::cast_slice_mut(bytes)
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for SharedMut<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedMut")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

/// A read-only block of `T`s that every process holding it maps: the
/// zero-copy way to give large inputs to workers.
///
/// Made by [`SharedMut::freeze`]. It dereferences to `[T]`, clones
/// cheaply (the clones share one mapping), and crosses into a child like a
/// [`Connection`](crate::Connection): as (part of) a spawn's argument or a
/// pool initializer's. The child gets its own read-only mapping of the
/// same memory, not a copy. The block is freed when the last process lets
/// go of it (drops it, or exits however it exits); there is no name to
/// leak and no tracker process.
///
/// Receiving checks the block before mapping it: a handle that is not a
/// block made here, a size other than the one sent, or (Linux) a block
/// without its write seal is refused with a decode error naming the
/// reason. See [Sharing state](crate#sharing-state) for what each OS
/// guarantees.
pub struct Frozen<T> {
    region: Arc<Region>,
    _t: PhantomData<T>,
}

impl<T> Frozen<T> {
    /// Its region (test hooks).
    #[cfg(feature = "test-hooks")]
    pub(crate) fn region(&self) -> &Region {
        &self.region
    }
}

impl<T> Clone for Frozen<T> {
    fn clone(&self) -> Self {
        Frozen {
            region: Arc::clone(&self.region),
            _t: PhantomData,
        }
    }
}

impl<T: Pod> Deref for Frozen<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        let bytes = self.region.bytes().expect("a Frozen block is frozen");
        bytemuck::cast_slice(bytes)
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for Frozen<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Frozen")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl<T: Pod> Serialize for Frozen<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.region.serialize(s)
    }
}

impl<'de, T: Pod> Deserialize<'de> for Frozen<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let region = Region::deserialize_as(d, true)?;
        let bytes = region.len();
        match byte_len::<T>(bytes / std::mem::size_of::<T>().max(1)) {
            Ok(b) if b == bytes => Ok(Frozen {
                region: Arc::new(region),
                _t: PhantomData,
            }),
            Ok(_) => Err(encode::decode_error(format!(
                "a frozen block of {bytes} bytes is not a whole number of `{}` ({} bytes each)",
                std::any::type_name::<T>(),
                std::mem::size_of::<T>()
            ))),
            Err(e) => Err(encode::decode_error(e)),
        }
    }
}
