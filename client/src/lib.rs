#![doc = include_str!("../README.md")]

mod assertion;
mod bearer_client;
mod cache;
mod discovery;
mod error;
mod future;
mod http;
mod layer;
mod replay;
mod retry;
mod service;
mod source;
mod token;
mod token_request;

pub use assertion::{AssertionAlgorithm, AssertionKey};
pub use bearer_client::BearerClient;
pub use error::{BuildError, Error};
pub use future::ResponseFuture;
pub use layer::BearerLayer;
pub use replay::{CloneRequest, NoRetry, Replay};
pub use service::Bearer;
pub use source::{TokenSource, TokenSourceBuilder};
pub use token::AccessToken;
pub use token_request::ClientAuthMethod;

/// The error of a [`Bearer`] service: the inner service's, or an [`Error`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Every public type can be shared across tasks.
const _: () = {
    const fn shared<T: Send + Sync + Clone>() {}
    shared::<TokenSource>();
    shared::<ClientAuthMethod>();
    shared::<AssertionKey>();
    shared::<AccessToken>();
    shared::<Error>();
    shared::<BuildError>();
    shared::<BearerClient>();
    shared::<BearerLayer>();
    shared::<Bearer<()>>();
};
