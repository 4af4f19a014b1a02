//! `scopegate-token-service`: a compact OAuth2 / OpenID Connect authorization server.
//!
//! Not built yet: this crate is filled by a later issue (see the workspace README). It exists now
//! so that the workspace layout is the final one.
