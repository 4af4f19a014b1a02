//! The whole authorization code flow over real HTTP with the `openidconnect` crate as the
//! relying party: discovery, the authorization URL with PKCE and nonce, the sign-in (played by
//! a plain HTTP client standing in for the browser), the code exchange, id_token verification
//! against the JWKS (signature, nonce, at_hash), and a refresh.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod support;

use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AccessTokenHash, AuthorizationCode, ClientId, CsrfToken, HttpRequest, HttpResponse, IssuerUrl,
    Nonce, OAuth2TokenResponse, PkceCodeChallenge, RedirectUrl, Scope, TokenResponse,
};
use support::*;

const REDIRECT: &str = "http://127.0.0.1:3000/callback";

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

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker).unwrap() + marker.len();
    let end = start + html[start..].find('"').unwrap();
    html[start..end]
        .replace("&amp;", "&")
        .replace("&#39;", "'")
        .replace("&quot;", "\"")
}

/// The browser: opens the authorization URL, signs jane in, returns the redirect's URL.
async fn browser_sign_in(authorization_url: &str) -> url::Url {
    let browser = no_redirects();
    let page = browser.get(authorization_url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let nonce_cookie = page
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|value| {
            value
                .to_str()
                .unwrap()
                .split(';')
                .next()
                .unwrap()
                .to_owned()
        })
        .find(|cookie| cookie.starts_with("scopegate_login="))
        .unwrap();
    let html = page.text().await.unwrap();
    let base = url::Url::parse(authorization_url).unwrap();
    let body = format!(
        "csrf={}&request={}&username=jane&password={}",
        form_encode(&hidden(&html, "csrf")),
        form_encode(&hidden(&html, "request")),
        form_encode("jane-password-1")
    );
    let answer = browser
        .post(base.join("/login").unwrap())
        .header("cookie", nonce_cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 303);
    url::Url::parse(answer.headers()["location"].to_str().unwrap()).unwrap()
}

#[tokio::test]
async fn openidconnect_relying_party_completes_the_code_flow_and_refreshes() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let service = TestService::start_with(&config_text(&issuer, "RS256")).await;
    let state = service.state.clone();
    tokio::spawn(scopegate_token_service::http::serve(
        state,
        listener,
        std::future::pending(),
    ));

    let http_client = no_redirects();
    let http = move |request| send(http_client.clone(), request);
    let metadata =
        CoreProviderMetadata::discover_async(IssuerUrl::new(issuer.clone()).unwrap(), &http)
            .await
            .unwrap();
    let client =
        CoreClient::from_provider_metadata(metadata, ClientId::new("web-app".into()), None)
            .set_redirect_uri(RedirectUrl::new(REDIRECT.into()).unwrap());
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (authorization_url, csrf_state, nonce) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("profile".into()))
        .add_scope(Scope::new("email".into()))
        .set_pkce_challenge(challenge)
        .url();

    let callback = browser_sign_in(authorization_url.as_str()).await;
    let params: Vec<(String, String)> = callback.query_pairs().into_owned().collect();
    let get = |name: &str| {
        params
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    };
    assert_eq!(get("state").as_deref(), Some(csrf_state.secret().as_str()));
    assert_eq!(get("iss").as_deref(), Some(issuer.as_str()));

    let tokens = client
        .exchange_code(AuthorizationCode::new(get("code").unwrap()))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .unwrap();
    let id_token = tokens.id_token().expect("an id_token for openid");
    let id_verifier = client.id_token_verifier();
    let claims = id_token
        .claims(&id_verifier, &nonce)
        .expect("the id_token verifies");
    assert_eq!(claims.subject().as_str(), "jane");
    assert_eq!(claims.issuer().as_str(), issuer);
    assert_eq!(
        claims.given_name().unwrap().get(None).unwrap().as_str(),
        "Jane"
    );
    assert_eq!(claims.email().unwrap().as_str(), "jane@example.test");
    assert_eq!(claims.email_verified(), Some(true));
    assert!(claims.auth_time().is_some());
    let expected_hash = claims.access_token_hash().expect("at_hash");
    let actual_hash = AccessTokenHash::from_token(
        tokens.access_token(),
        id_token.signing_alg().unwrap(),
        id_token.signing_key(&id_verifier).unwrap(),
    )
    .unwrap();
    assert_eq!(*expected_hash, actual_hash);
    // A wrong nonce is caught by the relying party.
    assert!(
        id_token
            .claims(&id_verifier, &Nonce::new("other".into()))
            .is_err()
    );

    // The userinfo endpoint, through our own tower-scopegate layer.
    let userinfo: openidconnect::core::CoreUserInfoClaims = client
        .user_info(tokens.access_token().clone(), None)
        .unwrap()
        .request_async(&http)
        .await
        .expect("userinfo answers");
    assert_eq!(userinfo.subject().as_str(), "jane");
    assert_eq!(userinfo.email().unwrap().as_str(), "jane@example.test");
    assert_eq!(
        userinfo.given_name().unwrap().get(None).unwrap().as_str(),
        "Jane"
    );

    let refresh_token = tokens.refresh_token().expect("web-app may refresh");
    let refreshed = client
        .exchange_refresh_token(refresh_token)
        .unwrap()
        .request_async(&http)
        .await
        .unwrap();
    assert_ne!(
        refreshed.refresh_token().unwrap().secret(),
        refresh_token.secret()
    );
    assert_ne!(
        refreshed.access_token().secret(),
        tokens.access_token().secret()
    );
    let again = client
        .exchange_refresh_token(refresh_token)
        .unwrap()
        .request_async(&http)
        .await;
    assert!(again.is_err(), "the rotated refresh token is refused");
}

