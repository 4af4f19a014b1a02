//! The seams between the service's homes, closed: a token of the service that was revoked —
//! at `/revoke`, by logout, by a refresh token's reuse, by its user's deletion or a password
//! change — opens nothing of the service; `/revoke` takes refresh tokens and public clients;
//! a logout hint from another session asks first. Requests are made in-process; the service
//! also listens at its issuer URL, as deployed (one test shows it never needs to).

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod support;

use axum::body::Body;
use http::{Request, StatusCode, header};
use scopegate_token_service::grant::authorization_code::s256;
use scopegate_token_service::tokens;
use scopegate_token_service::users;
use serde_json::Value;
use support::*;

const REDIRECT: &str = "http://127.0.0.1:3000/callback";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const SAM_PASSWORD: &str = "sam-password-1";

fn service_config() -> String {
    service_config_at("http://127.0.0.1:9")
}

fn service_config_at(issuer: &str) -> String {
    format!("{}{ADMIN_CLIENTS}", config_text(issuer, "ES256"))
}

/// The service, listening at its issuer URL.
async fn service() -> TestService {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let service = TestService::start_with(&service_config_at(&issuer)).await;
    tokio::spawn(scopegate_token_service::http::serve(
        service.state.clone(),
        listener,
        std::future::pending(),
    ));
    // sam: a stored user (configured ones cannot be deleted or change their password here).
    let now = service.state.now();
    let record = users::new_account("sam", SAM_PASSWORD, serde_json::Map::new(), now)
        .await
        .unwrap();
    service.state.store().insert_user(&record).await.unwrap();
    service
}

fn authorize_query(client_id: &str) -> String {
    format!(
        "response_type=code&client_id={client_id}&redirect_uri={}&scope=openid%20profile&state=s&nonce=n&code_challenge={}&code_challenge_method=S256",
        form_encode(REDIRECT),
        s256(VERIFIER)
    )
}

/// What a browser sign-in of `username` at the public `web-app` gives.
struct SignedIn {
    session: String,
    tokens: Value,
}

impl SignedIn {
    fn access(&self) -> &str {
        self.tokens["access_token"].as_str().unwrap()
    }
    fn refresh(&self) -> &str {
        self.tokens["refresh_token"].as_str().unwrap()
    }
    fn id_token(&self) -> &str {
        self.tokens["id_token"].as_str().unwrap()
    }
}

async fn sign_in(service: &TestService, username: &str, password: &str) -> SignedIn {
    let form = login_form(service, &authorize_query("web-app")).await;
    let answer = submit(service, &form, username, password).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.text);
    let session = cookie(&answer, "scopegate_session").unwrap();
    let (_, params) = location_params(&answer);
    let code = param(&params, "code").unwrap();
    let exchanged = service
        .post(
            "/token",
            None,
            &format!(
                "grant_type=authorization_code&client_id=web-app&code={code}&redirect_uri={}&code_verifier={VERIFIER}",
                form_encode(REDIRECT)
            ),
        )
        .await;
    assert_eq!(exchanged.status, StatusCode::OK, "{}", exchanged.text);
    SignedIn {
        session,
        tokens: exchanged.json,
    }
}

async fn refresh(service: &TestService, token: &str) -> Answer {
    service
        .post(
            "/token",
            None,
            &format!("grant_type=refresh_token&client_id=web-app&refresh_token={token}"),
        )
        .await
}

async fn with_bearer(service: &TestService, path: &str, token: &str) -> Answer {
    let request = Request::get(path)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    service.call(request).await
}

/// `path` opened with `token`: 200, or 401 `invalid_token` (anything else fails the test).
async fn opens(service: &TestService, path: &str, token: &str) -> bool {
    let answer = with_bearer(service, path, token).await;
    match answer.status {
        StatusCode::OK => true,
        StatusCode::UNAUTHORIZED => {
            let challenge = answer.header("www-authenticate");
            assert!(challenge.contains("invalid_token"), "{challenge}");
            false
        }
        other => panic!("{path}: {other} {}", answer.text),
    }
}

