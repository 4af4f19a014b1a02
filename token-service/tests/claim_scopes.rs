//! Claim scopes defined and deleted at run time (issue 21, item 4), as clients, users and APIs
//! meet them: a scope defined while clients list it is granted with its claims from their next
//! token; a deleted one is given by no grant — client credentials, the authorization code (also
//! one issued before the deletion), a refresh — and asking for it is `invalid_scope`; tokens
//! issued before stay valid but release its claims no more; discovery follows; another
//! instance on the same database follows within the catalogue's lifetime.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use scopegate_token_service::State;
use scopegate_token_service::clients::STORED_TTL;
use scopegate_token_service::config::Config;
use scopegate_token_service::grant::authorization_code::s256;
use scopegate_token_service::http::app;
use scopegate_validator::MockClock;
use serde_json::{Value, json};
use support::postgres::TestDatabase;
use support::*;
use tower::ServiceExt;

const REDIRECT: &str = "http://127.0.0.1:3000/callback";
const OPAQUE_REDIRECT: &str = "https://hr.example.test/cb";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const SCOPE: &str = "hr:department:read";
const BATCH: (&str, &str) = ("hr-batch", "hr-batch-secret");
const HR_OPAQUE: (&str, &str) = ("hr-opaque", "hr-opaque-secret");

/// The test configuration, the admin clients, and clients listing `hr:department:read` before
/// anything defines it; jane's department is `Finance`.
fn config_at(storage: &str) -> String {
    let base = config_text("http://127.0.0.1:8080", "ES256");
    assert!(
        base.contains("companyName = \"Bizcorp\" }"),
        "the test configuration changed"
    );
    format!(
        r#"{}{ADMIN_CLIENTS}
[[clients]]
id = "hr-portal"
public = true
grants = ["authorization_code", "refresh_token"]
redirect_uris = ["{REDIRECT}"]
scopes = ["openid", "{SCOPE}", "akamai:social_profile:read"]

[[clients]]
id = "hr-opaque"
secret = "hr-opaque-secret"
grants = ["authorization_code"]
redirect_uris = ["{OPAQUE_REDIRECT}"]
scopes = ["openid", "{SCOPE}", "akamai:social_profile:read"]
token_format = "opaque"

[[clients]]
id = "hr-wild"
public = true
grants = ["authorization_code", "refresh_token"]
redirect_uris = ["{REDIRECT}"]
scopes = ["openid", "hr:department:*"]

[[clients]]
id = "hr-batch"
secret = "hr-batch-secret"
grants = ["client_credentials"]
scopes = ["{SCOPE}", "akamai:social_profile:read"]
token_format = "opaque"
"#,
        base.replace(
            "companyName = \"Bizcorp\" }",
            "companyName = \"Bizcorp\", dept = \"Finance\" }"
        )
    )
    .replace(
        "storage = \"sqlite::memory:\"",
        &format!("storage = \"{storage}\""),
    )
}

async fn start() -> TestService {
    TestService::start_with(&config_at("sqlite::memory:")).await
}

/// The definition the tests make: `department` from the attribute `dept`, in access tokens
/// too.
fn definition() -> Value {
    json!({ "name": SCOPE, "claims": { "department": "dept" }, "access_token": true })
}

/// An admin API call with the admin client's token.
async fn admin(service: &TestService, method: &str, path: &str, body: Option<Value>) -> Answer {
    let token = service.access_token(ADMIN).await;
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json");
    let body = body.map_or_else(Body::empty, |body| Body::from(body.to_string()));
    service.call(request.body(body).unwrap()).await
}

async fn define(service: &TestService) {
    let answer = admin(service, "POST", "/admin/scopes", Some(definition())).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
}

async fn delete(service: &TestService) {
    let answer = admin(service, "DELETE", &format!("/admin/scopes/{SCOPE}"), None).await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT, "{}", answer.text);
}

async fn scopes_supported(service: &TestService) -> Vec<String> {
    supported(service, "scopes_supported").await
}

async fn claims_supported(service: &TestService) -> Vec<String> {
    supported(service, "claims_supported").await
}

/// One of discovery's lists, e.g. `scopes_supported`.
async fn supported(service: &TestService, list: &str) -> Vec<String> {
    let discovery = service.get("/.well-known/openid-configuration").await;
    assert_eq!(discovery.status, StatusCode::OK);
    serde_json::from_value(discovery.json[list].clone()).unwrap()
}

