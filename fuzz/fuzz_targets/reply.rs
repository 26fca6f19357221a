//! The parent's decoder of a worker's replies (`Started`, then the result,
//! a panic or why there is none), fed in two reads with a small cap: a
//! frame over the cap is refused from its length alone, garbage and
//! truncation end in an error, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((split, rest)) = data.split_first() else {
        return;
    };
    let _ = multiproc::fuzzing::reply(rest, usize::from(*split), 1 << 16);
});
