#![doc = include_str!("../README.md")]

mod dpop;
mod future;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod layer;
mod metadata;
mod metrics;
mod response;
mod service;
mod token;

#[cfg(feature = "axum")]
mod extract;

pub use dpop::{DpopMode, DpopSettings};
#[cfg(feature = "axum")]
pub use extract::{Authenticated, Claims, MissingLayer};
pub use future::ResponseFuture;
pub use layer::ScopeLayer;
pub use metadata::{InvalidResource, MetadataService, ResourceMetadata};
pub use response::{AuthScheme, JsonErrorBody, Rejection, RejectionBody, RejectionKind};
pub use scopegate_validator::{Principal, Requirement, Validator};
pub use service::Scope;

#[cfg(test)]
mod assertions {
    fn assert_send_sync_clone<T: Send + Sync + Clone>() {}

    #[test]
    fn public_types_are_send_sync_clone() {
        assert_send_sync_clone::<super::ScopeLayer>();
        assert_send_sync_clone::<super::Scope<()>>();
        assert_send_sync_clone::<super::Rejection>();
        assert_send_sync_clone::<super::DpopSettings>();
    }
}
