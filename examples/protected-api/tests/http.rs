//! The example API over real HTTP, against an in-process fake IdP: JWTs signed with RS256,
//! ES256 and EdDSA, opaque tokens through introspection, and DPoP-bound tokens with proofs —
//! the API as `main` runs it, DPoP allowed.

#![allow(clippy::unwrap_used)]

#[path = "../../../validator/tests/support/mod.rs"]
mod support;

#[path = "../../../tower-layer/tests/support/dpop_client.rs"]
mod dpop_client;

use dpop_client::DpopClient;
use example_protected_api::{Config, app_with};
use reqwest::StatusCode;
use scopegate_validator::MockClock;
use serde_json::{Value, json};
use support::{API_ID, API_SECRET, AUDIENCE, FakeIdp, SigningKey};

struct Running {
    base: String,
    client: reqwest::Client,
}

async fn start(idp: &FakeIdp) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let config = Config {
        issuer: idp.issuer.clone(),
        audience: AUDIENCE.to_owned(),
        introspection: Some((API_ID.to_owned(), API_SECRET.to_owned())),
        revocation_events: None,
        revocation_events_max_blind: None,
        listen: listener.local_addr().unwrap().to_string(),
        resource: None,
        external_origin: None,
        metrics_listen: None,
        downstream: None,
    };
    assert_eq!(config.origin(), base, "derived from LISTEN");
    let validator = config.validator().unwrap();
    let router = app_with(&validator, None, Some(&config.dpop().unwrap())).unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    Running {
        base,
        client: reqwest::Client::new(),
    }
}

impl Running {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
    ) -> (StatusCode, String, Option<String>) {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request = request
            .header("content-type", "application/json")
            .body(r#"{"nickname":"j"}"#);
        let response = request.send().await.unwrap();
        let challenge = response
            .headers()
            .get("www-authenticate")
            .map(|value| value.to_str().unwrap().to_owned());
        (response.status(), response.text().await.unwrap(), challenge)
    }
}

