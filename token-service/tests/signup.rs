//! Required claims and self sign-up, in-process: the page asking a signed-in user for the
//! claims a client requires before the code is issued, and the registration page that
//! creates a user and continues the authorization request.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod support;

use axum::body::Body;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{Request, StatusCode, header};
use scopegate_token_service::grant::authorization_code::s256;
use scopegate_token_service::users::Account;
use support::*;

const PORTAL_REDIRECT: &str = "http://127.0.0.1:3000/portal-cb";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

/// The shared test configuration plus a client that requires `company_name`, `given_name` and
/// `email` and offers sign-up, and a configured user without `companyName`.
async fn service() -> TestService {
    let config = format!(
        r#"{}
[[clients]]
id = "portal"
public = true
grants = ["authorization_code", "refresh_token"]
redirect_uris = ["{PORTAL_REDIRECT}"]
scopes = ["openid", "profile", "email", "ad:user_custom:read"]
required_claims = ["company_name", "given_name", "email"]
self_signup = true

[[users]]
username = "joe"
password = "joe-password-1"
attributes = {{ given_name = "Joe" }}
"#,
        config_text("http://127.0.0.1:8080", "ES256")
    );
    let service = TestService::start_with(&config).await;
    // A stored user with a given name but no company.
    let mut attributes = serde_json::Map::new();
    attributes.insert("given_name".into(), "Kim".into());
    let kim = scopegate_token_service::users::new_account("kim", "kim-password-1", attributes, 1)
        .await
        .unwrap();
    service.state.store().insert_user(&kim).await.unwrap();
    service
}

fn portal_query(scope: &str) -> String {
    format!(
        "response_type=code&client_id=portal&redirect_uri={}&scope={}&state=st-9&nonce=n-9&code_challenge={}&code_challenge_method=S256",
        form_encode(PORTAL_REDIRECT),
        form_encode(scope),
        s256(VERIFIER)
    )
}

const ALL_SCOPES: &str = "openid profile email ad:user_custom:read";

async fn post_form(service: &TestService, path: &str, cookies: &[&str], body: &str) -> Answer {
    let request = Request::post(path)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::COOKIE, cookies.join("; "))
        .body(Body::from(body.to_owned()))
        .unwrap();
    service.call(request).await
}

