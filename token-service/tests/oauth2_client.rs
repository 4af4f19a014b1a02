//! The token service over real HTTP on loopback, with the `oauth2` crate as the client and our
//! validator (through discovery) as the resource server's side.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use oauth2::basic::{BasicClient, BasicErrorResponseType, BasicTokenType};
use oauth2::{
    AuthType, ClientId, ClientSecret, HttpRequest, HttpResponse, IntrospectionUrl,
    RequestTokenError, Scope, TokenIntrospectionResponse, TokenResponse, TokenUrl,
};
use scopegate_validator::{Algorithm, Error, Validator};
use support::*;

/// `oauth2`'s HTTP client interface, served by our reqwest (no redirects, like a careful client).
async fn send(
    client: reqwest::Client,
    request: HttpRequest,
) -> Result<HttpResponse, reqwest::Error> {
    let (parts, body) = request.into_parts();
    let response = client
        .request(parts.method, parts.uri.to_string())
        .headers(parts.headers)
        .body(body)
        .send()
        .await?;
    let mut answer = http::Response::builder().status(response.status());
    for (name, value) in response.headers() {
        answer = answer.header(name, value);
    }
    let body = response.bytes().await?.to_vec();
    Ok(answer.body(body).unwrap())
}

struct Running {
    issuer: String,
    _service: TestService,
    _task: tokio::task::JoinHandle<()>,
}

async fn serve(algorithm: &str) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let service = TestService::start_with(&config_text(&issuer, algorithm)).await;
    let state = service.state.clone();
    let task = tokio::spawn(async move {
        scopegate_token_service::http::serve(state, listener, std::future::pending())
            .await
            .unwrap();
    });
    Running {
        issuer,
        _service: service,
        _task: task,
    }
}

fn http_client() -> impl Fn(
    HttpRequest,
) -> std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<HttpResponse, reqwest::Error>>>,
> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    move |request| Box::pin(send(client.clone(), request))
}

fn validator(issuer: &str, opaque: bool) -> Validator {
    let builder = Validator::builder()
        .issuer(issuer)
        .audience(API)
        .algorithms(Algorithm::ALL)
        .required_typ("at+jwt");
    let builder = if opaque {
        builder.introspection(API, API_SECRET)
    } else {
        builder
    };
    builder.build().unwrap()
}

#[tokio::test]
async fn oauth2_crate_gets_a_jwt_that_our_validator_accepts_for_every_algorithm() {
    for algorithm in ["RS256", "ES256", "EdDSA"] {
        let running = serve(algorithm).await;
        let client = BasicClient::new(ClientId::new("svc-jwt".into()))
            .set_client_secret(ClientSecret::new("jwt-secret".into()))
            .set_token_uri(TokenUrl::new(format!("{}/token", running.issuer)).unwrap());
        let http = http_client();
        let token = client
            .exchange_client_credentials()
            .add_scope(Scope::new("akamai:social_profile".into()))
            .request_async(&http)
            .await
            .unwrap();
        assert_eq!(*token.token_type(), BasicTokenType::Bearer);
        assert_eq!(token.expires_in(), Some(Duration::from_secs(900)));
        assert!(token.refresh_token().is_none());
        let scopes: Vec<&str> = token
            .scopes()
            .unwrap()
            .iter()
            .map(|scope| scope.as_str())
            .collect();
        assert_eq!(
            scopes,
            ["akamai:social_profile:read", "akamai:social_profile:write"]
        );

        let principal = validator(&running.issuer, false)
            .validate(token.access_token().secret())
            .await
            .unwrap_or_else(|error| panic!("{algorithm}: {error}"));
        assert_eq!(principal.subject(), Some("svc-jwt"));
        assert_eq!(principal.client_id(), Some("svc-jwt"));
        assert_eq!(principal.issuer(), running.issuer);
        assert_eq!(
            principal.scopes().to_string(),
            "akamai:social_profile:read akamai:social_profile:write"
        );
    }
}

