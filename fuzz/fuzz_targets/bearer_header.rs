#![no_main]

libfuzzer_sys::fuzz_target!(|input: &[u8]| tower_scopegate::fuzzing::bearer_header(input));
