//! What the token source sends, and every kind of answer it may get back that the real token
//! service never gives (junk, oversized bodies, redirects, a lying discovery document): each is
//! a typed error, never a panic. The real service's answers are tested in `tests/` (the e2e
//! crate).

#![allow(missing_docs, clippy::unwrap_used)]

mod support;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use scopegate_client::{ClientAuthMethod, Error, TokenSource};
use support::{Answer, Server};

fn source(token_endpoint: &str) -> TokenSource {
    TokenSource::builder()
        .token_endpoint(token_endpoint)
        .client_id("svc:one")
        .client_secret("s%cr:t")
        .build()
        .unwrap()
}

fn fixed(status: u16, content_type: &'static str, body: &[u8]) -> Answer {
    Answer::Fixed {
        status,
        content_type,
        body: body.to_vec(),
    }
}

#[tokio::test]
async fn a_redirected_token_request_is_an_error_whichever_client_sends_it() {
    let server = Server::start(Answer::RedirectTo("/elsewhere")).await;
    let builder = || {
        TokenSource::builder()
            .token_endpoint(server.token_endpoint())
            .client_id("svc")
            .client_secret("s")
            .client_auth_method(ClientAuthMethod::SecretPost)
    };
    // Its own client does not follow.
    let error = builder().build().unwrap().token().await.unwrap_err();
    assert!(
        matches!(error, Error::Status { status: 307, .. }),
        "{error:?}"
    );
    // An app's client that follows: the token it was given elsewhere is not used.
    let following = builder()
        .http_client(reqwest::Client::new())
        .build()
        .unwrap();
    let error = following.token().await.unwrap_err();
    assert!(
        matches!(&error, Error::Redirected { to, .. } if to.ends_with("/elsewhere")),
        "{error:?}"
    );
    assert_eq!(server.token_requests(), 3);
}

#[tokio::test]
async fn client_secret_post_sends_id_and_secret_in_the_form_and_no_authorization() {
    let server = Server::start(Answer::Tokens { expires_in: 60 }).await;
    let tokens = TokenSource::builder()
        .token_endpoint(server.token_endpoint())
        .client_id("svc:one")
        .client_secret("s%cr&t =x")
        .client_auth_method(ClientAuthMethod::SecretPost)
        .scope("a:b:read")
        .build()
        .unwrap();
    assert_eq!(tokens.token().await.unwrap().secret(), "tok-1");
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].headers.get("authorization").is_none());
    let form: Vec<(String, String)> = url::form_urlencoded::parse(seen[0].body.as_bytes())
        .into_owned()
        .collect();
    let expected = [
        ("grant_type", "client_credentials"),
        ("scope", "a:b:read"),
        ("client_id", "svc:one"),
        ("client_secret", "s%cr&t =x"),
    ];
    assert_eq!(
        form,
        expected.map(|(name, value)| (name.to_owned(), value.to_owned()))
    );
}

#[tokio::test]
async fn the_request_is_client_secret_basic_with_scope_and_resources() {
    let server = Server::start(Answer::Tokens { expires_in: 60 }).await;
    let tokens = TokenSource::builder()
        .token_endpoint(server.token_endpoint())
        .client_id("svc:one")
        .client_secret("s%cr:t +x")
        .scope("a:b:read")
        .scope("c")
        .resource("https://api.example.test")
        .resource("https://other.example.test/v1")
        .build()
        .unwrap();
    assert_eq!(tokens.token().await.unwrap().secret(), "tok-1");
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    let request = &seen[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/token");
    assert_eq!(
        request.headers["content-type"],
        "application/x-www-form-urlencoded"
    );
    let basic = request.headers["authorization"].to_str().unwrap();
    let decoded = STANDARD
        .decode(basic.strip_prefix("Basic ").unwrap())
        .unwrap();
    assert_eq!(
        String::from_utf8(decoded).unwrap(),
        "svc%3Aone:s%25cr%3At+%2Bx"
    );
    let form: Vec<(String, String)> = url::form_urlencoded::parse(request.body.as_bytes())
        .into_owned()
        .collect();
    let pairs = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect()
    };
    assert_eq!(
        form,
        pairs(&[
            ("grant_type", "client_credentials"),
            ("scope", "a:b:read c"),
            ("resource", "https://api.example.test"),
            ("resource", "https://other.example.test/v1"),
        ])
    );
    assert!(!request.body.contains("s%25cr"), "no secret in the body");
}

/// Whether an error is the one a case expects.
type Expected = fn(&Error) -> bool;