async fn active(service: &TestService, token: &str) -> bool {
    tokens::lookup(&service.state, token)
        .await
        .unwrap()
        .is_some()
}

#[tokio::test]
async fn the_services_own_tokens_are_checked_without_calling_the_service() {
    // Nothing listens at this issuer's URL (port 9): JWTs and opaque tokens are judged
    // in-process.
    let service = TestService::start_with(&service_config()).await;
    for client in [ADMIN, ADMIN_OPAQUE] {
        let token = service.access_token(client).await;
        assert!(
            opens(&service, "/admin/users", &token).await,
            "{}",
            client.0
        );
    }
    let signed_in = sign_in(&service, "jane", "jane-password-1").await;
    let userinfo = with_bearer(&service, "/userinfo", signed_in.access()).await;
    assert_eq!(userinfo.status, StatusCode::OK, "{}", userinfo.text);
    assert_eq!(userinfo.json["sub"], "jane");
}

#[tokio::test]
async fn an_admin_token_revoked_at_revoke_no_longer_opens_the_admin_api() {
    let service = service().await;
    for client in [ADMIN, ADMIN_OPAQUE] {
        let token = service.access_token(client).await;
        assert!(
            opens(&service, "/admin/users", &token).await,
            "{}",
            client.0
        );
        let revoked = service
            .post("/revoke", Some(client), &format!("token={token}"))
            .await;
        assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.text);
        assert!(
            !opens(&service, "/admin/users", &token).await,
            "{}",
            client.0
        );
        assert!(
            !opens(&service, "/admin/clients", &token).await,
            "{}",
            client.0
        );
    }
}

#[tokio::test]
async fn a_user_token_revoked_by_its_public_client_no_longer_opens_userinfo() {
    let service = service().await;
    let signed_in = sign_in(&service, "jane", "jane-password-1").await;
    assert!(opens(&service, "/userinfo", signed_in.access()).await);
    // A public client names itself; it revokes its own token.
    let revoked = service
        .post(
            "/revoke",
            None,
            &format!("client_id=web-app&token={}", signed_in.access()),
        )
        .await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.text);
    assert!(!opens(&service, "/userinfo", signed_in.access()).await);
}

#[tokio::test]
async fn logout_closes_userinfo_to_the_sessions_tokens() {
    let service = service().await;
    let signed_in = sign_in(&service, "jane", "jane-password-1").await;
    assert!(opens(&service, "/userinfo", signed_in.access()).await);
    let path = format!("/logout?id_token_hint={}", signed_in.id_token());
    let answer = get_with_cookies(&service, &path, std::slice::from_ref(&signed_in.session)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert!(
        answer.text.contains("You are signed out."),
        "{}",
        answer.text
    );
    assert!(!opens(&service, "/userinfo", signed_in.access()).await);
}

#[tokio::test]
async fn a_reused_refresh_token_closes_userinfo_to_the_familys_tokens() {
    let service = service().await;
    let signed_in = sign_in(&service, "jane", "jane-password-1").await;
    let rotated = refresh(&service, signed_in.refresh()).await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.text);
    let second = rotated.json["access_token"].as_str().unwrap();
    assert!(opens(&service, "/userinfo", signed_in.access()).await);
    assert!(opens(&service, "/userinfo", second).await);

    let reuse = refresh(&service, signed_in.refresh()).await;
    assert_eq!(reuse.error(), "invalid_grant");
    assert!(!opens(&service, "/userinfo", signed_in.access()).await);
    assert!(!opens(&service, "/userinfo", second).await);
}