#[tokio::test]
async fn userinfo_is_guarded_by_tower_scopegate() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let service = TestService::start_with(&config_text(&issuer, "ES256")).await;
    tokio::spawn(scopegate_token_service::http::serve(
        service.state.clone(),
        listener,
        std::future::pending(),
    ));
    let http = reqwest::Client::new();
    let userinfo = |token: Option<String>| {
        let mut request = http.get(format!("{issuer}/userinfo"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    let bare = userinfo(None).await.unwrap();
    assert_eq!(bare.status(), 401);
    assert_eq!(
        bare.headers()["www-authenticate"],
        "Bearer realm=\"token-service\""
    );

    // A client credentials token is for the API, not for the token service.
    let machine = service.token(JWT_CLIENT, "").await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let answer = userinfo(Some(machine)).await.unwrap();
    assert_eq!(answer.status(), 401);
    assert!(
        answer.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );

    // conf-web gets opaque tokens: checked through the service's own introspection.
    let redirect = "https://app.example.test/cb?tenant=7";
    let authorization_url = format!(
        "{issuer}/authorize?response_type=code&client_id=conf-web&redirect_uri={}&scope=openid%20email&nonce=n",
        form_encode(redirect)
    );
    let code_for = |callback: url::Url| {
        callback
            .query_pairs()
            .find(|(key, _)| key == "code")
            .unwrap()
            .1
            .into_owned()
    };
    let mut opaque_tokens = Vec::new();
    for _ in 0..2 {
        let code = code_for(browser_sign_in(&authorization_url).await);
        let answer = service
            .post(
                "/token",
                Some(("conf-web", "conf-web-secret")),
                &format!(
                    "grant_type=authorization_code&code={code}&redirect_uri={}",
                    form_encode(redirect)
                ),
            )
            .await;
        assert_eq!(answer.status, 200, "{}", answer.text);
        opaque_tokens.push(answer.json);
    }
    let first = &opaque_tokens[0];
    let opaque = first["access_token"].as_str().unwrap().to_owned();
    assert_eq!(opaque.len(), 54);
    let answer = userinfo(Some(opaque)).await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.headers()["cache-control"], "no-store");
    let claims: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(claims["sub"], "jane");
    assert_eq!(claims["email"], "jane@example.test");
    assert!(
        claims.get("given_name").is_none(),
        "profile was not granted"
    );

    // An id_token is not an access token.
    let id_token = first["id_token"].as_str().unwrap().to_owned();
    assert_eq!(userinfo(Some(id_token)).await.unwrap().status(), 401);

    // A token revoked before its first use is refused.
    let second = opaque_tokens[1]["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let revoked = service
        .post(
            "/revoke",
            Some(("conf-web", "conf-web-secret")),
            &format!("token={second}"),
        )
        .await;
    assert_eq!(revoked.status, 200);
    assert_eq!(userinfo(Some(second)).await.unwrap().status(), 401);
}
