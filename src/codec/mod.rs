//! The wire formats between a parent and its workers, one typed codec per
//! file, each written and read in that one place:
//!
//! - [`header`]: the bootstrap header, the first bytes a worker reads;
//! - [`reply`]: what a worker sends back (started, its result, a panic, why
//!   its bootstrap failed).
//!
//! Only bytes and types here: no process, channel or OS call. The fuzz
//! targets in `fuzz/` drive these decoders directly.

pub(crate) mod header;
pub(crate) mod reply;
