//! The wire forms of the synchronization primitives (tag, handle tokens,
//! words): garbage, wrong tags, wrong handle counts, sizes and party
//! counts end in an error, never a panic or a large allocation.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = multiproc::fuzzing::sync_wire(data);
});
