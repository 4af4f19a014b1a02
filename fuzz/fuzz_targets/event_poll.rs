#![no_main]

libfuzzer_sys::fuzz_target!(|input: &[u8]| scopegate_token_service::http::fuzzing::event_poll(input));
