//! `tower-scopegate`: a tower `Layer` that enforces OAuth2 scope requirements per route.
//!
//! Not built yet: this crate is filled by a later issue (see the workspace README). It exists now
//! so that the workspace layout is the final one.