#[tokio::test]
async fn junk_answers_are_typed_errors() {
    let server = Server::start(Answer::Tokens { expires_in: 60 }).await;
    let cases: Vec<(Answer, Expected)> = vec![
        (
            fixed(200, "text/html", b"<html>Sign in</html>"),
            |error| matches!(error, Error::Malformed { source: Some(_), .. }),
        ),
        (fixed(200, "application/json", b"{}"), |error| {
            matches!(error, Error::Malformed { .. })
        }),
        (
            fixed(200, "application/json", br#"{"access_token":"a b","token_type":"Bearer"}"#),
            |error| matches!(error, Error::Malformed { source: None, .. }),
        ),
        (
            fixed(200, "application/json", br#"{"access_token":"t","token_type":"DPoP"}"#),
            |error| matches!(error, Error::UnsupportedTokenType { token_type } if token_type == "DPoP"),
        ),
        (
            fixed(200, "application/json", &vec![b' '; 100 * 1024]),
            |error| matches!(error, Error::TooLarge { limit: 65536, .. }),
        ),
        (Answer::Streamed { size: 1024 * 1024 }, |error| {
            matches!(error, Error::TooLarge { .. })
        }),
        (fixed(500, "text/plain", b"oops"), |error| {
            matches!(error, Error::Status { status: 500, .. })
        }),
        (fixed(503, "application/json", br#"{"message":"busy"}"#), |error| {
            matches!(error, Error::Status { status: 503, .. })
        }),
        (
            fixed(
                400,
                "application/json",
                br#"{"error":"invalid_scope","error_description":"no such scope","error_uri":"https://idp.test/e"}"#,
            ),
            |error| {
                matches!(error, Error::OAuth { status: 400, code, description: Some(description), uri: Some(_), .. }
                    if code == "invalid_scope" && description == "no such scope")
            },
        ),
        // A redirect is not followed: the credentials would go with it.
        (fixed(307, "text/plain", b""), |error| {
            matches!(error, Error::Status { status: 307, .. })
        }),
    ];
    for (answer, expected) in cases {
        server.set(answer);
        // A source per case: a failure is held for a second before the next request.
        let error = source(&server.token_endpoint()).token().await.unwrap_err();
        assert!(expected(&error), "{error:?}");
        assert!(!error.to_string().is_empty());
    }
}

#[tokio::test]
async fn a_token_endpoint_that_is_down_is_a_transport_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let error = source(&format!("http://127.0.0.1:{port}/token"))
        .token()
        .await
        .unwrap_err();
    match &error {
        Error::Transport { url, .. } => assert_eq!(url, &format!("http://127.0.0.1:{port}/token")),
        other => panic!("{other:?}"),
    }
    assert!(std::error::Error::source(&error).is_some());
}

#[tokio::test]
async fn discovery_finds_the_token_endpoint_once() {
    let server = Server::start(Answer::Tokens { expires_in: 0 }).await;
    let tokens = TokenSource::builder()
        .issuer(&server.url)
        .client_id("svc")
        .client_secret("svc-secret")
        .build()
        .unwrap();
    // A lifetime of zero: each call asks for a new token, discovery is read once.
    assert_eq!(tokens.token().await.unwrap().secret(), "tok-1");
    assert_eq!(tokens.token().await.unwrap().secret(), "tok-2");
    let paths: Vec<String> = server.seen().into_iter().map(|seen| seen.path).collect();
    assert_eq!(
        paths,
        ["/.well-known/openid-configuration", "/token", "/token"]
    );
}

#[tokio::test]
async fn a_discovery_document_naming_another_issuer_is_refused() {
    let server = Server::start(Answer::Tokens { expires_in: 60 }).await;
    server.claim_issuer("https://evil.example.test");
    let tokens = TokenSource::builder()
        .issuer(&server.url)
        .client_id("svc")
        .client_secret("svc-secret")
        .build()
        .unwrap();
    let error = tokens.token().await.unwrap_err();
    assert!(
        matches!(&error, Error::IssuerMismatch { found, .. } if found == "https://evil.example.test"),
        "{error:?}"
    );
    assert_eq!(server.token_requests(), 0);
}

#[tokio::test]
async fn a_discovery_document_that_is_not_one_is_malformed() {
    let server = Server::start(Answer::Tokens { expires_in: 60 }).await;
    let tokens = TokenSource::builder()
        // The token endpoint answers this server's "discovery" at another path.
        .issuer(format!("{}/token", server.url))
        .client_id("svc")
        .client_secret("svc-secret")
        .build()
        .unwrap();
    let error = tokens.token().await.unwrap_err();
    assert!(
        matches!(
            &error,
            Error::Malformed {
                what: "discovery document",
                ..
            }
        ),
        "{error:?}"
    );
}