#[tokio::test]
async fn oauth2_crate_with_client_secret_post_and_its_error_types() {
    let running = serve("ES256").await;
    let http = http_client();
    let client = BasicClient::new(ClientId::new("svc-opaque".into()))
        .set_client_secret(ClientSecret::new("opaque-secret".into()))
        .set_auth_type(AuthType::RequestBody)
        .set_token_uri(TokenUrl::new(format!("{}/token", running.issuer)).unwrap());
    let token = client
        .exchange_client_credentials()
        .request_async(&http)
        .await
        .unwrap();
    assert_eq!(token.access_token().secret().len(), 54);

    let refused = client
        .exchange_client_credentials()
        .add_scope(Scope::new("admin".into()))
        .request_async(&http)
        .await
        .unwrap_err();
    match refused {
        RequestTokenError::ServerResponse(response) => {
            assert_eq!(*response.error(), BasicErrorResponseType::InvalidScope);
            assert!(response.error_description().unwrap().contains("admin"));
        }
        other => panic!("expected invalid_scope, got {other:?}"),
    }

    let wrong = BasicClient::new(ClientId::new("svc-opaque".into()))
        .set_client_secret(ClientSecret::new("not-the-secret".into()))
        .set_token_uri(TokenUrl::new(format!("{}/token", running.issuer)).unwrap());
    match wrong
        .exchange_client_credentials()
        .request_async(&http)
        .await
        .unwrap_err()
    {
        RequestTokenError::ServerResponse(response) => {
            assert_eq!(*response.error(), BasicErrorResponseType::InvalidClient);
        }
        other => panic!("expected invalid_client, got {other:?}"),
    }
}

#[tokio::test]
async fn oauth2_crate_introspects_and_revokes_and_our_validator_follows() {
    let running = serve("ES256").await;
    let http = http_client();
    let client = BasicClient::new(ClientId::new("svc-opaque".into()))
        .set_client_secret(ClientSecret::new("opaque-secret".into()))
        .set_token_uri(TokenUrl::new(format!("{}/token", running.issuer)).unwrap());
    let token = client
        .exchange_client_credentials()
        .add_scope(Scope::new("akamai:social_profile:read".into()))
        .request_async(&http)
        .await
        .unwrap();
    let access_token = token.access_token().clone();

    // The API introspects with its own credentials (its id and secret need form-encoding).
    let api = BasicClient::new(ClientId::new(API.into()))
        .set_client_secret(ClientSecret::new(API_SECRET.into()))
        .set_token_uri(TokenUrl::new(format!("{}/token", running.issuer)).unwrap())
        .set_introspection_url(
            IntrospectionUrl::new(format!("{}/introspect", running.issuer)).unwrap(),
        );
    let introspection = api
        .introspect(&access_token)
        .request_async(&http)
        .await
        .unwrap();
    assert!(introspection.active());
    assert_eq!(introspection.client_id().unwrap().as_str(), "svc-opaque");
    let scopes: Vec<&str> = introspection
        .scopes()
        .unwrap()
        .iter()
        .map(|scope| scope.as_str())
        .collect();
    assert_eq!(scopes, ["akamai:social_profile:read"]);

    // Our validator accepts the opaque token through the same endpoint (found by discovery).
    let principal = validator(&running.issuer, true)
        .validate(access_token.secret())
        .await
        .unwrap();
    assert_eq!(principal.client_id(), Some("svc-opaque"));

    // `oauth2` refuses to send a revocation over plain http (RFC 7009 §2 requires TLS), so the
    // revocation itself is a plain form POST, as the RFC describes it.
    revoke(&running.issuer, access_token.secret()).await;
    let introspection = api
        .introspect(&access_token)
        .request_async(&http)
        .await
        .unwrap();
    assert!(!introspection.active());
    // A fresh validator (no cached answer) sees the revocation at once.
    let refused = validator(&running.issuer, true)
        .validate(access_token.secret())
        .await
        .unwrap_err();
    assert!(matches!(refused, Error::InvalidToken(_)), "{refused:?}");

    revoke(&running.issuer, "never-issued").await;
}

async fn revoke(issuer: &str, token: &str) {
    let response = reqwest::Client::new()
        .post(format!("{issuer}/revoke"))
        .basic_auth("svc-opaque", Some("opaque-secret"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "token={}&token_type_hint=access_token",
            form_encode(token)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn graceful_shutdown_finishes_and_stops_listening() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let service =
        TestService::start_with(&config_text(&format!("http://{address}"), "ES256")).await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(scopegate_token_service::http::serve(
        service.state.clone(),
        listener,
        async move {
            let _ = stopped.await;
        },
    ));
    let client = reqwest::Client::new();
    let ready = client
        .get(format!("http://{address}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("stops within 10 s")
        .unwrap()
        .unwrap();
    assert!(
        client
            .get(format!("http://{address}/healthz"))
            .send()
            .await
            .is_err()
    );
}
