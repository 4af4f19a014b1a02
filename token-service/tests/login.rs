//! The browser sign-in and the authorization code flow, in-process: `/authorize`, the login
//! form, the session cookie, PKCE, the code exchange and the id_token.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use axum::body::Body;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{Request, StatusCode, header};
use scopegate_token_service::grant::authorization_code::s256;
use scopegate_token_service::id_token::at_hash;
use scopegate_token_service::keys::KeyAlgorithm;
use scopegate_token_service::tokens;
use support::*;

const REDIRECT: &str = "http://127.0.0.1:3000/callback";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

fn query(extra: &str) -> String {
    format!(
        "response_type=code&client_id=web-app&redirect_uri={}&scope=openid%20profile%20email%20ad:user_custom:read&state=st-1&nonce=n-1&code_challenge={}&code_challenge_method=S256{extra}",
        form_encode(REDIRECT),
        s256(VERIFIER)
    )
}

async fn exchange(service: &TestService, code: &str, extra: &str) -> Answer {
    service
        .post(
            "/token",
            None,
            &format!(
                "grant_type=authorization_code&client_id=web-app&code={code}&redirect_uri={}{extra}",
                form_encode(REDIRECT)
            ),
        )
        .await
}

fn claims(jwt: &str) -> serde_json::Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

#[tokio::test]
async fn the_login_page_is_served_with_protective_headers() {
    let service = TestService::start().await;
    let page = get_with_cookies(&service, &format!("/authorize?{}", query("")), &[]).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.header("content-security-policy")
            .contains("frame-ancestors 'none'")
    );
    assert_eq!(page.header("referrer-policy"), "no-referrer");
    assert_eq!(page.header("x-frame-options"), "DENY");
    assert_eq!(page.header("cache-control"), "no-store");
    assert!(
        page.text
            .contains("<label for=\"username\">Username</label>")
    );
    assert!(page.text.contains("type=\"password\""));
    assert!(page.text.contains("web-app"));
    let nonce = set_cookies(&page)
        .into_iter()
        .find(|c| c.starts_with("scopegate_login="))
        .unwrap();
    assert!(
        nonce.contains("HttpOnly") && nonce.contains("SameSite=Lax"),
        "{nonce}"
    );
    let css = service.get("/assets/login.css").await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(css.header("content-type").starts_with("text/css"));
}

#[tokio::test]
async fn signing_in_redirects_with_code_state_and_iss_and_sets_the_session_cookie() {
    let service = TestService::start().await;
    let form = login_form(&service, &query("")).await;
    let answer = submit(&service, &form, "jane", "jane-password-1").await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.text);
    let (location, params) = location_params(&answer);
    assert!(location.starts_with(REDIRECT), "{location}");
    assert_eq!(param(&params, "state"), Some("st-1"));
    assert_eq!(param(&params, "iss"), Some("http://127.0.0.1:8080"));
    assert_eq!(param(&params, "code").unwrap().len(), 43);
    let session = set_cookies(&answer)
        .into_iter()
        .find(|c| c.starts_with("scopegate_session="))
        .unwrap();
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=1209600"] {
        assert!(session.contains(attribute), "{attribute} in {session}");
    }
    assert!(
        !session.contains("Secure"),
        "an http issuer cannot set Secure cookies"
    );
}

#[tokio::test]
async fn the_code_buys_an_access_token_and_an_id_token_with_the_released_claims() {
    let service = TestService::start().await;
    let (code, _) = sign_in_jane(&service, &query("")).await;
    let answer = exchange(&service, &code, &format!("&code_verifier={VERIFIER}")).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(answer.header("cache-control"), "no-store");
    let access = answer.json["access_token"].as_str().unwrap();
    let id_token = answer.json["id_token"].as_str().unwrap();
    let access_claims = claims(access);
    assert_eq!(access_claims["sub"], "jane");
    assert_eq!(access_claims["client_id"], "web-app");
    let id = claims(id_token);
    assert_eq!(id["iss"], "http://127.0.0.1:8080");
    assert_eq!(id["aud"], "web-app");
    assert_eq!(id["sub"], "jane");
    assert_eq!(id["nonce"], "n-1");
    assert!(id["auth_time"].as_u64().is_some());
    assert_eq!(id["sid"].as_str().unwrap().len(), 22);
    assert_eq!(id["at_hash"], at_hash(access, KeyAlgorithm::Es256));
    assert_eq!(id["given_name"], "Jane", "profile");
    assert_eq!(id["email"], "jane@example.test", "email");
    assert_eq!(id["email_verified"], true);
    assert_eq!(id["company_name"], "Bizcorp", "the custom scope's claim");
    assert!(
        id.get("companyName").is_none(),
        "attributes are released under their claim name"
    );
}