fn claims_of(jwt: &str) -> serde_json::Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// Redeems the code of a redirect to the portal; returns the id_token's claims.
async fn id_token_of(service: &TestService, redirect: &Answer) -> serde_json::Value {
    assert_eq!(redirect.status, StatusCode::SEE_OTHER, "{}", redirect.text);
    let (location, params) = location_params(redirect);
    assert!(location.starts_with(PORTAL_REDIRECT), "{location}");
    assert_eq!(param(&params, "state"), Some("st-9"));
    let code = param(&params, "code").unwrap();
    let answer = service
        .post(
            "/token",
            None,
            &format!(
                "grant_type=authorization_code&client_id=portal&code={code}&redirect_uri={}&code_verifier={VERIFIER}",
                form_encode(PORTAL_REDIRECT)
            ),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    claims_of(answer.json["id_token"].as_str().unwrap())
}

fn assert_protective_headers(answer: &Answer) {
    assert!(
        answer
            .header("content-security-policy")
            .contains("frame-ancestors 'none'"),
        "{:?}",
        answer.headers
    );
    assert_eq!(answer.header("x-frame-options"), "DENY");
    assert_eq!(answer.header("referrer-policy"), "no-referrer");
    assert_eq!(answer.header("cache-control"), "no-store");
}

#[tokio::test]
async fn a_user_without_a_required_claim_supplies_it_before_the_code_is_issued() {
    let service = service().await;
    let form = login_form(&service, &portal_query(ALL_SCOPES)).await;
    let page = submit(&service, &form, "kim", "kim-password-1").await;
    // Signed in, but no code yet: the page asks for the company (kim has a given name).
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(page.headers.get("location").is_none());
    assert_protective_headers(&page);
    assert!(
        page.text.contains("name=\"claim.company_name\""),
        "{}",
        page.text
    );
    assert!(page.text.contains("name=\"claim.email\""), "{}", page.text);
    assert!(!page.text.contains("name=\"claim.given_name\""));
    let session = cookie(&page, "scopegate_session").expect("the session starts at sign-in");
    let nonce = cookie(&page, "scopegate_login").unwrap();
    let csrf = hidden(&page.text, "csrf");
    let request = hidden(&page.text, "request");
    let cookies = [session.as_str(), nonce.as_str()];
    let body = |csrf: &str, company: &str| {
        format!(
            "csrf={}&request={}&claim.company_name={}&claim.email=kim%40example.test",
            form_encode(csrf),
            form_encode(&request),
            form_encode(company)
        )
    };
    let stored_company = || async {
        service
            .state
            .store()
            .find_user_by_name("kim")
            .await
            .unwrap()
            .unwrap()
            .attributes
            .get("companyName")
            .cloned()
    };

    // A blank value: asked again with the error, nothing stored.
    let blank = post_form(&service, "/claims", &cookies, &body(&csrf, "   ")).await;
    assert_eq!(blank.status, StatusCode::BAD_REQUEST, "{}", blank.text);
    assert!(
        blank.text.contains("Company name is required"),
        "{}",
        blank.text
    );
    assert_protective_headers(&blank);
    assert_eq!(stored_company().await, None);
    // A forged form (wrong CSRF token, or no nonce cookie): refused, nothing stored.
    let forged = post_form(&service, "/claims", &cookies, &body("forged", "Initech")).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let no_nonce = post_form(
        &service,
        "/claims",
        &[session.as_str()],
        &body(&csrf, "Initech"),
    )
    .await;
    assert_eq!(no_nonce.status, StatusCode::FORBIDDEN);
    // Without the session: refused, nothing stored.
    let signed_out = post_form(
        &service,
        "/claims",
        &[nonce.as_str()],
        &body(&csrf, "Initech"),
    )
    .await;
    assert_eq!(signed_out.status, StatusCode::UNAUTHORIZED);
    assert_eq!(stored_company().await, None);

    // The value: stored as the attribute, and the code is issued; the id_token carries it.
    let done = post_form(&service, "/claims", &cookies, &body(&csrf, " Initech ")).await;
    let claims = id_token_of(&service, &done).await;
    assert_eq!(claims["company_name"], "Initech");
    assert_eq!(claims["given_name"], "Kim");
    // An address the user typed is not a verified one.
    assert_eq!(claims["email"], "kim@example.test");
    assert_eq!(claims["email_verified"], false);
    assert_eq!(stored_company().await, Some("Initech".into()));

    // Next time the session gives a code at once.
    let again = get_with_cookies(
        &service,
        &format!("/authorize?{}", portal_query(ALL_SCOPES)),
        std::slice::from_ref(&session),
    )
    .await;
    assert_eq!(again.status, StatusCode::SEE_OTHER, "{}", again.text);
    let (_, params) = location_params(&again);
    assert!(param(&params, "code").is_some(), "{params:?}");
}

#[tokio::test]
async fn claims_are_required_only_when_the_granted_scopes_release_them() {
    let service = service().await;
    // Without ad:user_custom:read the company is not released, so not asked for.
    let form = login_form(&service, &portal_query("openid profile")).await;
    let answer = submit(&service, &form, "kim", "kim-password-1").await;
    let claims = id_token_of(&service, &answer).await;
    assert!(claims.get("company_name").is_none());
    // A client without required claims never asks (web-app releases the same claim).
    let query = format!(
        "response_type=code&client_id=web-app&redirect_uri={}&scope=openid%20ad:user_custom:read&code_challenge={}&code_challenge_method=S256",
        form_encode("http://127.0.0.1:3000/callback"),
        s256(VERIFIER)
    );
    let form = login_form(&service, &query).await;
    let answer = submit(&service, &form, "kim", "kim-password-1").await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.text);
    let (_, params) = location_params(&answer);
    assert!(param(&params, "code").is_some(), "{params:?}");
}

