//! Stage 1 on arbitrary bytes: a tree or located errors, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    onex_gen::fuzzing::check_parse(data);
});