/// OpenID Connect Core §5.1 and §5.4, complete: `phone` and `address` released, `name` made
/// of the name parts when none is stored, `updated_at` from the user's record — in the id_token
/// and at `/userinfo` alike.
#[tokio::test]
async fn every_standard_scope_releases_its_claims_and_the_service_fills_name_and_updated_at() {
    let config = config_text("http://127.0.0.1:8080", "ES256").replace(
        r#"scopes = ["openid", "profile", "email", "ad:user_custom:read"]"#,
        r#"scopes = ["openid", "profile", "email", "phone", "address", "ad:user_custom:read"]"#,
    );
    let service = TestService::start_with(&config).await;
    let mut attributes = serde_json::Map::new();
    for (claim, value) in [
        ("given_name", serde_json::json!("Ola")),
        ("middle_name", serde_json::json!("K.")),
        ("family_name", serde_json::json!("Nordmann")),
        ("phone_number", serde_json::json!("+47 22 00 00 00")),
        ("phone_number_verified", serde_json::json!(true)),
        ("street_address", serde_json::json!("Karl Johans gate 1")),
        ("locality", serde_json::json!("Oslo")),
        ("postal_code", serde_json::json!("0154")),
        ("country", serde_json::json!("NO")),
    ] {
        attributes.insert(claim.to_owned(), value);
    }
    let created_at = service.state.now();
    service
        .state
        .directory()
        .create_user("ola", "ola-password-long-1", attributes, created_at)
        .await
        .unwrap();
    let wide = query("").replace(
        "scope=openid%20profile%20email%20ad:user_custom:read",
        "scope=openid%20profile%20phone%20address",
    );
    let form = login_form(&service, &wide).await;
    let signed_in = submit(&service, &form, "ola", "ola-password-long-1").await;
    assert_eq!(
        signed_in.status,
        StatusCode::SEE_OTHER,
        "{}",
        signed_in.text
    );
    let (_, params) = location_params(&signed_in);
    let code = param(&params, "code").unwrap();
    let answer = exchange(&service, code, &format!("&code_verifier={VERIFIER}")).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    let id = claims(answer.json["id_token"].as_str().unwrap());
    let access = answer.json["access_token"].as_str().unwrap();
    let userinfo = service
        .call(
            Request::get("/userinfo")
                .header(header::AUTHORIZATION, format!("Bearer {access}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(userinfo.status, StatusCode::OK, "{}", userinfo.text);
    for released in [&id, &userinfo.json] {
        assert_eq!(released["name"], "Ola K. Nordmann", "{released}");
        assert_eq!(released["updated_at"], created_at, "{released}");
        assert_eq!(released["phone_number"], "+47 22 00 00 00");
        assert_eq!(released["phone_number_verified"], true);
        assert_eq!(
            released["address"],
            serde_json::json!({
                "street_address": "Karl Johans gate 1",
                "locality": "Oslo",
                "postal_code": "0154",
                "country": "NO",
            })
        );
        assert!(released.get("email").is_none(), "email was not granted");
    }
}

#[tokio::test]
async fn a_stored_name_is_kept_and_one_name_part_makes_no_name() {
    let config = config_text("http://127.0.0.1:8080", "ES256");
    let service = TestService::start_with(&config).await;
    let now = service.state.now();
    let mut named = serde_json::Map::new();
    named.insert("name".to_owned(), "Dr. Kari Nordmann".into());
    named.insert("given_name".to_owned(), "Kari".into());
    named.insert("family_name".to_owned(), "Nordmann".into());
    let mut given_only = serde_json::Map::new();
    given_only.insert("given_name".to_owned(), "Per".into());
    let directory = service.state.directory();
    directory
        .create_user("kari", "kari-password-long-1", named, now)
        .await
        .unwrap();
    directory
        .create_user("per", "per-password-long-1", given_only, now)
        .await
        .unwrap();
    for (username, password, expected_name) in [
        ("kari", "kari-password-long-1", Some("Dr. Kari Nordmann")),
        ("per", "per-password-long-1", None),
    ] {
        let form = login_form(&service, &query("")).await;
        let signed_in = submit(&service, &form, username, password).await;
        assert_eq!(
            signed_in.status,
            StatusCode::SEE_OTHER,
            "{}",
            signed_in.text
        );
        let (_, params) = location_params(&signed_in);
        let answer = exchange(
            &service,
            param(&params, "code").unwrap(),
            &format!("&code_verifier={VERIFIER}"),
        )
        .await;
        let id = claims(answer.json["id_token"].as_str().unwrap());
        assert_eq!(
            id.get("name").and_then(|name| name.as_str()),
            expected_name,
            "{username}"
        );
    }
}

/// Scopes of a user's token addressed to the API (`akamai:social_profile:read`) and granting
/// the custom scope marked `access_token`.
const CARRYING: &str = "openid%20akamai:social_profile:read%20ad:user_custom:read";

/// The test configuration with the custom scope `ad:user_custom:read` marked `access_token`,
/// `web-app` and the opaque `conf-web` allowed it and the API's scope, and `extra` appended.
fn carried_claims_config(extra: &str) -> String {
    let config = config_text("http://127.0.0.1:8080", "ES256")
        .replace(
            r#"claims = { company_name = "companyName" }"#,
            "claims = { company_name = \"companyName\" }\naccess_token = true",
        )
        .replace(
            r#"scopes = ["openid", "profile", "email", "ad:user_custom:read"]"#,
            r#"scopes = ["openid", "profile", "email", "ad:user_custom:read", "akamai:social_profile:read"]"#,
        )
        .replace(
            "scopes = [\"openid\", \"email\"]\ntoken_format = \"opaque\"",
            "scopes = [\"openid\", \"ad:user_custom:read\", \"akamai:social_profile:read\"]\ntoken_format = \"opaque\"",
        );
    for changed in [
        "access_token = true",
        r#""ad:user_custom:read", "akamai:social_profile:read"]"#,
        r#""openid", "ad:user_custom:read", "akamai:social_profile:read"]"#,
    ] {
        assert!(
            config.contains(changed),
            "the test configuration changed: {changed}"
        );
    }
    format!("{config}\n{extra}")
}

/// Signs jane in at `web-app` for [`CARRYING`] and redeems the code: the token answer.
async fn carrying_tokens(service: &TestService) -> Answer {
    let carrying = query("").replace(
        "scope=openid%20profile%20email%20ad:user_custom:read",
        &format!("scope={CARRYING}"),
    );
    let (code, _) = sign_in_jane(service, &carrying).await;
    let answer = exchange(service, &code, &format!("&code_verifier={VERIFIER}")).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    answer
}

#[tokio::test]
async fn a_scope_marked_access_token_carries_its_claims_in_jwts_and_at_introspection() {
    let service = TestService::start_with(&carried_claims_config("")).await;
    // A JWT (web-app): the claim among its claims, and at introspection by the API it is for.
    let answer = carrying_tokens(&service).await;
    let jwt = answer.json["access_token"].as_str().unwrap();
    assert_eq!(claims(jwt)["company_name"], "Bizcorp");
    let introspected = service.introspect((API, API_SECRET), jwt).await;
    assert_eq!(introspected.json["active"], true, "{}", introspected.text);
    assert_eq!(introspected.json["company_name"], "Bizcorp");
    // The id_token's claims stay where they were; standard claims stay out of access tokens.
    let id = claims(answer.json["id_token"].as_str().unwrap());
    assert_eq!(id["company_name"], "Bizcorp");
    assert!(claims(jwt).get("email").is_none());

    // An opaque token (conf-web): the claim at introspection, to the API it is for.
    let redirect = "https://app.example.test/cb?tenant=7";
    let form = login_form(
        &service,
        &format!(
            "response_type=code&client_id=conf-web&redirect_uri={}&scope={CARRYING}&state=s",
            form_encode(redirect)
        ),
    )
    .await;
    let signed_in = submit(&service, &form, "jane", "jane-password-1").await;
    let code = param(&location_params(&signed_in).1, "code")
        .unwrap()
        .to_owned();
    let issued = service
        .post(
            "/token",
            Some(("conf-web", "conf-web-secret")),
            &format!(
                "grant_type=authorization_code&code={code}&redirect_uri={}",
                form_encode(redirect)
            ),
        )
        .await;
    assert_eq!(issued.status, StatusCode::OK, "{}", issued.text);
    let opaque = issued.json["access_token"].as_str().unwrap();
    assert_eq!(opaque.split('.').count(), 1, "an opaque token");
    let introspected = service.introspect((API, API_SECRET), opaque).await;
    assert_eq!(
        introspected.json["company_name"], "Bizcorp",
        "{}",
        introspected.text
    );
    // An API the token is not for learns nothing of it.
    let elsewhere = service
        .introspect((OTHER_API, "other-secret"), opaque)
        .await;
    assert_eq!(
        elsewhere.json,
        serde_json::json!({ "active": false }),
        "{}",
        elsewhere.text
    );
    // A client's own token carries no user's claims.
    let own = service.access_token(("svc-opaque", "opaque-secret")).await;
    let own = service.introspect((API, API_SECRET), &own).await;
    assert_eq!(own.json["active"], true, "{}", own.text);
    assert!(own.json.get("company_name").is_none());
}

#[tokio::test]
async fn claims_over_the_size_limit_are_all_left_out_with_a_warning() {
    let service = TestService::start_with(&carried_claims_config(
        "[limits]\nmax_access_token_claims_bytes = 16\n",
    ))
    .await;
    let (logs, _guard) = support::logs::capture(tracing::Level::WARN);
    let answer = carrying_tokens(&service).await;
    let jwt = answer.json["access_token"].as_str().unwrap();
    assert!(claims(jwt).get("company_name").is_none());
    assert!(
        logs.text()
            .contains("larger than limits.max_access_token_claims_bytes"),
        "{}",
        logs.text()
    );
    let introspected = service.introspect((API, API_SECRET), jwt).await;
    assert_eq!(introspected.json["active"], true, "{}", introspected.text);
    assert!(introspected.json.get("company_name").is_none());
}

#[tokio::test]
async fn claims_are_limited_to_the_scopes_granted() {
    let service = TestService::start().await;
    let narrow = query("").replace(
        "scope=openid%20profile%20email%20ad:user_custom:read",
        "scope=openid",
    );
    let (code, _) = sign_in_jane(&service, &narrow).await;
    let answer = exchange(&service, &code, &format!("&code_verifier={VERIFIER}")).await;
    let id = claims(answer.json["id_token"].as_str().unwrap());
    for claim in ["given_name", "email", "company_name"] {
        assert!(
            id.get(claim).is_none(),
            "{claim} released without its scope"
        );
    }
}

#[tokio::test]
async fn a_session_gives_a_code_without_asking_again_unless_prompt_or_max_age_demand_it() {
    let service = TestService::start().await;
    let (_, session) = sign_in_jane(&service, &query("")).await;
    let again = get_with_cookies(
        &service,
        &format!("/authorize?{}", query("")),
        std::slice::from_ref(&session),
    )
    .await;
    assert_eq!(again.status, StatusCode::SEE_OTHER, "{}", again.text);
    assert!(param(&location_params(&again).1, "code").is_some());

    let forced = get_with_cookies(
        &service,
        &format!("/authorize?{}", query("&prompt=login")),
        std::slice::from_ref(&session),
    )
    .await;
    assert_eq!(forced.status, StatusCode::OK, "prompt=login shows the form");
    service.advance(Duration::from_secs(120));
    let stale = get_with_cookies(
        &service,
        &format!("/authorize?{}", query("&max_age=60")),
        std::slice::from_ref(&session),
    )
    .await;
    assert_eq!(
        stale.status,
        StatusCode::OK,
        "max_age exceeded shows the form"
    );
    let recent = get_with_cookies(
        &service,
        &format!("/authorize?{}", query("&max_age=600")),
        &[session],
    )
    .await;
    assert_eq!(recent.status, StatusCode::SEE_OTHER);

    let none = get_with_cookies(
        &service,
        &format!("/authorize?{}", query("&prompt=none")),
        &[],
    )
    .await;
    assert_eq!(none.status, StatusCode::SEE_OTHER);
    assert_eq!(
        param(&location_params(&none).1, "error"),
        Some("login_required")
    );
}

#[tokio::test]
async fn the_session_expires_after_its_lifetime() {
    let service = TestService::start().await;
    let (_, session) = sign_in_jane(&service, &query("")).await;
    service.advance(Duration::from_secs(14 * 24 * 3600 + 1));
    let page = get_with_cookies(&service, &format!("/authorize?{}", query("")), &[session]).await;
    assert_eq!(page.status, StatusCode::OK, "asked to sign in again");
}

#[tokio::test]
async fn a_wrong_password_and_an_unknown_user_get_the_same_answer() {
    let service = TestService::start().await;
    let form = login_form(&service, &query("")).await;
    let wrong = submit(&service, &form, "jane", "not-her-password").await;
    let unknown = submit(&service, &form, "nobody", "jane-password-1").await;
    for answer in [&wrong, &unknown] {
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
        assert!(answer.text.contains("Wrong username or password."));
        assert!(cookie(answer, "scopegate_session").is_none());
        assert_eq!(answer.header("location"), "<absent>");
    }
}

#[tokio::test]
async fn repeated_failures_are_throttled_even_with_the_right_password() {
    let service = TestService::start().await;
    let form = login_form(&service, &query("")).await;
    for _ in 0..5 {
        assert_eq!(
            submit(&service, &form, "jane", "guess").await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    let blocked = submit(&service, &form, "jane", "jane-password-1").await;
    assert_eq!(blocked.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(blocked.header("retry-after").parse::<u64>().is_ok());
    assert!(cookie(&blocked, "scopegate_session").is_none());
}

/// 200 wrong passwords for one user at once: each is counted before it is judged, so no more
/// are checked than the limit allows, and the right password is then refused too.
#[tokio::test]
async fn concurrent_wrong_passwords_get_no_more_checks_than_the_limit() {
    let service = TestService::start().await;
    let form = login_form(&service, &query("")).await;
    let guesses = (0..200)
        .map(|index| {
            from_address(
                login_request(&form, "jane", &format!("guess{index}")),
                "192.0.2.50",
            )
        })
        .collect();
    let statuses = service.burst(guesses).await;
    let judged = statuses
        .iter()
        .filter(|status| passed_the_count(**status))
        .count();
    let refused = statuses
        .iter()
        .filter(|status| **status == StatusCode::TOO_MANY_REQUESTS)
        .count();
    let limit = scopegate_token_service::throttle::PER_ACCOUNT_PER_NETWORK;
    assert_eq!(judged as u64, limit, "{statuses:?}");
    assert_eq!(judged + refused, 200, "{statuses:?}");
    let right = service
        .call(from_address(
            login_request(&form, "jane", "jane-password-1"),
            "192.0.2.50",
        ))
        .await;
    assert_eq!(right.status, StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = right.header("retry-after").parse().unwrap();
    assert!((1..=900).contains(&retry_after), "{retry_after}");
    assert!(cookie(&right, "scopegate_session").is_none());
    // Knowing her username did not keep her out: from her own address she signs in.
    let owner = service
        .call(from_address(
            login_request(&form, "jane", "jane-password-1"),
            "198.51.100.4",
        ))
        .await;
    assert_eq!(owner.status, StatusCode::SEE_OTHER, "{}", owner.text);
}

/// An owner's own sign-ins never add up to a limit: a success takes its count back.
#[tokio::test]
async fn successful_sign_ins_are_not_counted_against_the_owner() {
    let service = TestService::start().await;
    let limit = scopegate_token_service::throttle::PER_ACCOUNT_PER_NETWORK;
    for _ in 0..2 * limit {
        let form = login_form(&service, &query("")).await;
        let answer = service
            .call(from_address(
                login_request(&form, "jane", "jane-password-1"),
                "192.0.2.51",
            ))
            .await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.text);
    }
    let form = login_form(&service, &query("")).await;
    for _ in 0..limit {
        let answer = service
            .call(from_address(
                login_request(&form, "jane", "typo"),
                "192.0.2.51",
            ))
            .await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    }
}

/// A password the service has seen match is still counted first: past the limit the right
/// one gets the same answer as a wrong one, so a guesser learns nothing from it.
#[tokio::test]
async fn past_the_limit_even_a_password_seen_before_is_refused_unchecked() {
    let service = TestService::start().await;
    let form = login_form(&service, &query("")).await;
    let signed_in = service
        .call(from_address(
            login_request(&form, "jane", "jane-password-1"),
            "192.0.2.52",
        ))
        .await;
    assert_eq!(signed_in.status, StatusCode::SEE_OTHER);
    let limit = scopegate_token_service::throttle::PER_ACCOUNT_PER_NETWORK;
    for index in 0..limit {
        let guess = format!("guess{index}");
        let answer = service
            .call(from_address(
                login_request(&form, "jane", &guess),
                "192.0.2.52",
            ))
            .await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    }
    let right = service
        .call(from_address(
            login_request(&form, "jane", "jane-password-1"),
            "192.0.2.52",
        ))
        .await;
    assert_eq!(right.status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn the_login_form_is_csrf_protected() {
    let service = TestService::start().await;
    let form = login_form(&service, &query("")).await;
    let other = login_form(&service, &query("")).await;
    let forged = [
        LoginForm {
            csrf: String::new(),
            ..login_form(&service, &query("")).await
        },
        LoginForm {
            csrf: "AAAA".into(),
            ..login_form(&service, &query("")).await
        },
        // A valid token, but for another browser's nonce.
        LoginForm {
            csrf: other.csrf.clone(),
            nonce_cookie: form.nonce_cookie.clone(),
            request: form.request.clone(),
        },
        LoginForm {
            nonce_cookie: "unrelated=1".into(),
            ..login_form(&service, &query("")).await
        },
    ];
    for forged in &forged {
        let answer = submit(&service, forged, "jane", "jane-password-1").await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN);
        assert!(cookie(&answer, "scopegate_session").is_none());
    }
    assert_eq!(
        submit(&service, &form, "jane", "jane-password-1")
            .await
            .status,
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn bad_clients_and_redirect_uris_get_an_error_page_never_a_redirect() {
    let service = TestService::start().await;
    for bad in [
        query("").replace("client_id=web-app", "client_id=nobody"),
        query("").replace(
            &form_encode(REDIRECT),
            &form_encode("http://127.0.0.1:3000/callback/x"),
        ),
        query("").replace(
            &form_encode(REDIRECT),
            &form_encode("https://evil.example.test/cb"),
        ),
        query("").replace("client_id=web-app&", ""),
    ]
    .into_iter()
    .chain(
        [
            // Path tricks, another port, another scheme, case, a trailing slash, a fragment.
            "http://127.0.0.1:3000/callback/..%2Fevil",
            "http://127.0.0.1:3000/callback/../evil",
            "http://127.0.0.1:3001/callback",
            "https://127.0.0.1:3000/callback",
            "http://127.0.0.1:3000/Callback",
            "http://127.0.0.1:3000/callback/",
            "http://127.0.0.1:3000/callback#x",
            "http://127.0.0.1:3000/callback?x=1",
        ]
        .into_iter()
        .map(|uri| query("").replace(&form_encode(REDIRECT), &form_encode(uri))),
    ) {
        let answer = get_with_cookies(&service, &format!("/authorize?{bad}"), &[]).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(answer.header("location"), "<absent>");
        assert!(
            answer
                .header("content-security-policy")
                .contains("frame-ancestors 'none'")
        );
    }
}

#[tokio::test]
async fn other_request_errors_go_back_to_the_client_with_state_and_iss() {
    let service = TestService::start().await;
    let without_pkce = query("").replace(
        &format!(
            "&code_challenge={}&code_challenge_method=S256",
            s256(VERIFIER)
        ),
        "",
    );
    for (bad, error) in [
        (
            query("").replace("response_type=code", "response_type=token"),
            "unsupported_response_type",
        ),
        (
            query("").replace("code_challenge_method=S256", "code_challenge_method=plain"),
            "invalid_request",
        ),
        (
            query("").replace("&code_challenge_method=S256", ""),
            "invalid_request",
        ),
        (without_pkce, "invalid_request"),
        (query("&scope=admin"), "invalid_request"),
        (
            query("").replace("scope=openid%20profile", "scope=admin%20profile"),
            "invalid_scope",
        ),
        (query("&prompt=none%20login"), "invalid_request"),
        (query("&max_age=soon"), "invalid_request"),
    ] {
        let answer = get_with_cookies(&service, &format!("/authorize?{bad}"), &[]).await;
        assert_eq!(
            answer.status,
            StatusCode::SEE_OTHER,
            "{bad}: {}",
            answer.text
        );
        let (location, params) = location_params(&answer);
        assert!(location.starts_with(REDIRECT));
        assert_eq!(param(&params, "error"), Some(error), "{bad}");
        assert_eq!(param(&params, "state"), Some("st-1"));
        assert_eq!(param(&params, "iss"), Some("http://127.0.0.1:8080"));
        assert!(param(&params, "code").is_none());
    }
}

#[tokio::test]
async fn a_second_redemption_fails_and_revokes_what_the_first_issued() {
    let service = TestService::start().await;
    let (code, _) = sign_in_jane(&service, &query("")).await;
    let first = exchange(&service, &code, &format!("&code_verifier={VERIFIER}")).await;
    assert_eq!(first.status, StatusCode::OK);
    let access = first.json["access_token"].as_str().unwrap();
    assert!(
        tokens::lookup(&service.state, access)
            .await
            .unwrap()
            .is_some()
    );
    let second = exchange(&service, &code, &format!("&code_verifier={VERIFIER}")).await;
    assert_eq!(
        (second.status, second.error()),
        (StatusCode::BAD_REQUEST, "invalid_grant")
    );
    assert!(
        tokens::lookup(&service.state, access)
            .await
            .unwrap()
            .is_none(),
        "revoked"
    );
}

#[tokio::test]
async fn of_twenty_concurrent_redemptions_exactly_one_succeeds() {
    let service = std::sync::Arc::new(TestService::start().await);
    let (code, _) = sign_in_jane(&service, &query("")).await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let service = std::sync::Arc::clone(&service);
        let code = code.clone();
        tasks.spawn(async move {
            exchange(&service, &code, &format!("&code_verifier={VERIFIER}")).await
        });
    }
    let (mut successes, mut refusals) = (0, 0);
    while let Some(answer) = tasks.join_next().await {
        let answer = answer.unwrap();
        match answer.status {
            StatusCode::OK => successes += 1,
            StatusCode::BAD_REQUEST if answer.error() == "invalid_grant" => refusals += 1,
            other => panic!("unexpected {other}: {}", answer.text),
        }
    }
    assert_eq!((successes, refusals), (1, 19));
}

#[tokio::test]
async fn pkce_redirect_uri_client_and_expiry_are_enforced() {
    let service = TestService::start().await;
    let other_verifier = "x".repeat(43);
    let cases = [
        (format!("&code_verifier={other_verifier}"), "wrong verifier"),
        (String::new(), "missing verifier"),
        (
            format!("&code_verifier={VERIFIER}&redirect_uri=x"),
            "repeated redirect_uri",
        ),
    ];
    for (extra, why) in cases {
        let (code, _) = sign_in_jane(&service, &query("")).await;
        let answer = exchange(&service, &code, &extra).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{why}");
        // The rightful exchange still works: failed checks do not consume the code.
        if why != "repeated redirect_uri" {
            assert_eq!(answer.error(), "invalid_grant", "{why}");
            let retry = exchange(&service, &code, &format!("&code_verifier={VERIFIER}")).await;
            assert_eq!(retry.status, StatusCode::OK, "{why}: {}", retry.text);
        }
    }
    let (code, _) = sign_in_jane(&service, &query("")).await;
    let wrong_redirect = service
        .post(
            "/token",
            None,
            &format!("grant_type=authorization_code&client_id=web-app&code={code}&redirect_uri={}&code_verifier={VERIFIER}", form_encode("http://127.0.0.1:3000/other")),
        )
        .await;
    assert_eq!(wrong_redirect.error(), "invalid_grant");
    let other_client = service
        .post(
            "/token",
            Some(("conf-web", "conf-web-secret")),
            &format!("grant_type=authorization_code&code={code}&redirect_uri={}&code_verifier={VERIFIER}", form_encode(REDIRECT)),
        )
        .await;
    assert_eq!(other_client.error(), "invalid_grant");
    service.advance(Duration::from_secs(61));
    let expired = exchange(&service, &code, &format!("&code_verifier={VERIFIER}")).await;
    assert_eq!(expired.error(), "invalid_grant", "codes live 60 s");
}

#[tokio::test]
async fn a_confidential_client_authenticates_and_may_skip_pkce_but_not_send_a_stray_verifier() {
    let service = TestService::start().await;
    let redirect = "https://app.example.test/cb?tenant=7";
    let conf_query = format!(
        "response_type=code&client_id=conf-web&redirect_uri={}&scope=openid%20email&state=s2",
        form_encode(redirect)
    );
    for (extra, expected) in [
        (
            format!("&code_verifier={VERIFIER}"),
            StatusCode::BAD_REQUEST,
        ),
        (String::new(), StatusCode::OK),
    ] {
        let form = login_form(&service, &conf_query).await;
        let answer = submit(&service, &form, "jane", "jane-password-1").await;
        let (location, params) = location_params(&answer);
        assert!(
            location.starts_with("https://app.example.test/cb?tenant=7&"),
            "{location}"
        );
        let code = param(&params, "code").unwrap().to_owned();
        let token = service
            .post(
                "/token",
                Some(("conf-web", "conf-web-secret")),
                &format!(
                    "grant_type=authorization_code&code={code}&redirect_uri={}{extra}",
                    form_encode(redirect)
                ),
            )
            .await;
        assert_eq!(token.status, expected, "{extra}: {}", token.text);
    }
    // Without its secret the confidential client is not identified by client_id alone.
    let form = login_form(&service, &conf_query).await;
    let answer = submit(&service, &form, "jane", "jane-password-1").await;
    let code = param(&location_params(&answer).1, "code")
        .unwrap()
        .to_owned();
    let token = service
        .post(
            "/token",
            None,
            &format!(
                "grant_type=authorization_code&client_id=conf-web&code={code}&redirect_uri={}",
                form_encode(redirect)
            ),
        )
        .await;
    assert_eq!(
        (token.status, token.error()),
        (StatusCode::UNAUTHORIZED, "invalid_client")
    );
}

// ---- refresh tokens --------------------------------------------------------------------

async fn refresh(service: &TestService, token: &str, extra: &str) -> Answer {
    service
        .post(
            "/token",
            None,
            &format!("grant_type=refresh_token&client_id=web-app&refresh_token={token}{extra}"),
        )
        .await
}

/// Signs in and redeems the code; returns the token response.
async fn first_tokens(service: &TestService) -> serde_json::Value {
    let (code, _) = sign_in_jane(service, &query("")).await;
    let answer = exchange(service, &code, &format!("&code_verifier={VERIFIER}")).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    answer.json
}

#[tokio::test]
async fn refresh_tokens_rotate_and_a_reused_one_revokes_the_family() {
    let service = TestService::start().await;
    let first = first_tokens(&service).await;
    let r1 = first["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(r1.len(), 43);
    let second = refresh(&service, &r1, "").await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.text);
    assert_eq!(second.header("cache-control"), "no-store");
    let r2 = second.json["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(r1, r2, "rotated");
    assert!(second.json["id_token"].is_string());
    let access2 = second.json["access_token"].as_str().unwrap().to_owned();
    assert_eq!(claims(&access2)["sub"], "jane");

    // The rotated token comes back: refused, and the whole family is revoked.
    let reused = refresh(&service, &r1, "").await;
    assert_eq!(
        (reused.status, reused.error()),
        (StatusCode::BAD_REQUEST, "invalid_grant")
    );
    let after = refresh(&service, &r2, "").await;
    assert_eq!(
        after.error(),
        "invalid_grant",
        "the live successor is revoked too"
    );
    for access in [first["access_token"].as_str().unwrap(), access2.as_str()] {
        assert!(
            tokens::lookup(&service.state, access)
                .await
                .unwrap()
                .is_none()
        );
    }
}

#[tokio::test]
async fn refreshing_can_only_narrow_the_scopes() {
    let service = TestService::start().await;
    let first = first_tokens(&service).await;
    let r1 = first["refresh_token"].as_str().unwrap();
    let narrow = refresh(&service, r1, "&scope=openid").await;
    assert_eq!(narrow.json["scope"], "openid");
    assert_eq!(
        claims(narrow.json["access_token"].as_str().unwrap())["scope"],
        "openid"
    );
    // The next refresh may ask for the original scopes again, never more.
    let r2 = narrow.json["refresh_token"].as_str().unwrap();
    let wider = refresh(&service, r2, "&scope=openid%20admin").await;
    assert_eq!(
        (wider.status, wider.error()),
        (StatusCode::BAD_REQUEST, "invalid_scope")
    );
    let back = refresh(&service, r2, "&scope=openid%20email").await;
    assert_eq!(back.json["scope"], "email openid", "{}", back.text);
}

#[tokio::test]
async fn a_refresh_token_is_bound_to_its_client_and_expires() {
    let service = TestService::start().await;
    let first = first_tokens(&service).await;
    let r1 = first["refresh_token"].as_str().unwrap();
    let foreign = service
        .post(
            "/token",
            Some(("conf-web", "conf-web-secret")),
            &format!("grant_type=refresh_token&refresh_token={r1}"),
        )
        .await;
    assert_eq!(foreign.error(), "invalid_grant");
    // The failed foreign attempt did not use it up.
    let mine = refresh(&service, r1, "").await;
    assert_eq!(mine.status, StatusCode::OK, "{}", mine.text);
    let r2 = mine.json["refresh_token"].as_str().unwrap();
    service.advance(Duration::from_secs(30 * 24 * 3600 + 1));
    assert_eq!(refresh(&service, r2, "").await.error(), "invalid_grant");
    assert_eq!(
        refresh(&service, "never-issued", "").await.error(),
        "invalid_grant"
    );
}

#[tokio::test]
async fn a_replayed_code_revokes_the_refresh_token_it_issued() {
    let service = TestService::start().await;
    let (code, _) = sign_in_jane(&service, &query("")).await;
    let first = exchange(&service, &code, &format!("&code_verifier={VERIFIER}")).await;
    let r1 = first.json["refresh_token"].as_str().unwrap().to_owned();
    let replay = exchange(&service, &code, &format!("&code_verifier={VERIFIER}")).await;
    assert_eq!(replay.error(), "invalid_grant");
    assert_eq!(refresh(&service, &r1, "").await.error(), "invalid_grant");
}

// ---- logout -----------------------------------------------------------------------------

const SIGNED_OUT: &str = "http://127.0.0.1:3000/signed-out";

#[tokio::test]
async fn logout_with_an_id_token_hint_ends_the_session_revokes_its_tokens_and_returns() {
    let service = TestService::start().await;
    let (code, session) = sign_in_jane(&service, &query("")).await;
    let tokens_json = exchange(&service, &code, &format!("&code_verifier={VERIFIER}"))
        .await
        .json;
    let id_token = tokens_json["id_token"].as_str().unwrap();
    let access = tokens_json["access_token"].as_str().unwrap();
    let refresh_token = tokens_json["refresh_token"].as_str().unwrap();

    let path = format!(
        "/logout?id_token_hint={id_token}&post_logout_redirect_uri={}&state=bye",
        form_encode(SIGNED_OUT)
    );
    let answer = get_with_cookies(&service, &path, std::slice::from_ref(&session)).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.text);
    let (location, params) = location_params(&answer);
    assert!(location.starts_with(SIGNED_OUT));
    assert_eq!(param(&params, "state"), Some("bye"));
    let cleared = set_cookies(&answer)
        .into_iter()
        .find(|c| c.starts_with("scopegate_session="))
        .unwrap();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");

    let again = get_with_cookies(&service, &format!("/authorize?{}", query("")), &[session]).await;
    assert_eq!(
        again.status,
        StatusCode::OK,
        "the old cookie no longer signs in"
    );
    assert_eq!(
        refresh(&service, refresh_token, "").await.error(),
        "invalid_grant"
    );
    assert!(
        tokens::lookup(&service.state, access)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn logout_never_redirects_to_an_unregistered_uri() {
    let service = TestService::start().await;
    let (code, session) = sign_in_jane(&service, &query("")).await;
    let id_token = exchange(&service, &code, &format!("&code_verifier={VERIFIER}"))
        .await
        .json["id_token"]
        .as_str()
        .unwrap()
        .to_owned();
    for uri in ["https://evil.example.test/", REDIRECT] {
        let path = format!(
            "/logout?id_token_hint={id_token}&post_logout_redirect_uri={}",
            form_encode(uri)
        );
        let answer = get_with_cookies(&service, &path, std::slice::from_ref(&session)).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{uri}");
        assert_eq!(answer.header("location"), "<absent>");
    }
    let still = get_with_cookies(&service, &format!("/authorize?{}", query("")), &[session]).await;
    assert_eq!(
        still.status,
        StatusCode::SEE_OTHER,
        "nothing was signed out"
    );
}

#[tokio::test]
async fn logout_without_a_hint_asks_first_and_the_confirmation_is_csrf_protected() {
    let service = TestService::start().await;
    let (_, session) = sign_in_jane(&service, &query("")).await;
    let ask = get_with_cookies(&service, "/logout", std::slice::from_ref(&session)).await;
    assert_eq!(ask.status, StatusCode::OK);
    assert!(ask.text.contains("Do you want to sign out?"));
    let still = get_with_cookies(
        &service,
        &format!("/authorize?{}", query("")),
        std::slice::from_ref(&session),
    )
    .await;
    assert_eq!(
        still.status,
        StatusCode::SEE_OTHER,
        "asking signs nobody out"
    );

    let nonce = cookie(&ask, "scopegate_login").unwrap();
    let post = |csrf: String| {
        Request::post("/logout")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::COOKIE, format!("{nonce}; {session}"))
            .body(Body::from(format!("csrf={}&request=", form_encode(&csrf))))
            .unwrap()
    };
    let forged = service.call(post("AAAA".into())).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let confirmed = service.call(post(hidden(&ask.text, "csrf"))).await;
    assert_eq!(confirmed.status, StatusCode::OK);
    assert!(confirmed.text.contains("You are signed out."));
    let after = get_with_cookies(&service, &format!("/authorize?{}", query("")), &[session]).await;
    assert_eq!(after.status, StatusCode::OK, "signed out");
}

// ---- password change ---------------------------------------------------------------------

/// A stored user (one the password page may change): `sam`, password `old password 1`.
async fn insert_sam(service: &TestService) {
    let now = service.state.now();
    service
        .state
        .store()
        .insert_user(&scopegate_token_service::users::Account {
            id: "u-sam".into(),
            username: "sam".into(),
            password: scopegate_token_service::secret::SecretHash::hash("old password 1"),
            attributes: serde_json::Map::new(),
            configured: false,
            created_at: Some(now),
            updated_at: Some(now),
        })
        .await
        .unwrap();
}

/// The password page's nonce cookie and CSRF token.
async fn password_form(service: &TestService) -> (String, String) {
    let page = get_with_cookies(service, "/password", &[]).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.header("content-security-policy")
            .contains("frame-ancestors 'none'")
    );
    let nonce = cookie(&page, "scopegate_login").unwrap();
    (nonce, hidden(&page.text, "csrf"))
}

fn password_request(
    (nonce, csrf): &(String, String),
    username: &str,
    current: &str,
    new: &str,
    confirm: &str,
) -> Request<Body> {
    let body = format!(
        "csrf={}&username={}&current={}&new={}&confirm={}",
        form_encode(csrf),
        form_encode(username),
        form_encode(current),
        form_encode(new),
        form_encode(confirm)
    );
    Request::post("/password")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::COOKIE, nonce)
        .body(Body::from(body))
        .unwrap()
}

async fn change_password(
    service: &TestService,
    username: &str,
    current: &str,
    new: &str,
    confirm: &str,
) -> Answer {
    let form = password_form(service).await;
    service
        .call(password_request(&form, username, current, new, confirm))
        .await
}

/// The password page checks passwords too: 200 wrong current passwords at once get no more
/// checks than the limit, and the right one is then refused with `Retry-After`.
#[tokio::test]
async fn concurrent_wrong_current_passwords_get_no_more_checks_than_the_limit() {
    let service = TestService::start().await;
    insert_sam(&service).await;
    let form = password_form(&service).await;
    let guesses = (0..200)
        .map(|index| {
            let guess = format!("guess{index}");
            let request =
                password_request(&form, "sam", &guess, "a new password 1", "a new password 1");
            from_address(request, "192.0.2.60")
        })
        .collect();
    let statuses = service.burst(guesses).await;
    let judged = statuses
        .iter()
        .filter(|status| passed_the_count(**status))
        .count();
    let refused = statuses
        .iter()
        .filter(|status| **status == StatusCode::TOO_MANY_REQUESTS)
        .count();
    let limit = scopegate_token_service::throttle::PER_ACCOUNT_PER_NETWORK;
    assert_eq!(judged as u64, limit, "{statuses:?}");
    assert_eq!(judged + refused, 200, "{statuses:?}");
    let right = service
        .call(from_address(
            password_request(
                &form,
                "sam",
                "old password 1",
                "a new password 1",
                "a new password 1",
            ),
            "192.0.2.60",
        ))
        .await;
    assert_eq!(right.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(right.header("retry-after").parse::<u64>().is_ok());
    // Unchanged.
    assert!(
        service
            .state
            .users()
            .authenticate(service.state.secrets(), "sam", "old password 1")
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn a_password_change_needs_the_current_password_every_time() {
    let service = TestService::start().await;
    insert_sam(&service).await;
    let users = service.state.users();
    for (current, new, confirm, status) in [
        (
            "wrong",
            "new password 22",
            "new password 22",
            StatusCode::UNAUTHORIZED,
        ),
        (
            "old password 1",
            "new password 22",
            "new password 23",
            StatusCode::BAD_REQUEST,
        ),
        ("old password 1", "short", "short", StatusCode::BAD_REQUEST),
    ] {
        let answer = change_password(&service, "sam", current, new, confirm).await;
        assert_eq!(answer.status, status, "{current} {new} {confirm}");
        assert!(
            users
                .authenticate(service.state.secrets(), "sam", "old password 1")
                .await
                .unwrap()
                .is_some()
        );
    }
    let configured = change_password(
        &service,
        "jane",
        "jane-password-1",
        "new password 22",
        "new password 22",
    )
    .await;
    assert_eq!(configured.status, StatusCode::CONFLICT);
    let changed = change_password(
        &service,
        "sam",
        "old password 1",
        "new password 22",
        "new password 22",
    )
    .await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.text);
    assert!(changed.text.contains("Your password has been changed."));
    assert!(
        users
            .authenticate(service.state.secrets(), "sam", "old password 1")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        users
            .authenticate(service.state.secrets(), "sam", "new password 22")
            .await
            .unwrap()
            .is_some()
    );
    // Without the form's CSRF token nothing changes.
    let forged = service
        .call(
            Request::post("/password")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(
                    "username=sam&current=new+password+22&new=x+y+z+1234567&confirm=x+y+z+1234567",
                ))
                .unwrap(),
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn an_https_issuer_sets_secure_host_prefixed_cookies() {
    let service = TestService::start_with(&config_text("https://auth.example.test", "ES256")).await;
    let form = login_form(&service, &query("")).await;
    let answer = submit(&service, &form, "jane", "jane-password-1").await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.text);
    let session = set_cookies(&answer)
        .into_iter()
        .find(|c| c.starts_with("__Host-scopegate_session="))
        .expect("a __Host- cookie");
    for attribute in ["Secure", "HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(session.contains(attribute), "{attribute} in {session}");
    }
    assert!(
        !session.contains("Domain="),
        "__Host- cookies carry no Domain"
    );
    let (_, params) = location_params(&answer);
    assert_eq!(param(&params, "iss"), Some("https://auth.example.test"));
    // The CSRF nonce cookie is __Host- prefixed too.
    let page = get_with_cookies(&service, &format!("/authorize?{}", query("")), &[]).await;
    let cookies = set_cookies(&page);
    assert!(
        !cookies.is_empty() && cookies.iter().all(|cookie| cookie.starts_with("__Host-")),
        "{cookies:?}"
    );
}

/// Login CSRF through a sibling subdomain: it can plant a cookie for this host, but not a
/// `__Host-` one, and a planted cookie without the prefix is never read.
#[tokio::test]
async fn a_planted_cookie_without_the_host_prefix_is_ignored_on_https() {
    let service = TestService::start_with(&config_text("https://auth.example.test", "ES256")).await;
    // The attacker's own nonce and CSRF token, from a page they loaded themselves.
    let attacker = login_form(&service, &query("")).await;
    let planted = attacker
        .nonce_cookie
        .trim_start_matches("__Host-")
        .to_owned();
    assert!(planted.starts_with("scopegate_login="), "{planted}");
    let victim = login_form(&service, &query("")).await;
    for cookies in [
        planted.clone(),
        format!("{}; {planted}", victim.nonce_cookie),
    ] {
        let forged = LoginForm {
            nonce_cookie: cookies.clone(),
            csrf: attacker.csrf.clone(),
            request: attacker.request.clone(),
        };
        let answer = submit(&service, &forged, "mallory", "mallory's password").await;
        assert_eq!(
            answer.status,
            StatusCode::FORBIDDEN,
            "{cookies}: {}",
            answer.text
        );
        assert!(cookie(&answer, "__Host-scopegate_session").is_none());
    }
    // A planted session cookie is not read either: the page asks to sign in.
    let planted_session =
        "scopegate_session=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_owned();
    let page = get_with_cookies(
        &service,
        &format!("/authorize?{}", query("")),
        &[planted_session],
    )
    .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text.contains("name=\"password\""), "{}", page.text);
}

#[tokio::test]
async fn failures_from_one_address_are_throttled_across_usernames() {
    let service = TestService::start().await;
    let form = login_form(&service, &query("")).await;
    let from = |username: &str, password: &str| {
        let body = format!(
            "csrf={}&request={}&username={}&password={}",
            form_encode(&form.csrf),
            form_encode(&form.request),
            form_encode(username),
            form_encode(password)
        );
        let mut request = Request::post("/login")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::COOKIE, &form.nonce_cookie)
            .body(Body::from(body))
            .unwrap();
        let address: std::net::SocketAddr = "192.0.2.7:40000".parse().unwrap();
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(address));
        request
    };
    for index in 0..20 {
        let answer = service.call(from(&format!("user{index}"), "guess")).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    }
    let blocked = service.call(from("jane", "jane-password-1")).await;
    assert_eq!(blocked.status, StatusCode::TOO_MANY_REQUESTS);
    // Another address is not affected.
    let elsewhere = submit(&service, &form, "jane", "jane-password-1").await;
    assert_eq!(elsewhere.status, StatusCode::SEE_OTHER);
}

/// Behind a trusted proxy each client counts under its own address (issue 16); a peer that is
/// not trusted counts under its own, whatever forwarding headers it writes.
#[tokio::test]
async fn trusted_proxies_forward_the_client_address_and_others_cannot_spoof_it() {
    let config = format!(
        "trusted_proxies = [\"10.0.0.1\"]\n{}",
        config_text("http://127.0.0.1:8080", "ES256")
    );
    let service = TestService::start_with(&config).await;
    let form = login_form(&service, &query("")).await;
    let via_proxy = |password: &str, client: &str| {
        let mut request = from_address(login_request(&form, "jane", password), "10.0.0.1");
        request.headers_mut().insert(
            "x-forwarded-for",
            format!("{client}, 10.0.0.1").parse().unwrap(),
        );
        request
    };
    let limit = scopegate_token_service::throttle::PER_ACCOUNT_PER_NETWORK;
    for _ in 0..limit {
        let answer = service.call(via_proxy("guess", "192.0.2.80")).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    }
    let stopped = service
        .call(via_proxy("jane-password-1", "192.0.2.80"))
        .await;
    assert_eq!(stopped.status, StatusCode::TOO_MANY_REQUESTS);
    // Another client behind the same proxy is not the guesser.
    let owner = service
        .call(via_proxy("jane-password-1", "192.0.2.81"))
        .await;
    assert_eq!(owner.status, StatusCode::SEE_OTHER, "{}", owner.text);

    // An untrusted peer writing a new X-Forwarded-For each time still counts as itself.
    for index in 0..limit {
        let mut request = from_address(login_request(&form, "jane", "guess"), "192.0.2.99");
        request.headers_mut().insert(
            "x-forwarded-for",
            format!("198.51.100.{index}").parse().unwrap(),
        );
        assert_eq!(service.call(request).await.status, StatusCode::UNAUTHORIZED);
    }
    let mut spoofed = from_address(
        login_request(&form, "jane", "jane-password-1"),
        "192.0.2.99",
    );
    spoofed
        .headers_mut()
        .insert("x-forwarded-for", "198.51.100.200".parse().unwrap());
    assert_eq!(
        service.call(spoofed).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
}
