//! The token service's endpoints, called in-process with `app(state).oneshot(..)`.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use axum::body::Body;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{Request, StatusCode, header};
use scopegate_token_service::secret::token_digest;
use scopegate_token_service::store::TokenKey;
use serde_json::json;
use support::*;

// ---- /token: client_credentials -------------------------------------------------------

#[tokio::test]
async fn client_credentials_with_basic_auth_issues_an_rfc9068_jwt() {
    let service = TestService::start().await;
    let answer = service
        .post(
            "/token",
            Some(JWT_CLIENT),
            "grant_type=client_credentials&scope=akamai:social_profile:read",
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(answer.header("cache-control"), "no-store");
    assert_eq!(answer.header("pragma"), "no-cache");
    assert_eq!(answer.json["token_type"], "Bearer");
    assert_eq!(answer.json["expires_in"], 900, "the client's own lifetime");
    assert_eq!(answer.json["scope"], "akamai:social_profile:read");
    assert!(answer.json.get("refresh_token").is_none());
    let token = answer.json["access_token"].as_str().unwrap();
    let (header, claims) = jwt_parts(token);
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(header["alg"], "ES256");
    assert!(header.get("jku").is_none() && header.get("x5u").is_none());
    let kid = header["kid"].as_str().unwrap();
    let jwks = service.get("/.well-known/jwks.json").await;
    assert!(
        jwks.json["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|key| key["kid"] == kid)
    );
    assert_eq!(claims["iss"], "http://127.0.0.1:8080");
    assert_eq!(claims["sub"], "svc-jwt");
    assert_eq!(claims["client_id"], "svc-jwt");
    assert_eq!(claims["aud"], json!([API, OTHER_API]));
    assert_eq!(claims["scope"], "akamai:social_profile:read");
    let iat = claims["iat"].as_u64().unwrap();
    assert_eq!(claims["exp"].as_u64().unwrap() - iat, 900);
    assert_eq!(claims["nbf"].as_u64().unwrap(), iat);
    // The millisecond of issue in hex, then 96 random bits (base64url).
    let jti = claims["jti"].as_str().unwrap();
    assert_eq!(jti.len(), 28);
    let millisecond = u64::from_str_radix(&jti[..12], 16).unwrap();
    assert_eq!(millisecond / 1000, iat);
}

#[tokio::test]
async fn client_secret_post_is_accepted() {
    let service = TestService::start().await;
    let answer = service
        .post(
            "/token",
            None,
            "grant_type=client_credentials&client_id=svc-jwt&client_secret=jwt-secret",
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
}

#[tokio::test]
async fn no_scope_parameter_grants_the_default_scopes() {
    let service = TestService::start().await;
    let token = service.token(JWT_CLIENT, "").await;
    assert_eq!(token["scope"], "akamai:social_profile:read");
    // Without default_scopes, every allowed scope.
    let token = service.token(OPAQUE_CLIENT, "").await;
    assert_eq!(token["scope"], "akamai:social_profile:* other:thing:read");
}

#[tokio::test]
async fn scope_without_suffix_grants_every_allowed_permission() {
    let service = TestService::start().await;
    let token = service
        .token(JWT_CLIENT, "&scope=akamai:social_profile")
        .await;
    assert_eq!(
        token["scope"],
        "akamai:social_profile:read akamai:social_profile:write"
    );
    // `*` allowed covers a named permission.
    let token = service
        .token(OPAQUE_CLIENT, "&scope=akamai:social_profile:delete")
        .await;
    assert_eq!(token["scope"], "akamai:social_profile:delete");
}

#[tokio::test]
async fn ungrantable_scope_is_invalid_scope_naming_it() {
    let service = TestService::start().await;
    let answer = service
        .post(
            "/token",
            Some(JWT_CLIENT),
            "grant_type=client_credentials&scope=akamai:social_profile:read%20akamai:social_profile:delete%20admin",
        )
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.error(), "invalid_scope");
    let description = answer.json["error_description"].as_str().unwrap();
    assert!(
        description.contains("akamai:social_profile:delete"),
        "{description}"
    );
    assert!(description.contains("admin"), "{description}");
    assert!(
        !description.contains("akamai:social_profile:read"),
        "{description}"
    );
    assert_eq!(answer.header("cache-control"), "no-store");
}

#[tokio::test]
async fn malformed_scope_is_invalid_scope() {
    let service = TestService::start().await;
    let answer = service
        .post(
            "/token",
            Some(JWT_CLIENT),
            "grant_type=client_credentials&scope=bad%22scope",
        )
        .await;
    assert_eq!(
        (answer.status, answer.error()),
        (StatusCode::BAD_REQUEST, "invalid_scope")
    );
}

#[tokio::test]
async fn wrong_secret_unknown_client_and_no_credentials_are_invalid_client_with_a_challenge() {
    let service = TestService::start().await;
    for (credentials, body) in [
        (Some(("svc-jwt", "wrong")), "grant_type=client_credentials"),
        (
            Some(("nobody", "jwt-secret")),
            "grant_type=client_credentials",
        ),
        (None, "grant_type=client_credentials"),
        (
            None,
            "grant_type=client_credentials&client_id=svc-jwt&client_secret=wrong",
        ),
        (None, "grant_type=client_credentials&client_id=svc-jwt"),
        // A public client has no secret to authenticate with.
        (None, "grant_type=client_credentials&client_id=web-app"),
    ] {
        let answer = service.post("/token", credentials, body).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{body}");
        assert_eq!(answer.error(), "invalid_client");
        assert_eq!(
            answer.json["error_description"], "client authentication failed",
            "the reason is not disclosed"
        );
        assert!(
            answer
                .header("www-authenticate")
                .starts_with("Basic realm=")
        );
        assert_eq!(answer.header("cache-control"), "no-store");
    }
}

#[tokio::test]
async fn client_without_the_grant_is_unauthorized_client() {
    let service = TestService::start().await;
    let answer = service
        .post(
            "/token",
            Some(("no-cc", "no-cc-secret")),
            "grant_type=client_credentials",
        )
        .await;
    assert_eq!(
        (answer.status, answer.error()),
        (StatusCode::BAD_REQUEST, "unauthorized_client")
    );
}

#[tokio::test]
async fn unknown_or_missing_grant_type_is_refused() {
    let service = TestService::start().await;
    let answer = service
        .post("/token", Some(JWT_CLIENT), "grant_type=password")
        .await;
    assert_eq!(
        (answer.status, answer.error()),
        (StatusCode::BAD_REQUEST, "unsupported_grant_type")
    );
    let answer = service.post("/token", Some(JWT_CLIENT), "scope=x").await;
    assert_eq!(
        (answer.status, answer.error()),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
    assert!(answer.text.contains("grant_type"));
}

#[tokio::test]
async fn duplicated_parameters_are_invalid_request() {
    let service = TestService::start().await;
    for body in [
        "grant_type=client_credentials&grant_type=client_credentials",
        "grant_type=client_credentials&scope=a:b:read&scope=a:b:write",
    ] {
        let answer = service.post("/token", Some(JWT_CLIENT), body).await;
        assert_eq!(
            (answer.status, answer.error()),
            (StatusCode::BAD_REQUEST, "invalid_request"),
            "{body}"
        );
    }
}

#[tokio::test]
async fn wrong_content_type_is_invalid_request() {
    let service = TestService::start().await;
    let request = Request::post("/token")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, basic_header("svc-jwt", "jwt-secret"))
        .body(Body::from(r#"{"grant_type":"client_credentials"}"#))
        .unwrap();
    let answer = service.call(request).await;
    assert_eq!(
        (answer.status, answer.error()),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
}

#[tokio::test]
async fn two_authentication_methods_are_invalid_request() {
    let service = TestService::start().await;
    let answer = service
        .post(
            "/token",
            Some(JWT_CLIENT),
            "grant_type=client_credentials&client_secret=jwt-secret",
        )
        .await;
    assert_eq!(
        (answer.status, answer.error()),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
}

#[tokio::test]
async fn oversized_body_is_refused_before_parsing() {
    let service = TestService::start().await;
    let body = format!(
        "grant_type=client_credentials&scope={}",
        "a".repeat(70 * 1024)
    );
    let answer = service.post("/token", Some(JWT_CLIENT), &body).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn get_on_token_endpoint_is_method_not_allowed() {
    let service = TestService::start().await;
    assert_eq!(
        service.get("/token").await.status,
        StatusCode::METHOD_NOT_ALLOWED
    );
}

#[tokio::test]
async fn resource_narrows_the_audience_and_unknown_resource_is_invalid_target() {
    let service = TestService::start().await;
    let token = service
        .token(JWT_CLIENT, &format!("&resource={}", form_encode(API)))
        .await;
    let (_, claims) = jwt_parts(token["access_token"].as_str().unwrap());
    assert_eq!(claims["aud"], API, "one audience is a string");
    for resource in [
        "https://elsewhere.example.test",
        "not a uri",
        "https://api.example.test#frag",
    ] {
        let answer = service
            .post(
                "/token",
                Some(JWT_CLIENT),
                &format!(
                    "grant_type=client_credentials&resource={}",
                    form_encode(resource)
                ),
            )
            .await;
        assert_eq!(
            (answer.status, answer.error()),
            (StatusCode::BAD_REQUEST, "invalid_target"),
            "{resource}"
        );
    }
}

#[tokio::test]
async fn without_configured_audience_the_owning_apis_are_the_audience() {
    let service = TestService::start().await;
    let token = service
        .token(OPAQUE_CLIENT, "&scope=akamai:social_profile:read")
        .await;
    let answer = service
        .introspect(API_CREDENTIALS, token["access_token"].as_str().unwrap())
        .await;
    assert_eq!(answer.json["aud"], json!([API]));
}

// ---- opaque tokens --------------------------------------------------------------------

#[tokio::test]
async fn opaque_tokens_are_random_and_stored_only_as_digests() {
    let service = TestService::start().await;
    let first = service.token(OPAQUE_CLIENT, "").await;
    let second = service.token(OPAQUE_CLIENT, "").await;
    let token = first["access_token"].as_str().unwrap();
    assert_eq!(
        token.len(),
        54,
        "64 bits of issue time, 256 random bits, base64url"
    );
    assert!(
        token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );
    let decoded = URL_SAFE_NO_PAD.decode(token).unwrap();
    let issued = u64::try_from(service.state.since_epoch().as_micros()).unwrap();
    assert_eq!(decoded[..8], issued.to_be_bytes(), "the issue time, in µs");
    assert_ne!(token, second["access_token"].as_str().unwrap());
    let stored = service
        .state
        .store()
        .find_token(&TokenKey::of(token))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.client_id, "svc-opaque");
    // The database file never holds the token itself.
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(service.dir.path()).unwrap() {
        bytes.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    assert!(
        !bytes
            .windows(token.len())
            .any(|window| window == token.as_bytes())
    );
    assert!(
        bytes
            .windows(32)
            .any(|window| window == token_digest(token))
    );
}

// ---- /introspect -----------------------------------------------------------------------

#[tokio::test]
async fn introspection_of_an_opaque_token_shows_only_the_callers_scopes() {
    let service = TestService::start().await;
    let token = service.token(OPAQUE_CLIENT, "").await;
    let token = token["access_token"].as_str().unwrap();
    let answer = service.introspect(API_CREDENTIALS, token).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.header("cache-control"), "no-store");
    let body = &answer.json;
    assert_eq!(body["active"], true);
    assert_eq!(
        body["scope"], "akamai:social_profile:*",
        "other:thing:read is not this API's"
    );
    assert_eq!(body["client_id"], "svc-opaque");
    assert_eq!(body["sub"], "svc-opaque");
    assert_eq!(body["iss"], "http://127.0.0.1:8080");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(
        body["exp"].as_u64().unwrap() - body["iat"].as_u64().unwrap(),
        3600,
        "default lifetime"
    );
    let other = service.introspect(OTHER_API_CREDENTIALS, token).await;
    assert_eq!(other.json["scope"], "other:thing:read");
}

/// A token issued before opaque tokens carried their issue time (43 characters, stored under
/// its SHA-256 alone) is still found: introspected, then revoked by its client.
#[tokio::test]
async fn opaque_tokens_of_the_earlier_format_still_introspect_and_revoke() {
    let service = TestService::start().await;
    let legacy = scopegate_token_service::secret::random_token();
    assert_eq!(TokenKey::of(&legacy).as_stored().len(), 32);
    let now = service.state.now();
    service
        .state
        .store()
        .insert_token(scopegate_token_service::store::TokenRecord {
            // What the earlier version wrote: the token's SHA-256.
            key: TokenKey::from_digest(token_digest(&legacy)),
            jti: "issued-before".into(),
            client_id: "svc-opaque".into(),
            subject: "svc-opaque".into(),
            scope: "akamai:social_profile:read".into(),
            audience: vec![API.into()],
            issued_at: now,
            expires_at: now + 600,
            revoked_at: None,
            jkt: None,
            act: None,
        })
        .await
        .unwrap();
    let answer = service.introspect(API_CREDENTIALS, &legacy).await;
    assert_eq!(answer.json["active"], true, "{}", answer.text);
    assert_eq!(answer.json["jti"], "issued-before");
    let revoked = service
        .post("/revoke", Some(OPAQUE_CLIENT), &format!("token={legacy}"))
        .await;
    assert_eq!(revoked.status, StatusCode::OK);
    let answer = service.introspect(API_CREDENTIALS, &legacy).await;
    assert_eq!(answer.text, r#"{"active":false}"#);
}

#[tokio::test]
async fn introspection_of_a_jwt_works_too() {
    let service = TestService::start().await;
    let token = service
        .token(
            JWT_CLIENT,
            "&scope=akamai:social_profile:write%20other:thing:read",
        )
        .await;
    let answer = service
        .introspect(API_CREDENTIALS, token["access_token"].as_str().unwrap())
        .await;
    assert_eq!(answer.json["active"], true, "{}", answer.text);
    assert_eq!(answer.json["scope"], "akamai:social_profile:write");
}

#[tokio::test]
async fn token_for_none_of_the_apis_scopes_or_audiences_is_inactive_to_it() {
    let service = TestService::start().await;
    // Only other:thing:read, and (no audience configured) only OTHER_API as audience.
    let token = service
        .token(OPAQUE_CLIENT, "&scope=other:thing:read")
        .await;
    let token = token["access_token"].as_str().unwrap();
    let answer = service.introspect(API_CREDENTIALS, token).await;
    assert_eq!(answer.text, r#"{"active":false}"#);
    let answer = service.introspect(OTHER_API_CREDENTIALS, token).await;
    assert_eq!(answer.json["active"], true);
}

#[tokio::test]
async fn token_addressed_to_the_api_is_active_even_without_its_scopes() {
    let service = TestService::start().await;
    let token = service
        .token(
            JWT_CLIENT,
            &format!("&scope=other:thing:read&resource={}", form_encode(API)),
        )
        .await;
    let answer = service
        .introspect(API_CREDENTIALS, token["access_token"].as_str().unwrap())
        .await;
    assert_eq!(answer.json["active"], true);
    assert_eq!(answer.json["scope"], "");
}

#[tokio::test]
async fn anything_not_active_is_exactly_active_false() {
    let service = TestService::start().await;
    let jwt = service.token(JWT_CLIENT, "").await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut tampered = jwt.clone();
    tampered.pop();
    tampered.push(if jwt.ends_with('A') { 'B' } else { 'A' });
    for token in [
        "unknown-token".to_owned(),
        "a.b.c".to_owned(),
        "x".repeat(10_000),
        tampered,
        "ünïcödé".to_owned(),
    ] {
        let answer = service.introspect(API_CREDENTIALS, &token).await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.text, r#"{"active":false}"#, "{token}");
    }
}

#[tokio::test]
async fn expired_tokens_are_inactive() {
    let service = TestService::start().await;
    let jwt = service.token(JWT_CLIENT, "").await;
    let opaque = service.token(OPAQUE_CLIENT, "").await;
    service.advance(Duration::from_secs(3600));
    for token in [&jwt, &opaque] {
        let answer = service
            .introspect(API_CREDENTIALS, token["access_token"].as_str().unwrap())
            .await;
        assert_eq!(answer.text, r#"{"active":false}"#);
    }
}

#[tokio::test]
async fn introspection_needs_api_credentials() {
    let service = TestService::start().await;
    let token = service.token(OPAQUE_CLIENT, "").await;
    let token = token["access_token"].as_str().unwrap();
    for credentials in [Some((API, "wrong")), Some(JWT_CLIENT), None] {
        let answer = service
            .post("/introspect", credentials, &format!("token={token}"))
            .await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
        assert_eq!(answer.error(), "invalid_client");
        assert!(answer.header("www-authenticate").starts_with("Basic"));
    }
    let answer = service.post("/introspect", Some(API_CREDENTIALS), "").await;
    assert_eq!(
        (answer.status, answer.error()),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
}

// ---- /revoke ---------------------------------------------------------------------------

#[tokio::test]
async fn a_client_revokes_its_own_opaque_token_at_once() {
    let service = TestService::start().await;
    let token = service.token(OPAQUE_CLIENT, "").await;
    let token = token["access_token"].as_str().unwrap();
    let answer = service
        .post(
            "/revoke",
            Some(OPAQUE_CLIENT),
            &format!("token={token}&token_type_hint=access_token"),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    let answer = service.introspect(API_CREDENTIALS, token).await;
    assert_eq!(answer.text, r#"{"active":false}"#);
    // Revoking again is still 200.
    let answer = service
        .post("/revoke", Some(OPAQUE_CLIENT), &format!("token={token}"))
        .await;
    assert_eq!(answer.status, StatusCode::OK);
}

#[tokio::test]
async fn a_client_cannot_revoke_another_clients_token() {
    let service = TestService::start().await;
    let token = service.token(OPAQUE_CLIENT, "").await;
    let token = token["access_token"].as_str().unwrap();
    let answer = service
        .post("/revoke", Some(JWT_CLIENT), &format!("token={token}"))
        .await;
    assert_eq!(
        (answer.status, answer.error()),
        (StatusCode::BAD_REQUEST, "unauthorized_client")
    );
    let answer = service.introspect(API_CREDENTIALS, token).await;
    assert_eq!(answer.json["active"], true);
}

#[tokio::test]
async fn revoking_an_unknown_token_is_ok() {
    let service = TestService::start().await;
    let answer = service
        .post("/revoke", Some(JWT_CLIENT), "token=never-issued")
        .await;
    assert_eq!(answer.status, StatusCode::OK);
}

#[tokio::test]
async fn revocation_needs_client_credentials() {
    let service = TestService::start().await;
    let answer = service
        .post("/revoke", Some(("svc-jwt", "wrong")), "token=x")
        .await;
    assert_eq!(
        (answer.status, answer.error()),
        (StatusCode::UNAUTHORIZED, "invalid_client")
    );
}

#[tokio::test]
async fn a_revoked_jwt_is_inactive_at_introspection() {
    let service = TestService::start().await;
    let token = service.token(JWT_CLIENT, "").await;
    let token = token["access_token"].as_str().unwrap();
    let answer = service
        .post("/revoke", Some(JWT_CLIENT), &format!("token={token}"))
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    let answer = service.introspect(API_CREDENTIALS, token).await;
    assert_eq!(answer.text, r#"{"active":false}"#);
}

#[tokio::test]
async fn a_jwt_verified_before_is_still_checked_for_revocation_and_expiry() {
    let service = TestService::start().await;
    // Introspected twice (the second answer comes from the verified-JWT cache), then revoked.
    let token = service.token(JWT_CLIENT, "").await;
    let token = token["access_token"].as_str().unwrap();
    for _ in 0..2 {
        let answer = service.introspect(API_CREDENTIALS, token).await;
        assert_eq!(answer.json["active"], true, "{}", answer.text);
    }
    let answer = service
        .post("/revoke", Some(JWT_CLIENT), &format!("token={token}"))
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    let answer = service.introspect(API_CREDENTIALS, token).await;
    assert_eq!(answer.text, r#"{"active":false}"#);
    // Verified, then expired (the default lifetime is an hour).
    let token = service.token(JWT_CLIENT, "").await;
    let token = token["access_token"].as_str().unwrap();
    let answer = service.introspect(API_CREDENTIALS, token).await;
    assert_eq!(answer.json["active"], true, "{}", answer.text);
    service.advance(std::time::Duration::from_secs(3600));
    let answer = service.introspect(API_CREDENTIALS, token).await;
    assert_eq!(answer.text, r#"{"active":false}"#);
    // A token differing from a verified one by a byte is verified on its own, and fails.
    let token = service.token(JWT_CLIENT, "").await;
    let token = token["access_token"].as_str().unwrap();
    let answer = service.introspect(API_CREDENTIALS, token).await;
    assert_eq!(answer.json["active"], true, "{}", answer.text);
    // A byte in the middle of the signature, where every bit counts.
    let at = token.len() - 20;
    let replacement = if &token[at..=at] == "A" { "B" } else { "A" };
    let tampered = format!("{}{replacement}{}", &token[..at], &token[at + 1..]);
    let answer = service.introspect(API_CREDENTIALS, &tampered).await;
    assert_eq!(answer.text, r#"{"active":false}"#);
}

// ---- keys, discovery, health -----------------------------------------------------------

#[tokio::test]
async fn jwks_publishes_public_keys_with_a_max_age() {
    let service = TestService::start().await;
    let answer = service.get("/.well-known/jwks.json").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.header("cache-control"), "public, max-age=300");
    let keys = answer.json["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    let key = keys[0].as_object().unwrap();
    assert_eq!(key["kty"], "EC");
    assert_eq!(key["crv"], "P-256");
    assert!(key.contains_key("kid"));
    assert!(!key.contains_key("d"), "no private member");
}

#[tokio::test]
async fn discovery_documents_name_the_configured_issuer_exactly() {
    let service =
        TestService::start_with(&config_text("http://127.0.0.1:8080/tenant/", "ES256")).await;
    for path in [
        "/.well-known/openid-configuration",
        "/.well-known/oauth-authorization-server",
    ] {
        let answer = service.get(path).await;
        assert_eq!(answer.status, StatusCode::OK);
        let metadata = &answer.json;
        assert_eq!(metadata["issuer"], "http://127.0.0.1:8080/tenant/");
        assert_eq!(
            metadata["token_endpoint"],
            "http://127.0.0.1:8080/tenant/token"
        );
        assert_eq!(
            metadata["jwks_uri"],
            "http://127.0.0.1:8080/tenant/.well-known/jwks.json"
        );
        assert_eq!(
            metadata["introspection_endpoint"],
            "http://127.0.0.1:8080/tenant/introspect"
        );
        assert_eq!(
            metadata["revocation_endpoint"],
            "http://127.0.0.1:8080/tenant/revoke"
        );
        assert_eq!(
            metadata["authorization_endpoint"],
            "http://127.0.0.1:8080/tenant/authorize"
        );
        assert_eq!(
            metadata["grant_types_supported"],
            json!([
                "client_credentials",
                "authorization_code",
                "refresh_token",
                "urn:ietf:params:oauth:grant-type:token-exchange"
            ])
        );
        assert_eq!(
            metadata["code_challenge_methods_supported"],
            json!(["S256"])
        );
        assert_eq!(
            metadata["authorization_response_iss_parameter_supported"],
            true
        );
        assert_eq!(
            metadata["token_endpoint_auth_methods_supported"],
            json!([
                "client_secret_basic",
                "client_secret_post",
                "private_key_jwt",
                "none"
            ])
        );
        assert_eq!(
            metadata["introspection_endpoint_auth_methods_supported"],
            json!([
                "client_secret_basic",
                "client_secret_post",
                "private_key_jwt"
            ])
        );
        // Public clients revoke with their client_id alone.
        assert_eq!(
            metadata["revocation_endpoint_auth_methods_supported"],
            json!([
                "client_secret_basic",
                "client_secret_post",
                "private_key_jwt",
                "none"
            ])
        );
        // RFC 8414 §2: each endpoint listing private_key_jwt names its signing algorithms.
        for endpoint in ["token", "introspection", "revocation"] {
            let algorithms =
                &metadata[format!("{endpoint}_endpoint_auth_signing_alg_values_supported")];
            assert!(
                algorithms
                    .as_array()
                    .is_some_and(|list| list.contains(&json!("ES256"))),
                "{endpoint}"
            );
        }
    }
}

#[tokio::test]
async fn health_and_readiness() {
    let service = TestService::start().await;
    assert_eq!(service.get("/healthz").await.status, StatusCode::OK);
    let ready = service.get("/readyz").await;
    assert_eq!(
        (ready.status, ready.text.as_str()),
        (StatusCode::OK, "ready")
    );
}

#[tokio::test]
async fn rotated_key_is_announced_then_signs_and_the_old_one_stays_until_its_tokens_expire() {
    let service = TestService::start().await;
    let state = &service.state;
    let old_token = service.token(JWT_CLIENT, "").await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (old_header, _) = jwt_parts(&old_token);

    let now = state.now();
    let current = old_header["kid"].as_str().unwrap().to_owned();
    let key = scopegate_token_service::rotation::add_key(
        &**state.store(),
        &state.config().encryption,
        scopegate_token_service::keys::KeyAlgorithm::Es256,
        Some(&current),
        now,
        now + 600,
    )
    .await
    .unwrap()
    .expect("the only rotation of this key");
    state.reload_keys().await.unwrap();
    let kids = |answer: &Answer| -> Vec<String> {
        answer.json["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|key| key["kid"].as_str().unwrap().to_owned())
            .collect()
    };
    // Announced: published, not signing.
    let published = kids(&service.get("/.well-known/jwks.json").await);
    assert_eq!(published.len(), 2);
    assert!(published.contains(&key.kid));
    let during = service.token(JWT_CLIENT, "").await;
    assert_eq!(
        jwt_parts(during["access_token"].as_str().unwrap()).0["kid"],
        old_header["kid"]
    );

    // Active: the new key signs; the old one is still published and its tokens still verify.
    service.advance(Duration::from_secs(600));
    let new_token = service.token(JWT_CLIENT, "").await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(jwt_parts(&new_token).0["kid"], key.kid.as_str());
    assert_eq!(kids(&service.get("/.well-known/jwks.json").await).len(), 2);
    let answer = service
        .introspect(API_CREDENTIALS, during["access_token"].as_str().unwrap())
        .await;
    assert_eq!(answer.json["active"], true);

    // After the longest token lifetime (60 min default) plus a minute, the old key is gone.
    service.advance(Duration::from_secs(3600 + 60));
    assert_eq!(
        kids(&service.get("/.well-known/jwks.json").await),
        std::slice::from_ref(&key.kid)
    );
}

#[tokio::test]
async fn tokens_and_keys_survive_a_restart() {
    let service = TestService::start().await;
    let opaque = service.token(OPAQUE_CLIENT, "").await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let jwt = service.token(JWT_CLIENT, "").await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let revoked = service.token(OPAQUE_CLIENT, "").await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    service
        .post("/revoke", Some(OPAQUE_CLIENT), &format!("token={revoked}"))
        .await;
    let config = config_text("http://127.0.0.1:8080", "ES256");
    let restarted = TestService {
        state: TestService::open(&config, &service.url, &service.clock).await,
        clock: service.clock.clone(),
        url: service.url.clone(),
        dir: tempfile::tempdir().unwrap(),
    };
    drop(service.state);
    for token in [&opaque, &jwt] {
        let answer = restarted.introspect(API_CREDENTIALS, token).await;
        assert_eq!(answer.json["active"], true, "{token}");
    }
    let answer = restarted.introspect(API_CREDENTIALS, &revoked).await;
    assert_eq!(answer.text, r#"{"active":false}"#);
    let newer = restarted.token(JWT_CLIENT, "").await;
    assert_eq!(
        jwt_parts(newer["access_token"].as_str().unwrap()).0["kid"],
        jwt_parts(&jwt).0["kid"],
        "the same key signs after the restart"
    );
}

#[tokio::test]
async fn sweep_removes_expired_opaque_tokens() {
    let service = TestService::start().await;
    let token = service.token(OPAQUE_CLIENT, "").await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let key = TokenKey::of(&token);
    service.advance(Duration::from_secs(3600 + 61));
    service.state.sweep().await;
    assert!(
        service
            .state
            .store()
            .find_token(&key)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn every_signing_algorithm_issues_verifiable_tokens() {
    for algorithm in ["RS256", "ES256", "EdDSA"] {
        let service =
            TestService::start_with(&config_text("http://127.0.0.1:8080", algorithm)).await;
        let token = service.token(JWT_CLIENT, "").await;
        let token = token["access_token"].as_str().unwrap();
        assert_eq!(jwt_parts(token).0["alg"], algorithm);
        let answer = service.introspect(API_CREDENTIALS, token).await;
        assert_eq!(answer.json["active"], true, "{algorithm}");
    }
}
