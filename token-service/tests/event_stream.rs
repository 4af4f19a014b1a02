//! The revocation event stream over HTTP (docs/revocation-events.md): SSF metadata, the API's
//! stream configuration, RFC 8936 poll and its held (long) form, with SETs checked against the
//! service's published keys.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::time::Duration;

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};
use axum::body::Body;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{Request, StatusCode, header};
use serde_json::{Value, json};
use support::{
    API, API_CREDENTIALS, Answer, OPAQUE_CLIENT, OTHER_API, TestService, basic_header, config_text,
};

const TOKEN_REVOKED: &str = "https://scopegate.dev/secevent/event-type/token-revoked";
const SESSION_REVOKED: &str = "https://schemas.openid.net/secevent/caep/event-type/session-revoked";
const ACCOUNT_PURGED: &str = "https://schemas.openid.net/secevent/risc/event-type/account-purged";
const CREDENTIAL_CHANGE: &str =
    "https://schemas.openid.net/secevent/caep/event-type/credential-change";
const CLIENT_DELETED: &str = "https://scopegate.dev/secevent/event-type/client-deleted";
const JWT_CLIENT: (&str, &str) = ("svc-jwt", "jwt-secret");

async fn poll(service: &TestService, credentials: (&str, &str), body: &Value) -> Answer {
    let request = Request::post("/ssf/poll")
        .header(header::CONTENT_TYPE, "application/json")
        .header(
            header::AUTHORIZATION,
            basic_header(credentials.0, credentials.1),
        )
        .body(Body::from(body.to_string()))
        .unwrap();
    service.call(request).await
}

/// The SETs of a poll answer, each checked against the service's JWKS (ES256): header,
/// signature, issuer and audience. Sorted by event id position.
async fn verified_sets(service: &TestService, answer: &Answer) -> Vec<(String, Value)> {
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    let jwks = service.get("/.well-known/jwks.json").await.json;
    let mut sets: Vec<(String, Value)> = answer.json["sets"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(id, token)| (id.clone(), verify(&jwks, token.as_str().unwrap())))
        .collect();
    for (id, claims) in &sets {
        assert_eq!(claims["jti"], id.as_str());
        assert_eq!(claims["iss"], "http://127.0.0.1:8080");
        assert_eq!(claims["aud"], API);
        assert!(claims["toe"].as_u64().is_some());
        assert!(claims.get("exp").is_none(), "a SET has no exp");
    }
    sets.sort_by_key(|(id, _)| position(id));
    sets
}

fn position(id: &str) -> u64 {
    id.rsplit_once('-').unwrap().1.parse().unwrap()
}

fn verify(jwks: &Value, token: &str) -> Value {
    let mut parts = token.split('.');
    let (header, claims, signature) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
    assert_eq!(header["typ"], "secevent+jwt");
    assert_eq!(header["alg"], "ES256");
    let key = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|key| key["kid"] == header["kid"])
        .expect("the SET's key is published");
    let coordinate = |name: &str| URL_SAFE_NO_PAD.decode(key[name].as_str().unwrap()).unwrap();
    let point = [vec![4], coordinate("x"), coordinate("y")].concat();
    let input = &token[..token.rfind('.').unwrap()];
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
        .verify(
            input.as_bytes(),
            &URL_SAFE_NO_PAD.decode(signature).unwrap(),
        )
        .expect("the SET's signature verifies");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap()
}

fn now_ish() -> Value {
    json!({ "returnImmediately": true })
}

#[tokio::test]
async fn metadata_and_stream_configuration_describe_the_poll_endpoint() {
    let service = TestService::start().await;
    let metadata = service.get("/.well-known/ssf-configuration").await;
    assert_eq!(metadata.status, StatusCode::OK);
    assert_eq!(metadata.json["issuer"], "http://127.0.0.1:8080");
    assert_eq!(
        metadata.json["jwks_uri"],
        "http://127.0.0.1:8080/.well-known/jwks.json"
    );
    assert_eq!(
        metadata.json["delivery_methods_supported"],
        json!(["urn:ietf:rfc:8936"])
    );
    let configuration_endpoint = metadata.json["configuration_endpoint"].as_str().unwrap();
    assert_eq!(configuration_endpoint, "http://127.0.0.1:8080/ssf/stream");

    let request = |credentials: Option<(&str, &str)>| {
        let mut request = Request::get("/ssf/stream");
        if let Some((id, secret)) = credentials {
            request = request.header(header::AUTHORIZATION, basic_header(id, secret));
        }
        request.body(Body::empty()).unwrap()
    };
    let stream = service.call(request(Some(API_CREDENTIALS))).await;
    assert_eq!(stream.status, StatusCode::OK, "{}", stream.text);
    assert_eq!(stream.json["aud"], API);
    assert_eq!(stream.json["stream_id"], API);
    assert_eq!(
        stream.json["delivery"],
        json!({ "method": "urn:ietf:rfc:8936", "endpoint_url": "http://127.0.0.1:8080/ssf/poll" })
    );
    assert_eq!(stream.json["events_delivered"].as_array().unwrap().len(), 5);

    // Only registered APIs: not an anonymous caller, a wrong secret, or a client.
    for credentials in [None, Some((API, "wrong")), Some(JWT_CLIENT)] {
        let refused = service.call(request(credentials)).await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{credentials:?}");
        assert!(refused.headers.contains_key(header::WWW_AUTHENTICATE));
        let polled = poll(
            &service,
            credentials.unwrap_or(("nobody", "nothing")),
            &now_ish(),
        )
        .await;
        assert_eq!(polled.status, StatusCode::UNAUTHORIZED, "{credentials:?}");
    }
}

