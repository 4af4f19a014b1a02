//! End-to-end tests across the validator, the tower layer and the token service.
//!
//! The tests themselves live in `tests/tests/`; they arrive with the token service.