/// An authorization request of `client` to `redirect`, asking for `scope` (none: the client's
/// defaults).
fn authorize_query(client: &str, redirect: &str, scope: Option<&str>) -> String {
    let scope = scope.map_or_else(String::new, |scope| {
        format!("&scope={}", form_encode(scope))
    });
    format!(
        "response_type=code&client_id={client}&redirect_uri={}{scope}&state=st&nonce=n&code_challenge={}&code_challenge_method=S256",
        form_encode(redirect),
        s256(VERIFIER)
    )
}

/// Signs jane in at `hr-portal` for `scope`: the code.
async fn code_for(service: &TestService, scope: Option<&str>) -> String {
    sign_in_jane(service, &authorize_query("hr-portal", REDIRECT, scope))
        .await
        .0
}

/// Redeems an `hr-portal` code: the token answer.
async fn redeem(service: &TestService, code: &str) -> Value {
    redeem_at(service, "hr-portal", code).await
}

/// Redeems a code of the public client `client`: the token answer.
async fn redeem_at(service: &TestService, client: &str, code: &str) -> Value {
    let answer = service
        .post(
            "/token",
            None,
            &format!(
                "grant_type=authorization_code&client_id={client}&code={code}&redirect_uri={}&code_verifier={VERIFIER}",
                form_encode(REDIRECT)
            ),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    answer.json
}

/// Signs jane in at `hr-portal` for `scope` and redeems the code.
async fn hr_portal_tokens(service: &TestService, scope: Option<&str>) -> Value {
    let code = code_for(service, scope).await;
    redeem(service, &code).await
}

/// Signs jane in at `hr-opaque` (an opaque access token) for `scope`.
async fn opaque_user_token(service: &TestService, scope: &str) -> String {
    let (code, _) = sign_in_jane(
        service,
        &authorize_query("hr-opaque", OPAQUE_REDIRECT, Some(scope)),
    )
    .await;
    let answer = service
        .post(
            "/token",
            Some(HR_OPAQUE),
            &format!(
                "grant_type=authorization_code&code={code}&redirect_uri={}&code_verifier={VERIFIER}",
                form_encode(OPAQUE_REDIRECT)
            ),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    answer.json["access_token"].as_str().unwrap().to_owned()
}

async fn refresh(service: &TestService, token: &str, scope: Option<&str>) -> Answer {
    refresh_at(service, "hr-portal", token, scope).await
}

async fn refresh_at(
    service: &TestService,
    client: &str,
    token: &str,
    scope: Option<&str>,
) -> Answer {
    let scope = scope.map_or_else(String::new, |scope| {
        format!("&scope={}", form_encode(scope))
    });
    service
        .post(
            "/token",
            None,
            &format!("grant_type=refresh_token&client_id={client}&refresh_token={token}{scope}"),
        )
        .await
}

async fn userinfo(service: &TestService, token: &str) -> Answer {
    service
        .call(
            Request::get("/userinfo")
                .header(header::AUTHORIZATION, format!("Bearer {token}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
}

/// The audience of an `hr-batch` token granted the scope and the API's.
async fn batch_audience(service: &TestService) -> Vec<String> {
    let token = service
        .token(
            BATCH,
            &format!("&scope={SCOPE}%20akamai:social_profile:read"),
        )
        .await;
    let introspected = service
        .introspect(API_CREDENTIALS, token["access_token"].as_str().unwrap())
        .await;
    let mut audience: Vec<String> =
        serde_json::from_value(introspected.json["aud"].clone()).unwrap();
    audience.sort();
    audience
}

fn granted(answer: &Value) -> Vec<&str> {
    answer["scope"].as_str().unwrap().split(' ').collect()
}

fn claims_of(jwt: &str) -> Value {
    jwt_parts(jwt).1
}

#[tokio::test]
async fn a_scope_defined_while_clients_list_it_is_granted_with_its_claims_from_their_next_token() {
    let service = start().await;
    let asked = format!("openid {SCOPE} akamai:social_profile:read");
    // Nothing defines it yet: a client that lists it gets it as any scope nobody owns, with no
    // claim, and discovery does not name it.
    let before = hr_portal_tokens(&service, Some(&asked)).await;
    assert!(granted(&before).contains(&SCOPE), "{before}");
    let id_token = claims_of(before["id_token"].as_str().unwrap());
    assert!(id_token.get("department").is_none(), "{id_token}");
    assert!(!scopes_supported(&service).await.contains(&SCOPE.to_owned()));
    let claims = claims_supported(&service).await;
    assert!(!claims.contains(&"department".to_owned()), "{claims:?}");
    assert_eq!(batch_audience(&service).await, [API]);

    define(&service).await;

    // Discovery names it and its claim at once here; every place a user's claims go has it.
    let supported = scopes_supported(&service).await;
    assert!(supported.contains(&SCOPE.to_owned()), "{supported:?}");
    assert!(
        supported.contains(&"ad:user_custom:read".to_owned()),
        "{supported:?}"
    );
    let claims = claims_supported(&service).await;
    for claim in ["department", "company_name", "sub", "email"] {
        let named = claims.iter().filter(|named| *named == claim).count();
        assert_eq!(named, 1, "{claim} in {claims:?}");
    }
    let after = hr_portal_tokens(&service, Some(&asked)).await;
    let access_token = after["access_token"].as_str().unwrap();
    assert_eq!(
        claims_of(after["id_token"].as_str().unwrap())["department"],
        "Finance"
    );
    assert_eq!(claims_of(access_token)["department"], "Finance");
    let info = userinfo(&service, access_token).await;
    assert_eq!(info.status, StatusCode::OK, "{}", info.text);
    assert_eq!(info.json["department"], "Finance");
    let opaque = opaque_user_token(&service, &asked).await;
    let introspected = service.introspect(API_CREDENTIALS, &opaque).await;
    assert_eq!(introspected.json["active"], true, "{}", introspected.text);
    assert_eq!(introspected.json["department"], "Finance");
    // A token granted it is addressed to the service, its owner, as well as to the API.
    assert_eq!(
        batch_audience(&service).await,
        ["http://127.0.0.1:8080", API]
    );

    // Changed: what is released follows at once, for tokens issued before too.
    let replaced = admin(
        &service,
        "PUT",
        &format!("/admin/scopes/{SCOPE}"),
        Some(json!({ "claims": { "division": "dept" } })),
    )
    .await;
    assert_eq!(replaced.status, StatusCode::OK, "{}", replaced.text);
    let info = userinfo(&service, access_token).await;
    assert_eq!(info.json["division"], "Finance", "{}", info.text);
    assert!(info.json.get("department").is_none(), "{}", info.text);
    let claims = claims_supported(&service).await;
    assert!(claims.contains(&"division".to_owned()), "{claims:?}");
    assert!(!claims.contains(&"department".to_owned()), "{claims:?}");
    let introspected = service.introspect(API_CREDENTIALS, &opaque).await;
    assert!(
        introspected.json.get("department").is_none(),
        "{}",
        introspected.text
    );
}

#[tokio::test]
async fn a_deleted_scope_is_given_by_no_grant_even_to_clients_that_list_it() {
    let service = start().await;
    define(&service).await;
    let asked = format!("openid {SCOPE} akamai:social_profile:read");
    let earlier = hr_portal_tokens(&service, Some(&asked)).await;
    assert!(granted(&earlier).contains(&SCOPE), "{earlier}");
    let batch = service.token(BATCH, &format!("&scope={SCOPE}")).await;
    assert_eq!(batch["scope"], SCOPE);
    // A code issued before the deletion and redeemed after it.
    let pending_code = code_for(&service, Some(&asked)).await;

    delete(&service).await;
    assert!(!scopes_supported(&service).await.contains(&SCOPE.to_owned()));

    // Client credentials: asked for, it is invalid_scope; the defaults leave it out.
    let refused = service
        .post(
            "/token",
            Some(BATCH),
            &format!("grant_type=client_credentials&scope={SCOPE}"),
        )
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.text);
    assert_eq!(refused.error(), "invalid_scope");
    assert_eq!(
        service.token(BATCH, "").await["scope"],
        "akamai:social_profile:read"
    );
    // The authorization code flow: asked for, the client hears invalid_scope; the defaults
    // leave it out; a code issued before gives it no more.
    let page = get_with_cookies(
        &service,
        &format!(
            "/authorize?{}",
            authorize_query("hr-portal", REDIRECT, Some(&asked))
        ),
        &[],
    )
    .await;
    let (location, params) = location_params(&page);
    assert!(location.starts_with(REDIRECT), "{location}");
    assert_eq!(param(&params, "error"), Some("invalid_scope"), "{location}");
    let by_default = hr_portal_tokens(&service, None).await;
    assert_eq!(
        granted(&by_default),
        ["akamai:social_profile:read", "openid"]
    );
    let redeemed = redeem(&service, &pending_code).await;
    assert_eq!(granted(&redeemed), ["akamai:social_profile:read", "openid"]);
    assert!(
        claims_of(redeemed["id_token"].as_str().unwrap())
            .get("department")
            .is_none()
    );
    // A refresh narrows it away, and cannot ask for it back.
    let refreshed = refresh(&service, earlier["refresh_token"].as_str().unwrap(), None).await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.text);
    assert_eq!(
        granted(&refreshed.json),
        ["akamai:social_profile:read", "openid"]
    );
    let next = refreshed.json["refresh_token"].as_str().unwrap();
    let asking_back = refresh(&service, next, Some(&format!("openid {SCOPE}"))).await;
    assert_eq!(
        asking_back.status,
        StatusCode::BAD_REQUEST,
        "{}",
        asking_back.text
    );
    assert_eq!(asking_back.error(), "invalid_scope");
}

#[tokio::test]
async fn a_wildcard_a_client_lists_gives_a_deleted_scope_no_more_but_still_the_others() {
    let service = start().await;
    define(&service).await;
    let write = json!({ "name": "hr:department:write", "claims": { "manager": "manager" } });
    let answer = admin(&service, "POST", "/admin/scopes", Some(write)).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
    let both = "openid hr:department:read hr:department:write";
    let (code, _) = sign_in_jane(&service, &authorize_query("hr-wild", REDIRECT, Some(both))).await;
    let earlier = redeem_at(&service, "hr-wild", &code).await;
    assert_eq!(
        granted(&earlier),
        ["hr:department:read", "hr:department:write", "openid"]
    );

    delete(&service).await;

    // `hr:department:*` still covers a defined scope, but not the deleted one.
    let page = get_with_cookies(
        &service,
        &format!(
            "/authorize?{}",
            authorize_query("hr-wild", REDIRECT, Some(both))
        ),
        &[],
    )
    .await;
    let (location, params) = location_params(&page);
    assert_eq!(param(&params, "error"), Some("invalid_scope"), "{location}");
    let refreshed = refresh_at(
        &service,
        "hr-wild",
        earlier["refresh_token"].as_str().unwrap(),
        None,
    )
    .await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.text);
    assert_eq!(granted(&refreshed.json), ["hr:department:write", "openid"]);
    let (code, _) = sign_in_jane(
        &service,
        &authorize_query("hr-wild", REDIRECT, Some("openid hr:department:write")),
    )
    .await;
    let later = redeem_at(&service, "hr-wild", &code).await;
    assert_eq!(granted(&later), ["hr:department:write", "openid"]);
}

#[tokio::test]
async fn tokens_issued_before_a_deletion_stay_valid_but_release_its_claims_no_more() {
    let service = start().await;
    define(&service).await;
    let asked = format!("openid {SCOPE} akamai:social_profile:read");
    let jwt = hr_portal_tokens(&service, Some(&asked)).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let opaque = opaque_user_token(&service, &asked).await;
    assert_eq!(userinfo(&service, &jwt).await.json["department"], "Finance");

    delete(&service).await;

    // Still valid, for what else they grant: /userinfo answers, without the claim.
    let info = userinfo(&service, &jwt).await;
    assert_eq!(info.status, StatusCode::OK, "{}", info.text);
    assert!(info.json.get("department").is_none(), "{}", info.text);
    assert!(info.json["sub"].is_string());
    // At introspection, JWT or opaque: active, without the claim (a JWT itself keeps what it
    // was issued with).
    for token in [&jwt, &opaque] {
        let introspected = service.introspect(API_CREDENTIALS, token).await;
        assert_eq!(introspected.json["active"], true, "{}", introspected.text);
        assert!(
            introspected.json.get("department").is_none(),
            "{}",
            introspected.text
        );
    }
    assert_eq!(claims_of(&jwt)["department"], "Finance");
}

#[tokio::test]
async fn a_deleted_scope_is_granted_again_once_defined_again_or_owned_by_an_api() {
    let service = start().await;
    define(&service).await;
    delete(&service).await;
    let ask = format!("&scope={SCOPE}");
    let refused = service
        .post(
            "/token",
            Some(BATCH),
            &format!("grant_type=client_credentials{ask}"),
        )
        .await;
    assert_eq!(refused.error(), "invalid_scope");

    define(&service).await;
    assert_eq!(service.token(BATCH, &ask).await["scope"], SCOPE);
    assert!(scopes_supported(&service).await.contains(&SCOPE.to_owned()));

    // Deleted again, then taken over by an API: it belongs to the API now.
    delete(&service).await;
    let api = admin(
        &service,
        "POST",
        "/admin/apis",
        Some(json!({ "id": "https://hr.example.test", "scopes": ["hr:department"] })),
    )
    .await;
    assert_eq!(api.status, StatusCode::CREATED, "{}", api.text);
    let token = service.token(BATCH, &ask).await;
    assert_eq!(token["scope"], SCOPE);
    let introspected = service
        .introspect(
            (
                "https://hr.example.test",
                api.json["secret"].as_str().unwrap(),
            ),
            token["access_token"].as_str().unwrap(),
        )
        .await;
    assert_eq!(introspected.json["active"], true, "{}", introspected.text);
    assert_eq!(introspected.json["aud"], json!(["https://hr.example.test"]));
    // And the catalogue can no longer define it: the API owns it.
    let taken = admin(&service, "POST", "/admin/scopes", Some(definition())).await;
    assert_eq!(taken.status, StatusCode::CONFLICT, "{}", taken.text);
    assert_eq!(taken.json["field"], "name");
}

// ---- two instances on one database -------------------------------------------------------

/// One instance: its own store connections, caches and clock, on the shared database.
struct Instance {
    state: State,
    clock: Arc<MockClock>,
}

impl Instance {
    async fn start(config: &str, url: &str) -> Self {
        let clock = Arc::new(MockClock::at_system_time());
        let store = scopegate_token_service::store::open(url).await.unwrap();
        let state = State::with_store(Config::from_toml(config).unwrap(), store, clock.clone())
            .await
            .unwrap();
        Self { state, clock }
    }

    async fn call(&self, request: Request<Body>) -> (StatusCode, Value) {
        let response = app(self.state.clone())
            .await
            .unwrap()
            .oneshot(request)
            .await
            .unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    async fn scopes_supported(&self) -> Vec<String> {
        let (_, discovery) = self
            .call(
                Request::get("/.well-known/openid-configuration")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        serde_json::from_value(discovery["scopes_supported"].clone()).unwrap()
    }

    /// Client credentials of `hr-batch` asking for the scope: the status and error.
    async fn ask_for_the_scope(&self) -> (StatusCode, Value) {
        self.call(
            Request::post("/token")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header(header::AUTHORIZATION, basic_header(BATCH.0, BATCH.1))
                .body(Body::from(format!(
                    "grant_type=client_credentials&scope={SCOPE}"
                )))
                .unwrap(),
        )
        .await
    }

    async fn admin(&self, method: &str, path: &str, body: Option<Value>) -> StatusCode {
        let (_, token) = self
            .call(
                Request::post("/token")
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .header(header::AUTHORIZATION, basic_header(ADMIN.0, ADMIN.1))
                    .body(Body::from("grant_type=client_credentials"))
                    .unwrap(),
            )
            .await;
        let token = token["access_token"].as_str().unwrap();
        let body = body.map_or_else(Body::empty, |body| Body::from(body.to_string()));
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(body)
            .unwrap();
        self.call(request).await.0
    }
}

#[tokio::test]
async fn another_instance_on_the_same_postgres_database_follows_within_the_catalogue_lifetime() {
    let database = TestDatabase::create().await;
    let config = config_at(&database.url);
    let a = Instance::start(&config, &database.url).await;
    let b = Instance::start(&config, &database.url).await;
    let step = Duration::from_secs(1);
    // B has read the definitions when it started.
    assert!(!b.scopes_supported().await.contains(&SCOPE.to_owned()));

    assert_eq!(
        a.admin("POST", "/admin/scopes", Some(definition())).await,
        StatusCode::CREATED
    );
    assert!(a.scopes_supported().await.contains(&SCOPE.to_owned()));
    b.clock.advance(STORED_TTL - step);
    assert!(!b.scopes_supported().await.contains(&SCOPE.to_owned()));
    b.clock.advance(step);
    assert!(b.scopes_supported().await.contains(&SCOPE.to_owned()));

    assert_eq!(
        a.admin("DELETE", &format!("/admin/scopes/{SCOPE}"), None)
            .await,
        StatusCode::NO_CONTENT
    );
    let (status, answer) = a.ask_for_the_scope().await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_scope"))
    );
    // B still has the definition it read, until its lifetime is over.
    b.clock.advance(STORED_TTL - step);
    let (status, answer) = b.ask_for_the_scope().await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    b.clock.advance(step);
    let (status, answer) = b.ask_for_the_scope().await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_scope"))
    );
    assert!(!b.scopes_supported().await.contains(&SCOPE.to_owned()));
}
