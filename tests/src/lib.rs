//! End-to-end tests across the validator, the tower layer and the token service.
//!
//! The tests live in `tests/tests/`: the token service issues JWT and opaque tokens over real
//! HTTP, and `examples/protected-api` (through `tower-scopegate`) accepts or refuses them.
