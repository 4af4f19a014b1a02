//! The layer's metric: every request it judges, counted by outcome under the requirement that
//! applied, through the [`metrics`] facade. The counters of a requirement are registered when
//! the layer is built (install the exporter first: a handle taken while none is installed stays
//! a no-op), so that counting a request is one atomic increment — no registry lookup, no
//! string, no allocation, on the fast path or any other. `docs/metrics.md` lists the labels.

use metrics::{Counter, Unit};
use scopegate_validator::{InvalidToken, Requirement};

use crate::response::{Rejection, RejectionKind};

pub(crate) const AUTH_REQUESTS: &str = "scopegate_auth_requests_total";

/// The `reason` of an `invalid_token` outcome that is DPoP's, not the validator's: a token bound
/// to a key presented as a bearer token, or one bound to none presented with a proof.
pub(crate) const DPOP_BINDING: &str = "dpop_binding";

/// The counters of one requirement's outcomes.
#[derive(Debug, Clone)]
pub(crate) struct Outcomes {
    accepted: Counter,
    anonymous: Counter,
    no_token: Counter,
    invalid_request: Counter,
    insufficient_scope: Counter,
    unavailable: Counter,
    invalid_dpop_proof: Counter,
    use_dpop_nonce: Counter,
    /// By reason: the validator's [`InvalidToken::REASONS`], then [`DPOP_BINDING`].
    invalid_token: Box<[(&'static str, Counter)]>,
}

impl Outcomes {
    /// The counters of `requirement`, labelled with its text as it reads in logs
    /// (`all of [orders:read]`): a value of the configuration, never of a request.
    pub(crate) fn register(requirement: &Requirement) -> Self {
        metrics::describe_counter!(
            AUTH_REQUESTS,
            Unit::Count,
            "Requests judged by a scope layer, by route requirement and outcome (with the reason \
             of an invalid_token outcome)"
        );
        let requirement = requirement.to_string();
        let outcome = |outcome: &'static str| metrics::counter!(AUTH_REQUESTS, "requirement" => requirement.clone(), "outcome" => outcome);
        let invalid_token = InvalidToken::REASONS
            .iter()
            .copied()
            .chain([DPOP_BINDING])
            .map(|reason| {
                let counter = metrics::counter!(
                    AUTH_REQUESTS,
                    "requirement" => requirement.clone(),
                    "outcome" => "invalid_token",
                    "reason" => reason,
                );
                (reason, counter)
            })
            .collect();
        Self {
            accepted: outcome("accepted"),
            anonymous: outcome("anonymous"),
            no_token: outcome("no_token"),
            invalid_request: outcome("invalid_request"),
            insufficient_scope: outcome("insufficient_scope"),
            unavailable: outcome("unavailable"),
            invalid_dpop_proof: outcome("invalid_dpop_proof"),
            use_dpop_nonce: outcome("use_dpop_nonce"),
            invalid_token,
        }
    }

    /// A request let through with a principal.
    pub(crate) fn accepted(&self) {
        self.accepted.increment(1);
    }

    /// A request let through without credentials by an optional layer.
    pub(crate) fn anonymous(&self) {
        self.anonymous.increment(1);
    }

    /// A refused request.
    pub(crate) fn refused(&self, rejection: &Rejection) {
        let counter = match rejection.kind() {
            RejectionKind::MissingToken => &self.no_token,
            RejectionKind::InvalidRequest => &self.invalid_request,
            RejectionKind::InsufficientScope => &self.insufficient_scope,
            RejectionKind::Unavailable => &self.unavailable,
            RejectionKind::InvalidDpopProof => &self.invalid_dpop_proof,
            RejectionKind::UseDpopNonce => &self.use_dpop_nonce,
            RejectionKind::InvalidToken => {
                // Always given for this kind, and one of the names registered (a test of the
                // validator holds its list to its variants).
                let reason = rejection.reason();
                match self
                    .invalid_token
                    .iter()
                    .find(|(name, _)| Some(*name) == reason)
                {
                    Some((_, counter)) => counter,
                    None => return,
                }
            }
        };
        counter.increment(1);
    }
}