#[tokio::test]
async fn the_claims_page_keeps_prompt_and_max_age_and_prompt_none_shows_no_page() {
    let service = service().await;
    // kim signs in (the page asks for her company) but does not answer yet.
    let query = format!("{}&prompt=login&max_age=3600", portal_query(ALL_SCOPES));
    let form = login_form(&service, &query).await;
    let page = submit(&service, &form, "kim", "kim-password-1").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    let session = cookie(&page, "scopegate_session").unwrap();
    let nonce = cookie(&page, "scopegate_login").unwrap();
    let csrf = hidden(&page.text, "csrf");
    let body = |request: &str| {
        format!(
            "csrf={}&request={}&claim.company_name=Initech&claim.email=kim%40example.test",
            form_encode(&csrf),
            form_encode(request)
        )
    };
    let cookies = [session.as_str(), nonce.as_str()];
    // Silent requests get interaction_required, never a page.
    let silent = get_with_cookies(
        &service,
        &format!("/authorize?{}&prompt=none", portal_query(ALL_SCOPES)),
        std::slice::from_ref(&session),
    )
    .await;
    assert_eq!(silent.status, StatusCode::SEE_OTHER, "{}", silent.text);
    let (_, params) = location_params(&silent);
    assert_eq!(param(&params, "error"), Some("interaction_required"));
    assert_eq!(param(&params, "state"), Some("st-9"));
    // Eleven minutes later the sign-in no longer counts as the fresh one prompt=login asked
    // for: the page cannot complete the request with it, and nothing is stored.
    service.advance(std::time::Duration::from_secs(660));
    let stale = post_form(&service, "/claims", &cookies, &body(&query)).await;
    assert_eq!(stale.status, StatusCode::UNAUTHORIZED, "{}", stale.text);
    let kim = service
        .state
        .store()
        .find_user_by_name("kim")
        .await
        .unwrap()
        .unwrap();
    assert!(kim.attributes.get("companyName").is_none());
    // Nor a request whose max_age the sign-in exceeds.
    let aged = format!("{}&max_age=600", portal_query(ALL_SCOPES));
    let stale = post_form(&service, "/claims", &cookies, &body(&aged)).await;
    assert_eq!(stale.status, StatusCode::UNAUTHORIZED, "{}", stale.text);
    // Without either, the same session completes the request.
    let done = post_form(
        &service,
        "/claims",
        &cookies,
        &body(&portal_query(ALL_SCOPES)),
    )
    .await;
    assert_eq!(
        id_token_of(&service, &done).await["company_name"],
        "Initech"
    );
}

#[tokio::test]
async fn a_configured_user_lacking_a_required_claim_is_sent_to_the_operator() {
    let service = service().await;
    let form = login_form(&service, &portal_query(ALL_SCOPES)).await;
    let answer = submit(&service, &form, "joe", "joe-password-1").await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.text);
    assert!(answer.text.contains("Company name"), "{}", answer.text);
    assert!(answer.text.contains("operator"));
    assert!(answer.headers.get("location").is_none());
}

/// The sign-up page for `query`: (nonce cookie, csrf, request).
async fn signup_form(service: &TestService, query: &str) -> (String, String, String) {
    let page = get_with_cookies(service, &format!("/signup?{query}"), &[]).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert_protective_headers(&page);
    (
        cookie(&page, "scopegate_login").unwrap(),
        hidden(&page.text, "csrf"),
        hidden(&page.text, "request"),
    )
}

fn signup_body(csrf: &str, request: &str, fields: &[(&str, &str)]) -> String {
    let mut body = format!(
        "csrf={}&request={}",
        form_encode(csrf),
        form_encode(request)
    );
    for (name, value) in fields {
        body.push_str(&format!("&{name}={}", form_encode(value)));
    }
    body
}

/// Form fields replaced (or removed, when empty) in a good sign-up.
type Changes = &'static [(&'static str, &'static str)];

const GOOD_SIGNUP: [(&str, &str); 6] = [
    ("username", "lee@example.test"),
    ("claim.email", "lee@example.test"),
    ("password", "a long enough password"),
    ("confirm", "a long enough password"),
    ("claim.company_name", "Acme"),
    ("claim.given_name", "Lee"),
];