#[tokio::test]
async fn a_revoked_token_is_delivered_signed_and_acknowledged_events_are_not_sent_again() {
    let service = TestService::start().await;
    let empty = poll(&service, API_CREDENTIALS, &now_ish()).await;
    assert_eq!(
        empty.json,
        json!({ "sets": {}, "moreAvailable": false }),
        "{}",
        empty.text
    );

    let jwt = service.access_token(JWT_CLIENT).await;
    let jti = claims_of(&jwt)["jti"].as_str().unwrap().to_owned();
    let exp = claims_of(&jwt)["exp"].as_u64().unwrap();
    let revoked = service
        .post("/revoke", Some(JWT_CLIENT), &format!("token={jwt}"))
        .await;
    assert_eq!(revoked.status, StatusCode::OK);
    let opaque = service.access_token(OPAQUE_CLIENT).await;
    service
        .post("/revoke", Some(OPAQUE_CLIENT), &format!("token={opaque}"))
        .await;

    let answer = poll(&service, API_CREDENTIALS, &now_ish()).await;
    let sets = verified_sets(&service, &answer).await;
    assert_eq!(sets.len(), 2, "{}", answer.text);
    assert_eq!(answer.json["moreAvailable"], false);
    let (first_id, first) = &sets[0];
    assert_eq!(first["sub_id"], json!({ "format": "opaque", "id": jti }));
    let event = &first["events"][TOKEN_REVOKED];
    assert_eq!(event["identifier"], "jti");
    assert_eq!(event["tokens_expire_by"], exp);
    let (second_id, second) = &sets[1];
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, opaque.as_bytes());
    assert_eq!(
        second["sub_id"],
        json!({ "format": "opaque", "id": URL_SAFE_NO_PAD.encode(digest.as_ref()) })
    );
    assert_eq!(second["events"][TOKEN_REVOKED]["identifier"], "sha256");

    // Acknowledging the first continues after it; the second alone (or an error report of it)
    // continues after both. The other API receives the same events, addressed to it.
    let after_first = poll(
        &service,
        API_CREDENTIALS,
        &json!({ "ack": [first_id], "returnImmediately": true }),
    )
    .await;
    let rest = verified_sets(&service, &after_first).await;
    assert_eq!(
        rest.iter().map(|(id, _)| id).collect::<Vec<_>>(),
        [second_id]
    );
    for acknowledged in [
        json!({ "ack": [first_id, second_id], "returnImmediately": true }),
        json!({ "setErrs": { (second_id.clone()): { "err": "invalid_key", "description": "x" } }, "returnImmediately": true }),
    ] {
        let done = poll(&service, API_CREDENTIALS, &acknowledged).await;
        assert_eq!(done.json["sets"], json!({}), "{acknowledged}");
    }
    let other = poll(&service, (OTHER_API, "other-secret"), &now_ish()).await;
    let other_sets = other.json["sets"].as_object().unwrap();
    assert_eq!(other_sets.len(), 2);
    let other_claims = claims_of(other_sets[first_id].as_str().unwrap());
    assert_eq!(other_claims["aud"], OTHER_API);

    // Acknowledgements that are not this stream's start over from the oldest event kept.
    for foreign in [
        "ffffffffffff-1",
        "not an id",
        &format!("{}-99999", first_id.rsplit_once('-').unwrap().0),
    ] {
        let again = poll(
            &service,
            API_CREDENTIALS,
            &json!({ "ack": [foreign], "returnImmediately": true }),
        )
        .await;
        assert_eq!(
            again.json["sets"].as_object().unwrap().len(),
            2,
            "{foreign}"
        );
    }

    // maxEvents pages; 0 only acknowledges.
    let page = poll(
        &service,
        API_CREDENTIALS,
        &json!({ "maxEvents": 1, "returnImmediately": true }),
    )
    .await;
    assert_eq!(page.json["sets"].as_object().unwrap().len(), 1);
    assert_eq!(page.json["moreAvailable"], true);
    let none = poll(
        &service,
        API_CREDENTIALS,
        &json!({ "maxEvents": 0, "returnImmediately": true }),
    )
    .await;
    assert_eq!(none.json, json!({ "sets": {}, "moreAvailable": false }));
}

fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

#[tokio::test]
async fn every_kind_of_revocation_reaches_the_stream_in_its_event_type() {
    let service = TestService::start().await;
    let store = service.state.store();
    let now = service.state.now();
    store
        .revoke_jwt("jti-1", "svc-jwt", now + 60, now)
        .await
        .unwrap();
    let user = scopegate_token_service::users::Account {
        id: "u-7".into(),
        username: "sam".into(),
        password: scopegate_token_service::secret::SecretHash::hash("a password"),
        attributes: serde_json::Map::new(),
        configured: false,
        created_at: Some(now),
        updated_at: Some(now),
    };
    store.insert_user(&user).await.unwrap();
    store
        .insert_session(&scopegate_token_service::store::SessionRecord {
            digest: [9; 32],
            sid: "sid-9".into(),
            user_id: "u-7".into(),
            username: "sam".into(),
            auth_time: now,
            expires_at: now + 600,
            ended_at: None,
        })
        .await
        .unwrap();
    scopegate_token_service::session::end(&**store, "sid-9", now)
        .await
        .unwrap();
    assert!(store.set_password("sam", "new hash", now).await.unwrap());
    assert!(store.delete_user("sam", now).await.unwrap());
    let registered = service
        .state
        .directory()
        .register_client(
            serde_json::from_value(json!({
                "id": "short-lived", "grants": ["client_credentials"], "scopes": ["other:thing:read"]
            }))
            .unwrap(),
            now,
        )
        .await;
    assert!(registered.is_ok(), "{:?}", registered.err());
    service
        .state
        .directory()
        .delete_client("short-lived", now)
        .await
        .unwrap();

    let answer = poll(&service, API_CREDENTIALS, &now_ish()).await;
    let sets = verified_sets(&service, &answer).await;
    let kinds: Vec<(&str, &Value)> = sets
        .iter()
        .map(|(_, claims)| {
            let (event_type, _) = claims["events"].as_object().unwrap().iter().next().unwrap();
            (event_type.as_str(), &claims["sub_id"])
        })
        .collect();
    let issuer_sub = json!({ "format": "iss_sub", "iss": "http://127.0.0.1:8080", "sub": "u-7" });
    assert_eq!(
        kinds,
        [
            (TOKEN_REVOKED, &json!({ "format": "opaque", "id": "jti-1" })),
            (
                SESSION_REVOKED,
                &json!({
                    "format": "complex",
                    "session": { "format": "opaque", "id": "sid-9" },
                    "user": issuer_sub,
                })
            ),
            (CREDENTIAL_CHANGE, &issuer_sub),
            (ACCOUNT_PURGED, &issuer_sub),
            (
                CLIENT_DELETED,
                &json!({ "format": "complex", "application": { "format": "opaque", "id": "short-lived" } })
            ),
        ],
        "{}",
        answer.text
    );
    let change = &sets[2].1["events"][CREDENTIAL_CHANGE];
    assert_eq!(
        (&change["credential_type"], &change["change_type"]),
        (&json!("password"), &json!("update"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_poll_is_answered_by_the_next_revocation() {
    let service = TestService::start().await;
    let jwt = service.access_token(JWT_CLIENT).await;
    let state = service.state.clone();
    let router = scopegate_token_service::http::app(state).await.unwrap();
    let held = tokio::spawn(async move {
        use tower::ServiceExt;
        let request = Request::post("/ssf/poll")
            .header(header::CONTENT_TYPE, "application/json")
            .header(
                header::AUTHORIZATION,
                basic_header(API, support::API_SECRET),
            )
            .body(Body::from(
                json!({ "returnImmediately": false }).to_string(),
            ))
            .unwrap();
        let response = router.oneshot(request).await.unwrap();
        let bytes = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        serde_json::from_slice::<Value>(&bytes).unwrap()
    });
    // Revoke only once the poll is waiting (a poll made after the revocation would find the
    // event at once, proving nothing about being woken).
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !held.is_finished(),
        "the poll was answered with nothing new"
    );
    service
        .post("/revoke", Some(JWT_CLIENT), &format!("token={jwt}"))
        .await;
    // The default hold is 25 s: an answer holding the event was woken by the commit.
    let answer = tokio::time::timeout(Duration::from_secs(20), held)
        .await
        .expect("the held poll was not woken by the revocation")
        .unwrap();
    let sets = answer["sets"].as_object().unwrap();
    assert_eq!(sets.len(), 1, "{answer}");
    let claims = claims_of(sets.values().next().unwrap().as_str().unwrap());
    assert_eq!(claims["sub_id"]["id"], claims_of(&jwt)["jti"]);
}

#[tokio::test]
async fn a_held_poll_with_nothing_new_ends_empty_after_the_hold_or_at_shutdown() {
    let config = config_text("http://127.0.0.1:8080", "ES256")
        .replace("[defaults]", "[events]\nlong_poll = \"1s\"\n\n[defaults]");
    let service = TestService::start_with(&config).await;
    let started = std::time::Instant::now();
    let answer = poll(&service, API_CREDENTIALS, &json!({})).await;
    assert_eq!(answer.json, json!({ "sets": {}, "moreAvailable": false }));
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "answered before the hold ended"
    );

    // With the default hold, shutting down answers a held poll at once.
    let service = TestService::start().await;
    let state = service.state.clone();
    let held = tokio::spawn(async move {
        scopegate_token_service::events::poll(
            &state,
            API,
            &scopegate_token_service::events::Poll::default(),
        )
        .await
        .unwrap()
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    service.state.begin_closing();
    let delivery = tokio::time::timeout(Duration::from_secs(15), held)
        .await
        .expect("shutting down did not end the held poll")
        .unwrap();
    assert!(delivery.sets.is_empty());
}

#[tokio::test]
async fn a_malformed_poll_is_refused_and_changes_nothing() {
    let service = TestService::start().await;
    let jwt = service.access_token(JWT_CLIENT).await;
    service
        .post("/revoke", Some(JWT_CLIENT), &format!("token={jwt}"))
        .await;
    let send = |content_type: &'static str, body: String| {
        Request::post("/ssf/poll")
            .header(header::CONTENT_TYPE, content_type)
            .header(
                header::AUTHORIZATION,
                basic_header(API, support::API_SECRET),
            )
            .body(Body::from(body))
            .unwrap()
    };
    let too_many: Vec<String> = (0..2001).map(|index| format!("x-{index}")).collect();
    for (content_type, body) in [
        ("application/x-www-form-urlencoded", "ack=1".to_owned()),
        ("application/json", "{".to_owned()),
        ("application/json", "[]".to_owned()),
        ("application/json", "[[],{},300]".to_owned()),
        ("application/json", r#"{"ack": "one"}"#.to_owned()),
        ("application/json", r#"{"ack": [1]}"#.to_owned()),
        ("application/json", r#"{"maxEvents": -1}"#.to_owned()),
        (
            "application/json",
            r#"{"returnImmediately": "yes"}"#.to_owned(),
        ),
        ("application/json", r#"{"setErrs": []}"#.to_owned()),
        ("application/json", json!({ "ack": too_many }).to_string()),
    ] {
        let answer = service.call(send(content_type, body.clone())).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{body:.60}");
        assert_eq!(answer.json["err"], "invalid_request", "{body:.60}");
        assert!(answer.json["description"].as_str().is_some());
    }
    // Not UTF-8, though only in a member the service ignores (found by fuzzing).
    let mut not_utf8 = br#"{"ack": [], "extension": ""#.to_vec();
    not_utf8.extend_from_slice(&[0xc7, b'"', b'}']);
    let request = Request::post("/ssf/poll")
        .header(header::CONTENT_TYPE, "application/json")
        .header(
            header::AUTHORIZATION,
            basic_header(API, support::API_SECRET),
        )
        .body(Body::from(not_utf8))
        .unwrap();
    let answer = service.call(request).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.json["description"], "the body is not UTF-8");
    // The event is still there for a well-formed poll.
    let answer = poll(&service, API_CREDENTIALS, &now_ish()).await;
    assert_eq!(answer.json["sets"].as_object().unwrap().len(), 1);
}

#[tokio::test]
async fn sets_come_in_stream_order() {
    let service = TestService::start().await;
    let now = service.state.now();
    for index in 0..12 {
        service
            .state
            .store()
            .revoke_jwt(&format!("jti-{index}"), "svc-jwt", now + 60, now)
            .await
            .unwrap();
    }
    let answer = poll(&service, API_CREDENTIALS, &now_ish()).await;
    // The members as written (a parsed object would not keep their order).
    let written: Vec<u64> = answer
        .text
        .match_indices("\":\"eyJ")
        .map(|(end, _)| {
            let start = answer.text[..end].rfind('"').unwrap() + 1;
            position(&answer.text[start..end])
        })
        .collect();
    assert_eq!(written.len(), 12, "{}", answer.text);
    assert!(
        written.windows(2).all(|pair| pair[0] < pair[1]),
        "{written:?}"
    );
}
