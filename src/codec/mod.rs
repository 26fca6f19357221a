//! The wire formats between a parent and its workers, one typed codec per
//! file, each written and read in that one place:
//!
//! - [`header`]: the bootstrap header, the first bytes a worker reads;
//! - [`reply`]: what a worker sends back (started, its result, a panic, why
//!   its bootstrap failed);
//! - [`handles`]: OS handles inside a worker's arguments (`PassedHandle`,
//!   a `Connection` end), as tokens, with a kind tag for a channel end.
//!
//! `header` and `reply` are bytes and types only; `handles` also moves the
//! handles themselves, through `sys`. The fuzz targets in `fuzz/` drive
//! these decoders directly.

pub(crate) mod handles;
pub(crate) mod header;
pub(crate) mod reply;
