//! Entry point for the fuzz target in the repository's `fuzz/` folder (feature `fuzzing`).
//! Not part of the API.

use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue};

use crate::token::{self, Credentials};

const MAX_HEADER_BYTES: usize = 8192;

/// The `Authorization` header (the input's first line) and the query string (the rest).
pub fn bearer_header(input: &[u8]) {
    let (header, query) = match input.iter().position(|&byte| byte == b'\n') {
        Some(end) => (&input[..end], Some(&input[end + 1..])),
        None => (input, None),
    };
    let Ok(value) = HeaderValue::from_bytes(header) else {
        return;
    };
    let query = query.and_then(|query| std::str::from_utf8(query).ok());
    let mut headers = HeaderMap::new();
    headers.insert(AUTHORIZATION, value);
    match token::credentials(&headers, query, MAX_HEADER_BYTES) {
        Credentials::Bearer(token) | Credentials::Dpop(token) => {
            assert!(!token.is_empty() && header.len() <= MAX_HEADER_BYTES);
            assert!(!token.starts_with(' '));
        }
        Credentials::Missing | Credentials::Malformed(_) => {}
    }
}
