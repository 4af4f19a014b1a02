#![no_main]

libfuzzer_sys::fuzz_target!(|input: &[u8]| scopegate_validator::fuzzing::revocation_events(input));