#[tokio::test]
async fn signing_up_creates_the_user_collects_required_claims_and_continues_the_flow() {
    let service = service().await;
    // The sign-in page of a client offering sign-up links to it, with the same request.
    let login = get_with_cookies(
        &service,
        &format!("/authorize?{}", portal_query(ALL_SCOPES)),
        &[],
    )
    .await;
    assert!(
        login.text.contains(&format!(
            "href=\"/signup?{}",
            portal_query(ALL_SCOPES).replace('&', "&amp;")
        )),
        "{}",
        login.text
    );
    let (nonce, csrf, request) = signup_form(&service, &portal_query(ALL_SCOPES)).await;
    let page = get_with_cookies(
        &service,
        &format!("/signup?{}", portal_query(ALL_SCOPES)),
        &[],
    )
    .await;
    for field in [
        "username",
        "password",
        "confirm",
        "claim.company_name",
        "claim.given_name",
        "claim.email",
    ] {
        assert!(page.text.contains(&format!("name=\"{field}\"")), "{field}");
    }

    let answer = post_form(
        &service,
        "/signup",
        &[nonce.as_str()],
        &signup_body(&csrf, &request, &GOOD_SIGNUP),
    )
    .await;
    let session = cookie(&answer, "scopegate_session").expect("signed in after sign-up");
    let claims = id_token_of(&service, &answer).await;
    assert_eq!(claims["company_name"], "Acme");
    assert_eq!(claims["given_name"], "Lee");
    assert_eq!(claims["email"], "lee@example.test");
    assert_eq!(claims["email_verified"], false);
    let stored: Account = service
        .state
        .store()
        .find_user_by_name("lee@example.test")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claims["sub"], stored.id.as_str());
    assert!(stored.password.as_str().starts_with("$argon2id$"));
    // The new password signs in, and the session gives codes without asking again.
    let account = service
        .state
        .users()
        .authenticate(
            service.state.secrets(),
            "lee@example.test",
            "a long enough password",
        )
        .await
        .unwrap();
    assert!(account.is_some());
    let again = get_with_cookies(
        &service,
        &format!("/authorize?{}", portal_query(ALL_SCOPES)),
        &[session],
    )
    .await;
    assert_eq!(again.status, StatusCode::SEE_OTHER, "{}", again.text);
    let (_, params) = location_params(&again);
    assert!(param(&params, "code").is_some(), "{params:?}");
}

#[tokio::test]
async fn sign_up_refuses_bad_input_and_taken_names_and_changes_nothing() {
    let service = service().await;
    let (nonce, csrf, request) = signup_form(&service, &portal_query(ALL_SCOPES)).await;
    let users_before = service.state.store().list_users().await.unwrap().len();
    let with = |changes: &[(&'static str, &'static str)]| {
        let mut fields: Vec<(&str, &str)> = GOOD_SIGNUP.to_vec();
        for (name, value) in changes {
            fields.retain(|(field, _)| field != name);
            if !value.is_empty() {
                fields.push((name, value));
            }
        }
        signup_body(&csrf, &request, &fields)
    };
    let cases: [(Changes, StatusCode, &str); 11] = [
        (&[("username", "x")], StatusCode::BAD_REQUEST, "3 to 64"),
        (
            &[("username", "has space")],
            StatusCode::BAD_REQUEST,
            "3 to 64",
        ),
        (
            &[("password", "short"), ("confirm", "short")],
            StatusCode::BAD_REQUEST,
            "at least 10",
        ),
        (
            &[
                ("username", "longusername"),
                ("password", "LongUsername"),
                ("confirm", "LongUsername"),
            ],
            StatusCode::BAD_REQUEST,
            "not be blank or the username",
        ),
        (
            &[("confirm", "another long password")],
            StatusCode::BAD_REQUEST,
            "differ",
        ),
        (
            &[("claim.company_name", "")],
            StatusCode::BAD_REQUEST,
            "Company name is required",
        ),
        (
            &[("claim.given_name", "two\nlines")],
            StatusCode::BAD_REQUEST,
            "one line",
        ),
        // Taken, by a stored and by a configured user: the same words.
        (
            &[("username", "kim")],
            StatusCode::CONFLICT,
            "That username is taken",
        ),
        (
            &[("username", "jane")],
            StatusCode::CONFLICT,
            "That username is taken",
        ),
        // A name differing by case alone is taken too.
        (
            &[("username", "KIM")],
            StatusCode::CONFLICT,
            "That username is taken",
        ),
        (
            &[("username", "Jane")],
            StatusCode::CONFLICT,
            "That username is taken",
        ),
    ];
    for (changes, status, message) in cases {
        let answer = post_form(&service, "/signup", &[nonce.as_str()], &with(changes)).await;
        assert_eq!(answer.status, status, "{changes:?}: {}", answer.text);
        assert!(
            answer.text.contains(message),
            "{changes:?}: {}",
            answer.text
        );
        assert!(cookie(&answer, "scopegate_session").is_none());
        // The passwords typed are never echoed back.
        for (name, value) in GOOD_SIGNUP.iter().chain(changes) {
            if *name == "password" || *name == "confirm" {
                assert!(!answer.text.contains(value), "{changes:?}: {value}");
            }
        }
    }
    // A forged form.
    let forged = post_form(
        &service,
        "/signup",
        &[nonce.as_str()],
        &signup_body("forged", &request, &GOOD_SIGNUP),
    )
    .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert_eq!(
        service.state.store().list_users().await.unwrap().len(),
        users_before,
        "a refused sign-up created a user"
    );
}

