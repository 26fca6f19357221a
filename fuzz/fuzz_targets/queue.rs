//! A queue's ring as another process may have left it (any bytes, and any
//! records behind a valid header), and the `Queue` wire form: garbage is
//! refused or read within the block, never a panic, an out-of-bounds read
//! or an allocation larger than the block.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, block)) = data.split_first() else {
        return;
    };
    let _ = multiproc::fuzzing::queue_ring(block, flags & 1 == 1);
});