#[tokio::test]
async fn jwts_of_every_algorithm_are_checked_by_scope_over_http() {
    let keys = [
        SigningKey::rs256("rs"),
        SigningKey::es256("es"),
        SigningKey::eddsa("ed"),
    ];
    let idp = FakeIdp::start(&keys.iter().collect::<Vec<_>>()).await;
    let api = start(&idp).await;
    let clock = MockClock::at_system_time();

    let (status, _, _) = api.send(reqwest::Method::GET, "/public", None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, challenge) = api.send(reqwest::Method::GET, "/profile", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(challenge.as_deref(), Some(r#"Bearer realm="api""#));

    for key in &keys {
        let mut claims = idp.claims(&clock);
        claims["scope"] = json!("akamai:social_profile:read akamai:social_profile:write");
        let token = key.sign(&claims);
        let (status, body, _) = api
            .send(reqwest::Method::GET, "/profile", Some(&token))
            .await;
        assert_eq!(status, StatusCode::OK, "{}: {body}", key.alg);
        let (status, body, _) = api
            .send(reqwest::Method::PUT, "/profile", Some(&token))
            .await;
        assert_eq!(status, StatusCode::OK, "{}: {body}", key.alg);
        let (status, _, challenge) = api
            .send(reqwest::Method::DELETE, "/profile", Some(&token))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{}", key.alg);
        assert_eq!(
            challenge.as_deref(),
            Some(
                r#"Bearer realm="api", error="insufficient_scope", scope="akamai:social_profile:delete""#
            )
        );
        let (status, body, _) = api.send(reqwest::Method::GET, "/me", Some(&token)).await;
        assert_eq!(status, StatusCode::OK);
        let me: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            me,
            json!({
                "sub": "user-1",
                "client_id": "client-1",
                "scopes": ["akamai:social_profile:read", "akamai:social_profile:write"],
                "actors": [],
            })
        );
    }

    let (status, _, challenge) = api.send(reqwest::Method::GET, "/me", Some("a.b.c")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        challenge.as_deref(),
        Some(r#"Bearer realm="api", error="invalid_token""#)
    );
}

#[tokio::test]
async fn opaque_tokens_are_checked_through_introspection_over_http() {
    let idp = FakeIdp::start(&[&SigningKey::es256("es")]).await;
    let api = start(&idp).await;
    let clock = MockClock::at_system_time();
    let mut answer = idp.active_answer(&clock, 600);
    answer["scope"] = json!("akamai:social_profile:*");
    idp.set_answer("opaque-token-1", answer);

    for method in [reqwest::Method::GET, reqwest::Method::PUT] {
        let (status, body, _) = api.send(method, "/profile", Some("opaque-token-1")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, body, _) = api
        .send(reqwest::Method::DELETE, "/profile", Some("opaque-token-1"))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, _, challenge) = api
        .send(reqwest::Method::GET, "/me", Some("revoked-or-unknown"))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        challenge.as_deref(),
        Some(r#"Bearer realm="api", error="invalid_token""#)
    );
    assert_eq!(
        idp.introspection_calls(),
        2,
        "the opaque token was introspected once, then cached"
    );
}

#[tokio::test]
async fn a_dpop_bound_token_is_accepted_with_its_proof_and_refused_without_over_http() {
    let key = SigningKey::es256("es");
    let idp = FakeIdp::start(&[&key]).await;
    let api = start(&idp).await;
    // The validator runs on the system clock; proofs are dated by a clock standing at now.
    let clock = MockClock::at_system_time();
    let client = DpopClient::es256();
    let mut claims = idp.claims(&clock);
    claims["cnf"] = json!({ "jkt": client.jkt() });
    let token = key.sign(&claims);
    let url = format!("{}/me", api.base);
    let send = |proof: Option<String>, scheme: &str| {
        let mut request = api
            .client
            .get(&url)
            .header("authorization", format!("{scheme} {token}"));
        if let Some(proof) = proof {
            request = request.header("dpop", proof);
        }
        request.send()
    };
    let challenges = |response: &reqwest::Response| -> Vec<String> {
        response
            .headers()
            .get_all("www-authenticate")
            .iter()
            .map(|value| value.to_str().unwrap().to_owned())
            .collect()
    };

    let proof = client.proof(&clock, "GET", &url, &token);
    let response = send(Some(proof.clone()), "DPoP").await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let me: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(me["sub"], "user-1");

    // The same proof again, the token as a bearer token, a proof for another host: refused.
    let replay = send(Some(proof), "DPoP").await.unwrap();
    assert_eq!(replay.status(), StatusCode::UNAUTHORIZED);
    let replay_challenges = challenges(&replay);
    assert_eq!(replay_challenges.len(), 2, "{replay_challenges:?}");
    assert_eq!(replay_challenges[0], r#"Bearer realm="api""#);
    assert!(
        replay_challenges[1].starts_with(r#"DPoP realm="api", error="invalid_dpop_proof", algs=""#),
        "{replay_challenges:?}"
    );
    let as_bearer = send(None, "Bearer").await.unwrap();
    assert_eq!(as_bearer.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        challenges(&as_bearer)[0],
        r#"Bearer realm="api", error="invalid_token""#
    );
    let elsewhere = client.proof(&clock, "GET", "https://evil.example/me", &token);
    let response = send(Some(elsewhere), "DPoP").await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    // An unbound token is still accepted as a bearer token (DPoP is allowed, not required).
    let bearer = key.sign(&idp.claims(&clock));
    let (status, _, _) = api.send(reqwest::Method::GET, "/me", Some(&bearer)).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_revoked_token_is_refused_over_http_once_its_event_arrives() {
    use support::transmitter::Transmitter;
    let tx = Transmitter::start(&MockClock::at_system_time()).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let config = Config::from_lookup(|name| match name {
        "ISSUER" => Some(tx.issuer.clone()),
        "AUDIENCE" => Some(AUDIENCE.to_owned()),
        "REVOCATION_EVENTS_CLIENT_ID" => Some(API_ID.to_owned()),
        "REVOCATION_EVENTS_CLIENT_SECRET" => Some(API_SECRET.to_owned()),
        _ => None,
    })
    .unwrap();
    let validator = config.validator().unwrap();
    let router = app_with(&validator, None, None).unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let client = reqwest::Client::new();
    let me = |token: String| client.get(format!("{base}/me")).bearer_auth(token).send();

    let revoked = tx.token(json!({"jti": "revoked-at-the-issuer"}));
    let kept = tx.token(json!({}));
    assert_eq!(me(revoked.clone()).await.unwrap().status(), StatusCode::OK);
    tx.wait_for_ack(&tx.revoke_jti("revoked-at-the-issuer"))
        .await;
    let refused = me(revoked).await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        refused.headers()["www-authenticate"],
        r#"Bearer realm="api", error="invalid_token""#
    );
    assert_eq!(me(kept).await.unwrap().status(), StatusCode::OK);
}
