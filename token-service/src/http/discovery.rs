//! Discovery (RFC 8414 and OpenID Connect Discovery 1.0) and the JWKS.

use std::collections::BTreeSet;

use axum::Json;
use axum::extract::State as Shared;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, header};
use serde_json::json;

use crate::State;
use crate::config::CustomScope;

const AUTH_METHODS: [&str; 3] = [
    "client_secret_basic",
    "client_secret_post",
    "private_key_jwt",
];

pub(super) async fn metadata(Shared(state): Shared<State>) -> Response {
    let config = state.config();
    let base = config.base_url();
    let algorithm = config.signing.algorithm.as_str();
    let mut scopes: Vec<String> = ["openid", "profile", "email", "phone", "address"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    // The claim scopes defined now, the store's too.
    let custom = match state.scopes().definitions().await {
        Ok(custom) => custom,
        Err(error) => return crate::error::OAuthError::from(error).into_response(),
    };
    scopes.extend(
        custom
            .all()
            .iter()
            .map(|scope| scope.name.as_str().to_owned()),
    );
    let claims = claims_supported(custom.all());
    let assertion_algorithms = crate::client_assertion::ALGORITHMS.map(|alg| alg.as_str());
    let mut response = Json(json!({
        "issuer": config.issuer,
        "authorization_endpoint": format!("{base}/authorize"),
        "token_endpoint": format!("{base}/token"),
        "userinfo_endpoint": format!("{base}/userinfo"),
        "jwks_uri": format!("{base}/.well-known/jwks.json"),
        "introspection_endpoint": format!("{base}/introspect"),
        "revocation_endpoint": format!("{base}/revoke"),
        "end_session_endpoint": format!("{base}/logout"),
        "grant_types_supported": [
            "client_credentials", "authorization_code", "refresh_token",
            crate::config::TOKEN_EXCHANGE,
        ],
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": true,
        "subject_types_supported": ["public"],
        "scopes_supported": scopes,
        "claims_supported": claims,
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"],
        "token_endpoint_auth_signing_alg_values_supported": assertion_algorithms,
        "introspection_endpoint_auth_methods_supported": AUTH_METHODS,
        "introspection_endpoint_auth_signing_alg_values_supported": assertion_algorithms,
        // Public clients revoke their tokens with their client_id alone (RFC 7009 §2.1).
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"],
        "revocation_endpoint_auth_signing_alg_values_supported": assertion_algorithms,
        "id_token_signing_alg_values_supported": [algorithm],
        "dpop_signing_alg_values_supported": crate::dpop::PROOF_ALGORITHMS.map(|alg| alg.as_str()),
    }))
    .into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    response
}

/// The claims an id_token or `/userinfo` may carry: the standard ones this service supplies,
/// then every defined scope's own (OpenID Connect Discovery 1.0 §3), each named once.
fn claims_supported(custom: &[CustomScope]) -> Vec<&str> {
    #[rustfmt::skip]
    const STANDARD: [&str; 23] = [
        "sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "sid", "at_hash", "acr",
        "name", "given_name", "middle_name", "family_name", "nickname", "birthdate", "gender",
        "updated_at", "email", "email_verified", "phone_number", "phone_number_verified",
        "address",
    ];
    let defined: BTreeSet<&str> = custom
        .iter()
        .flat_map(|scope| scope.claims.keys().map(String::as_str))
        .filter(|claim| !STANDARD.contains(claim))
        .collect();
    STANDARD.into_iter().chain(defined).collect()
}

pub(super) async fn jwks(Shared(state): Shared<State>) -> Response {
    let document = state.keys().jwks(state.now());
    let mut response = Json(document).into_response();
    let max_age = state.config().signing.jwks_max_age.as_secs();
    if let Ok(value) = HeaderValue::from_str(&format!("public, max-age={max_age}")) {
        response.headers_mut().insert(header::CACHE_CONTROL, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(name: &str, claims: &[&str]) -> CustomScope {
        CustomScope {
            name: name.parse().unwrap(),
            claims: claims
                .iter()
                .map(|claim| ((*claim).to_owned(), "attribute".to_owned()))
                .collect(),
            access_token: false,
            source: crate::config::claim_source::ATTRIBUTES.to_owned(),
        }
    }

    #[test]
    fn claims_supported_names_each_claim_once_standard_ones_first() {
        let custom = [
            scope("hr:department:read", &["department", "email"]),
            scope("hr:team:read", &["team", "department"]),
        ];
        let claims = claims_supported(&custom);
        assert_eq!(claims[0], "sub");
        assert_eq!(claims[claims.len() - 2..], ["department", "team"]);
        for claim in ["department", "email", "team", "address"] {
            let named = claims.iter().filter(|named| **named == claim).count();
            assert_eq!(named, 1, "{claim} in {claims:?}");
        }
        assert_eq!(claims_supported(&[]).len(), 23);
    }
}