#[tokio::test]
async fn sign_up_is_off_unless_the_client_offers_it() {
    let service = service().await;
    let query = format!(
        "response_type=code&client_id=web-app&redirect_uri={}&scope=openid&code_challenge={}&code_challenge_method=S256",
        form_encode("http://127.0.0.1:3000/callback"),
        s256(VERIFIER)
    );
    let login = get_with_cookies(&service, &format!("/authorize?{query}"), &[]).await;
    assert!(!login.text.contains("/signup"), "{}", login.text);
    let page = get_with_cookies(&service, &format!("/signup?{query}"), &[]).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.text);
    // A form posted anyway (CSRF token from the portal's page) is refused too.
    let (nonce, csrf, _) = signup_form(&service, &portal_query(ALL_SCOPES)).await;
    let answer = post_form(
        &service,
        "/signup",
        &[nonce.as_str()],
        &signup_body(&csrf, &query, &GOOD_SIGNUP),
    )
    .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.text);
    assert!(
        service
            .state
            .store()
            .find_user_by_name("lee@example.test")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn sign_ups_from_one_address_are_throttled() {
    let service = service().await;
    let (nonce, csrf, request) = signup_form(&service, &portal_query(ALL_SCOPES)).await;
    let from = |address: &str, username: String| {
        let mut fields: Vec<(&str, &str)> = GOOD_SIGNUP.to_vec();
        fields.retain(|(name, _)| *name != "username");
        let mut body = signup_body(&csrf, &request, &fields);
        body.push_str(&format!("&username={}", form_encode(&username)));
        let mut request = Request::post("/signup")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::COOKIE, &nonce)
            .body(Body::from(body))
            .unwrap();
        let address = std::net::SocketAddr::new(address.parse().unwrap(), 40000);
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(address));
        request
    };
    let limit = scopegate_token_service::throttle::SIGNUPS_PER_ADDRESS;
    for index in 0..limit {
        let answer = service
            .call(from("192.0.2.9", format!("bulk{index}")))
            .await;
        assert_eq!(
            answer.status,
            StatusCode::SEE_OTHER,
            "{index}: {}",
            answer.text
        );
    }
    let blocked = service.call(from("192.0.2.9", "one-more".into())).await;
    assert_eq!(blocked.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(blocked.header("retry-after"), "900");
    assert!(
        service
            .state
            .store()
            .find_user_by_name("one-more")
            .await
            .unwrap()
            .is_none()
    );
    // Another address is not affected.
    let elsewhere = service.call(from("192.0.2.10", "elsewhere".into())).await;
    assert_eq!(
        elsewhere.status,
        StatusCode::SEE_OTHER,
        "{}",
        elsewhere.text
    );
    // A burst of concurrent attempts from one IPv6 /64 (two addresses in it) gets no more than
    // the limit between them: each attempt is counted before it is judged.
    let mut burst = tokio::task::JoinSet::new();
    for index in 0..limit + 6 {
        let address = if index % 2 == 0 {
            "2001:db8:1:2::a"
        } else {
            "2001:db8:1:2::b"
        };
        let request = from(address, format!("burst{index}"));
        let app = scopegate_token_service::http::app(service.state.clone())
            .await
            .unwrap();
        burst.spawn(async move {
            tower::ServiceExt::oneshot(app, request)
                .await
                .unwrap()
                .status()
        });
    }
    let answers = burst.join_all().await;
    let created = answers
        .iter()
        .filter(|status| **status == StatusCode::SEE_OTHER)
        .count();
    let refused = answers
        .iter()
        .filter(|status| **status == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!(created + refused, answers.len());
    // (All may be refused: every attempt counts, so a burst past the limit can use it up
    // before any is judged. Never more than the limit get through.)
    assert!(created <= limit as usize, "{created} created");
    assert!(refused >= 6, "{refused} refused");
}