#[tokio::test]
async fn a_deleted_users_tokens_no_longer_open_userinfo_or_introspect_active() {
    let service = service().await;
    let signed_in = sign_in(&service, "sam", SAM_PASSWORD).await;
    assert!(opens(&service, "/userinfo", signed_in.access()).await);
    assert!(active(&service, signed_in.access()).await);
    let admin = service.access_token(ADMIN).await;
    let request = Request::delete("/admin/users/sam")
        .header(header::AUTHORIZATION, format!("Bearer {admin}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(service.call(request).await.status, StatusCode::NO_CONTENT);
    assert!(!opens(&service, "/userinfo", signed_in.access()).await);
    assert!(!active(&service, signed_in.access()).await);
}

// ---- /revoke: refresh tokens, hints, public clients ---------------------------------------

#[tokio::test]
async fn revoking_a_refresh_token_revokes_its_family_and_the_access_tokens_of_its_grant() {
    let service = service().await;
    for hint in [
        "",
        "&token_type_hint=refresh_token",
        "&token_type_hint=access_token",
        "&token_type_hint=bogus",
    ] {
        let signed_in = sign_in(&service, "jane", "jane-password-1").await;
        let rotated = refresh(&service, signed_in.refresh()).await;
        let current_refresh = rotated.json["refresh_token"].as_str().unwrap().to_owned();
        let second_access = rotated.json["access_token"].as_str().unwrap().to_owned();
        let revoked = service
            .post(
                "/revoke",
                None,
                &format!("client_id=web-app&token={current_refresh}{hint}"),
            )
            .await;
        assert_eq!(revoked.status, StatusCode::OK, "{hint}: {}", revoked.text);
        assert_eq!(
            refresh(&service, &current_refresh).await.error(),
            "invalid_grant",
            "{hint}"
        );
        assert!(!active(&service, signed_in.access()).await, "{hint}");
        assert!(!active(&service, &second_access).await, "{hint}");
        // The session itself lives on: a new sign-in needs no password.
        let again = get_with_cookies(
            &service,
            &format!("/authorize?{}", authorize_query("web-app")),
            std::slice::from_ref(&signed_in.session),
        )
        .await;
        assert_eq!(again.status, StatusCode::SEE_OTHER, "{hint}");
    }
}

#[tokio::test]
async fn a_client_cannot_revoke_another_clients_tokens_and_nothing_changes() {
    let service = service().await;
    let signed_in = sign_in(&service, "jane", "jane-password-1").await;
    for token in [signed_in.access(), signed_in.refresh()] {
        let foreign = service
            .post(
                "/revoke",
                Some(("conf-web", "conf-web-secret")),
                &format!("token={token}"),
            )
            .await;
        assert_eq!(foreign.status, StatusCode::BAD_REQUEST, "{}", foreign.text);
        assert_eq!(foreign.error(), "unauthorized_client");
    }
    let admin = service.access_token(ADMIN).await;
    let by_public = service
        .post("/revoke", None, &format!("client_id=web-app&token={admin}"))
        .await;
    assert_eq!(by_public.error(), "unauthorized_client");
    assert!(active(&service, &admin).await);
    assert!(active(&service, signed_in.access()).await);
    assert_eq!(
        refresh(&service, signed_in.refresh()).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_confidential_client_must_authenticate_to_revoke() {
    let service = service().await;
    let token = service.access_token(ADMIN).await;
    // Naming a confidential client without its secret is no authentication.
    let unauthenticated = service
        .post("/revoke", None, &format!("client_id=admin&token={token}"))
        .await;
    assert_eq!(unauthenticated.status, StatusCode::UNAUTHORIZED);
    assert_eq!(unauthenticated.error(), "invalid_client");
    let unknown = service
        .post("/revoke", None, &format!("client_id=nobody&token={token}"))
        .await;
    assert_eq!(unknown.error(), "invalid_client");
    assert!(active(&service, &token).await);
}

// ---- password changes end other sessions ------------------------------------------------

async fn change_password_on_the_page(
    service: &TestService,
    session: Option<&str>,
    current: &str,
    new: &str,
) -> Answer {
    let page = get_with_cookies(service, "/password", &[]).await;
    let nonce = cookie(&page, "scopegate_login").unwrap();
    let body = format!(
        "csrf={}&username=sam&current={}&new={}&confirm={}",
        form_encode(&hidden(&page.text, "csrf")),
        form_encode(current),
        form_encode(new),
        form_encode(new)
    );
    let cookies = match session {
        Some(session) => format!("{nonce}; {session}"),
        None => nonce,
    };
    let request = Request::post("/password")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::COOKIE, cookies)
        .body(Body::from(body))
        .unwrap();
    service.call(request).await
}

async fn session_signs_in(service: &TestService, session: &str) -> bool {
    let answer = get_with_cookies(
        service,
        &format!("/authorize?{}", authorize_query("web-app")),
        &[session.to_owned()],
    )
    .await;
    answer.status == StatusCode::SEE_OTHER
}

#[tokio::test]
async fn a_password_change_by_the_user_ends_their_other_sessions_and_refresh_families() {
    let service = service().await;
    let here = sign_in(&service, "sam", SAM_PASSWORD).await;
    let elsewhere = sign_in(&service, "sam", SAM_PASSWORD).await;
    let changed = change_password_on_the_page(
        &service,
        Some(&here.session),
        SAM_PASSWORD,
        "sam-password-2",
    )
    .await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.text);
    assert!(changed.text.contains("Your password has been changed."));

    assert!(
        session_signs_in(&service, &here.session).await,
        "the changing session survives"
    );
    assert_eq!(
        refresh(&service, here.refresh()).await.status,
        StatusCode::OK
    );
    assert!(!session_signs_in(&service, &elsewhere.session).await);
    assert_eq!(
        refresh(&service, elsewhere.refresh()).await.error(),
        "invalid_grant"
    );
    assert!(!opens(&service, "/userinfo", elsewhere.access()).await);
}

#[tokio::test]
async fn a_password_set_by_an_operator_ends_every_session_of_the_user() {
    let service = service().await;
    let first = sign_in(&service, "sam", SAM_PASSWORD).await;
    let second = sign_in(&service, "sam", SAM_PASSWORD).await;
    let admin = service.access_token(ADMIN).await;
    let request = Request::put("/admin/users/sam/password")
        .header(header::AUTHORIZATION, format!("Bearer {admin}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(r#"{"password": "operator-set-1"}"#))
        .unwrap();
    assert_eq!(service.call(request).await.status, StatusCode::NO_CONTENT);
    for signed_in in [&first, &second] {
        assert!(!session_signs_in(&service, &signed_in.session).await);
        assert_eq!(
            refresh(&service, signed_in.refresh()).await.error(),
            "invalid_grant"
        );
    }
    // The new password works, the old one not.
    let form = login_form(&service, &authorize_query("web-app")).await;
    assert_eq!(
        submit(&service, &form, "sam", SAM_PASSWORD).await.status,
        StatusCode::UNAUTHORIZED
    );
    sign_in(&service, "sam", "operator-set-1").await;
}

// ---- logout hints -------------------------------------------------------------------------

#[tokio::test]
async fn a_logout_hint_from_another_session_asks_first_and_signs_nobody_out() {
    let service = service().await;
    let mine = sign_in(&service, "jane", "jane-password-1").await;
    let other = sign_in(&service, "jane", "jane-password-1").await;
    // My browser, another session's hint: a confirmation page, nothing ended.
    let path = format!("/logout?id_token_hint={}", other.id_token());
    let answer = get_with_cookies(&service, &path, std::slice::from_ref(&mine.session)).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(
        answer.text.contains("Do you want to sign out?"),
        "{}",
        answer.text
    );
    assert!(session_signs_in(&service, &mine.session).await);
    assert!(session_signs_in(&service, &other.session).await);
    assert!(active(&service, other.access()).await);
    // No session at all, a valid hint: asks too.
    let cookieless = get_with_cookies(&service, &path, &[]).await;
    assert!(cookieless.text.contains("Do you want to sign out?"));
    assert!(session_signs_in(&service, &other.session).await);
    // The session's own hint signs out at once, the other session stays.
    let own = format!("/logout?id_token_hint={}", mine.id_token());
    let answer = get_with_cookies(&service, &own, std::slice::from_ref(&mine.session)).await;
    assert!(
        answer.text.contains("You are signed out."),
        "{}",
        answer.text
    );
    assert!(!session_signs_in(&service, &mine.session).await);
    assert!(session_signs_in(&service, &other.session).await);
}

// ---- refresh: the client's current scopes, the family's absolute lifetime ------------------

#[tokio::test]
async fn a_refresh_grants_only_the_scopes_the_client_still_has() {
    let mut service = service().await;
    let signed_in = sign_in(&service, "jane", "jane-password-1").await;
    assert_eq!(signed_in.tokens["scope"], "openid profile");
    let config = |scopes: &str| {
        service_config().replace(
            r#"scopes = ["openid", "profile", "email", "ad:user_custom:read"]"#,
            &format!("scopes = {scopes}"),
        )
    };
    // The operator takes `profile` from the web app and restarts the service.
    service.state = TestService::open(
        &config(r#"["openid", "email"]"#),
        &service.url,
        &service.clock,
    )
    .await;
    let narrowed = refresh(&service, signed_in.refresh()).await;
    assert_eq!(narrowed.status, StatusCode::OK, "{}", narrowed.text);
    assert_eq!(narrowed.json["scope"], "openid");
    let next = narrowed.json["refresh_token"].as_str().unwrap().to_owned();
    // Asking for it back is refused; so is a refresh when nothing of the grant is left.
    let wider = service
        .post(
            "/token",
            None,
            &format!("grant_type=refresh_token&client_id=web-app&refresh_token={next}&scope=openid%20profile"),
        )
        .await;
    assert_eq!(wider.error(), "invalid_scope", "{}", wider.text);
    service.state = TestService::open(&config(r#"["email"]"#), &service.url, &service.clock).await;
    assert_eq!(refresh(&service, &next).await.error(), "invalid_grant");
}

#[tokio::test]
async fn a_refresh_family_ends_at_its_absolute_lifetime_however_often_it_rotates() {
    let config = service_config().replace(
        "[defaults]\naccess_token_ttl = \"60m\"",
        "[defaults]\naccess_token_ttl = \"60m\"\nrefresh_token_ttl = \"1h\"\nrefresh_token_absolute_ttl = \"2h\"",
    );
    assert!(config.contains("refresh_token_absolute_ttl"));
    let service = TestService::start_with(&config).await;
    let signed_in = sign_in(&service, "jane", "jane-password-1").await;
    let mut current = signed_in.refresh().to_owned();
    // Rotated every 50 minutes, each token well within its sliding hour...
    for _ in 0..2 {
        service.advance(std::time::Duration::from_secs(50 * 60));
        let rotated = refresh(&service, &current).await;
        assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.text);
        current = rotated.json["refresh_token"].as_str().unwrap().to_owned();
    }
    // ...but 2 h 30 min after the code, the family is over.
    service.advance(std::time::Duration::from_secs(50 * 60));
    assert_eq!(refresh(&service, &current).await.error(), "invalid_grant");
}

#[test]
fn an_absolute_refresh_lifetime_shorter_than_one_token_is_refused() {
    let config = service_config().replace(
        "[defaults]\naccess_token_ttl = \"60m\"",
        "[defaults]\naccess_token_ttl = \"60m\"\nrefresh_token_ttl = \"2h\"\nrefresh_token_absolute_ttl = \"1h\"",
    );
    let error = scopegate_token_service::Config::from_toml(&config).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("defaults.refresh_token_absolute_ttl"),
        "{error}"
    );
}
