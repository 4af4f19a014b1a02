//! The admin API over real HTTP: guarded by the service's own tower-scopegate layer (401
//! without a token or with one addressed elsewhere, 403 `insufficient_scope` without the
//! scope), every endpoint with good and bad input, nothing changed by a refused request, and
//! its OpenAPI document naming exactly the routes there are.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod support;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::*;

const AUDITOR: (&str, &str) = ("auditor", "auditor-secret");
const USERS_ONLY: (&str, &str) = ("user-manager", "user-manager-secret");

struct Admin {
    service: TestService,
    issuer: String,
    http: reqwest::Client,
}

impl Admin {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let config = format!(
            r#"{}{ADMIN_CLIENTS}
[[clients]]
id = "auditor"
secret = "auditor-secret"
grants = ["client_credentials"]
scopes = ["scopegate:users:read", "scopegate:clients:read", "scopegate:scopes:read"]
token_format = "jwt"

[[clients]]
id = "user-manager"
secret = "user-manager-secret"
grants = ["client_credentials"]
scopes = ["scopegate:users:*"]
"#,
            config_text(&issuer, "ES256")
        );
        let service = TestService::start_with(&config).await;
        tokio::spawn(scopegate_token_service::http::serve(
            service.state.clone(),
            listener,
            std::future::pending(),
        ));
        Self {
            service,
            issuer,
            http: reqwest::Client::new(),
        }
    }

    async fn token_of(&self, client: (&str, &str)) -> String {
        self.service.access_token(client).await
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> (StatusCode, String, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.issuer));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_owned());
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let challenge = response
            .headers()
            .get("www-authenticate")
            .map(|value| value.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let text = response.text().await.unwrap();
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        (status, challenge, json)
    }
}

/// Every endpoint: method, path (as the OpenAPI document writes it, then as called) and the
/// scope it needs.
const ENDPOINTS: [(&str, &str, &str, &str); 20] = [
    (
        "GET",
        "/admin/users",
        "/admin/users",
        "scopegate:users:read",
    ),
    (
        "POST",
        "/admin/users",
        "/admin/users",
        "scopegate:users:write",
    ),
    (
        "GET",
        "/admin/users/{username}",
        "/admin/users/jane",
        "scopegate:users:read",
    ),
    (
        "PATCH",
        "/admin/users/{username}",
        "/admin/users/jane",
        "scopegate:users:write",
    ),
    (
        "DELETE",
        "/admin/users/{username}",
        "/admin/users/jane",
        "scopegate:users:write",
    ),
    (
        "PUT",
        "/admin/users/{username}/password",
        "/admin/users/jane/password",
        "scopegate:users:write",
    ),
    (
        "GET",
        "/admin/clients",
        "/admin/clients",
        "scopegate:clients:read",
    ),
    (
        "POST",
        "/admin/clients",
        "/admin/clients",
        "scopegate:clients:write",
    ),
    (
        "GET",
        "/admin/clients/{id}",
        "/admin/clients/svc-jwt",
        "scopegate:clients:read",
    ),
    (
        "DELETE",
        "/admin/clients/{id}",
        "/admin/clients/svc-jwt",
        "scopegate:clients:write",
    ),
    (
        "GET",
        "/admin/apis",
        "/admin/apis",
        "scopegate:clients:read",
    ),
    (
        "POST",
        "/admin/apis",
        "/admin/apis",
        "scopegate:clients:write",
    ),
    (
        "GET",
        "/admin/apis/{id}",
        "/admin/apis/x",
        "scopegate:clients:read",
    ),
    (
        "DELETE",
        "/admin/apis/{id}",
        "/admin/apis/x",
        "scopegate:clients:write",
    ),
    (
        "GET",
        "/admin/scopes",
        "/admin/scopes",
        "scopegate:scopes:read",
    ),
    (
        "POST",
        "/admin/scopes",
        "/admin/scopes",
        "scopegate:scopes:write",
    ),
    (
        "GET",
        "/admin/scopes/{name}",
        "/admin/scopes/ad:user_custom:read",
        "scopegate:scopes:read",
    ),
    (
        "PUT",
        "/admin/scopes/{name}",
        "/admin/scopes/ad:user_custom:read",
        "scopegate:scopes:write",
    ),
    (
        "DELETE",
        "/admin/scopes/{name}",
        "/admin/scopes/ad:user_custom:read",
        "scopegate:scopes:write",
    ),
    ("GET", "/admin/openapi.json", "/admin/openapi.json", ""),
];

#[tokio::test]
async fn every_endpoint_needs_a_token_for_this_service_with_the_right_scope() {
    let admin = Admin::start().await;
    let machine = admin.token_of(JWT_CLIENT).await; // addressed to the APIs, not to us
    let auditor = admin.token_of(AUDITOR).await;
    let users_only = admin.token_of(USERS_ONLY).await;
    for (method, _, path, scope) in ENDPOINTS {
        if scope.is_empty() {
            continue; // the OpenAPI document is public
        }
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let body = Some("{}");
        let (status, challenge, _) = admin.call(method.clone(), path, None, body).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}");
        assert_eq!(challenge, "Bearer realm=\"token-service\"");
        let (status, challenge, _) = admin.call(method.clone(), path, Some(&machine), body).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}");
        assert!(challenge.contains("invalid_token"), "{challenge}");
        // The auditor may read everything, the user manager only users.
        let refused_to = if scope.ends_with(":write") {
            Some(&auditor)
        } else if scope.starts_with("scopegate:clients") || scope.starts_with("scopegate:scopes") {
            Some(&users_only)
        } else {
            None
        };
        if let Some(token) = refused_to {
            let (status, challenge, _) = admin.call(method.clone(), path, Some(token), body).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}");
            assert!(
                challenge.contains("error=\"insufficient_scope\"")
                    && challenge.contains(&format!("scope=\"{scope}\"")),
                "{method} {path}: {challenge}"
            );
        }
    }
    // The auditor reads.
    let (status, _, json) = admin
        .call(Method::GET, "/admin/users", Some(&auditor), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json["users"][0]["username"], "jane");
    assert_eq!(json["users"][0]["source"], "configuration");
    let (status, _, json) = admin
        .call(Method::GET, "/admin/clients", Some(&auditor), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json["clients"][0]["id"], "svc-jwt");
    assert_eq!(json["clients"][0]["source"], "configuration");
    assert!(json["clients"][0].get("secret").is_none());
}

#[tokio::test]
async fn users_are_created_read_updated_given_a_password_and_deleted() {
    let admin = Admin::start().await;
    // JWT and opaque admin tokens both work (opaque ones through the service's introspection).
    for client in [ADMIN, ADMIN_OPAQUE] {
        let token = admin.token_of(client).await;
        let token = Some(token.as_str());
        let username = format!("kim-{}", client.0);
        let created = json!({
            "username": username,
            "password": "a long enough password",
            "attributes": { "companyName": "Initech", "given_name": "Kim" },
        });
        let (status, _, json) = admin
            .call(
                Method::POST,
                "/admin/users",
                token,
                Some(&created.to_string()),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{json}");
        assert_eq!(json["username"], username.as_str());
        assert_eq!(json["attributes"]["companyName"], "Initech");
        assert!(json.get("password").is_none() && json.get("password_hash").is_none());
        let sub = json["sub"].as_str().unwrap().to_owned();

        let path = format!("/admin/users/{username}");
        let (status, _, json) = admin.call(Method::GET, &path, token, None).await;
        assert_eq!(
            (status, json["sub"].as_str()),
            (StatusCode::OK, Some(sub.as_str()))
        );

        // Merge: one value changed, one added, one removed.
        let changes = r#"{"attributes": {"companyName": "Initrode", "email": "kim@example.test", "given_name": null}}"#;
        let (status, _, json) = admin.call(Method::PATCH, &path, token, Some(changes)).await;
        assert_eq!(status, StatusCode::OK, "{json}");
        assert_eq!(
            json["attributes"],
            json!({"companyName": "Initrode", "email": "kim@example.test"})
        );
        let (_, _, json) = admin.call(Method::GET, &path, token, None).await;
        assert_eq!(json["attributes"]["companyName"], "Initrode");

        // The new password signs in; the old one no longer does.
        let password_path = format!("{path}/password");
        let (status, _, json) = admin
            .call(
                Method::PUT,
                &password_path,
                token,
                Some(r#"{"password": "another long password"}"#),
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{json}");
        let users = admin.service.state.users();
        let secrets = admin.service.state.secrets();
        assert!(
            users
                .authenticate(secrets, &username, "another long password")
                .await
                .unwrap()
                .is_some()
        );
        assert!(
            users
                .authenticate(secrets, &username, "a long enough password")
                .await
                .unwrap()
                .is_none()
        );

        let (status, _, _) = admin.call(Method::DELETE, &path, token, None).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, _, json) = admin.call(Method::GET, &path, token, None).await;
        assert_eq!(
            (status, json["error"].as_str()),
            (StatusCode::NOT_FOUND, Some("not_found"))
        );
        let (status, _, _) = admin.call(Method::DELETE, &path, token, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn bad_input_gets_400_naming_the_field_and_changes_nothing() {
    let admin = Admin::start().await;
    let token = admin.token_of(ADMIN).await;
    let token = Some(token.as_str());
    let good = r#"{"username": "lee", "password": "a long enough password", "attributes": {"companyName": "Acme"}}"#;
    let (status, _, _) = admin
        .call(Method::POST, "/admin/users", token, Some(good))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let before = admin.call(Method::GET, "/admin/users", token, None).await.2;

    let bad_creations = [
        ("not json", "body"),
        ("[1, 2]", "body"),
        (r#"{"password": "a long enough password"}"#, "username"),
        (
            r#"{"username": 7, "password": "a long enough password"}"#,
            "username",
        ),
        (
            r#"{"username": "has space", "password": "a long enough password"}"#,
            "username",
        ),
        (r#"{"username": "max"}"#, "password"),
        (r#"{"username": "max", "password": "short"}"#, "password"),
        (
            r#"{"username": "maxmaxmaxmax", "password": "MAXMAXMAXMAX"}"#,
            "password",
        ),
        (
            r#"{"username": "max", "password": "a long enough password", "attributes": []}"#,
            "attributes",
        ),
        (
            r#"{"username": "max", "password": "a long enough password", "attributes": {"bad name": 1}}"#,
            "attributes.bad name",
        ),
        (
            r#"{"username": "max", "password": "a long enough password", "attributes": {"x": null}}"#,
            "attributes.x",
        ),
        (
            r#"{"username": "max", "password": "a long enough password", "admin": true}"#,
            "admin",
        ),
    ];
    for (body, field) in bad_creations {
        let (status, _, json) = admin
            .call(Method::POST, "/admin/users", token, Some(body))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {json}");
        assert_eq!(json["error"], "invalid_request", "{body}");
        assert_eq!(json["field"], field, "{body}: {json}");
    }
    // The service's body limit (64 KiB by default) holds under /admin too.
    let huge = json!({"username": "big", "password": "a long enough password",
        "attributes": {"note": "a".repeat(70 * 1024)}});
    let (status, _, _) = admin
        .call(Method::POST, "/admin/users", token, Some(&huge.to_string()))
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    // Taken names: in the store and in the configuration file, the same answer.
    for username in ["lee", "jane", "LEE", "Jane"] {
        let body = json!({"username": username, "password": "a long enough password"});
        let (status, _, json) = admin
            .call(Method::POST, "/admin/users", token, Some(&body.to_string()))
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{username}: {json}");
        assert_eq!(
            json["error_description"],
            format!("user `{username}` exists")
        );
    }

    // A PATCH with one bad attribute name among good changes applies none of them.
    let bad_patches = [
        (
            r#"{"attributes": {"companyName": "Other", "no-dash": 1}}"#,
            "attributes.no-dash",
        ),
        (r#"{"attributes": "x"}"#, "attributes"),
        (r#"{}"#, "attributes"),
        (r#"{"attributes": {}, "username": "renamed"}"#, "username"),
    ];
    for (body, field) in bad_patches {
        let (status, _, json) = admin
            .call(Method::PATCH, "/admin/users/lee", token, Some(body))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {json}");
        assert_eq!(json["field"], field, "{body}: {json}");
    }
    for (body, field) in [
        (r#"{"password": "short"}"#, "password"),
        (r#"{"password": "LEE"}"#, "password"),
        (r#"{}"#, "password"),
    ] {
        let (status, _, json) = admin
            .call(Method::PUT, "/admin/users/lee/password", token, Some(body))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {json}");
        assert_eq!(json["field"], field, "{body}: {json}");
    }
    // Unknown users; configured users are read-only.
    let (status, _, _) = admin
        .call(
            Method::PATCH,
            "/admin/users/nobody",
            token,
            Some(r#"{"attributes": {}}"#),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    for (method, path, body) in [
        (
            Method::PATCH,
            "/admin/users/jane",
            Some(r#"{"attributes": {"x": 1}}"#),
        ),
        (
            Method::PUT,
            "/admin/users/jane/password",
            Some(r#"{"password": "a long enough password"}"#),
        ),
        (Method::DELETE, "/admin/users/jane", None),
    ] {
        let (status, _, json) = admin.call(method.clone(), path, token, body).await;
        assert_eq!(status, StatusCode::CONFLICT, "{method} {path}: {json}");
    }
    let after = admin.call(Method::GET, "/admin/users", token, None).await.2;
    assert_eq!(before, after, "a refused request changed something");
    assert!(
        admin
            .service
            .state
            .users()
            .authenticate(
                admin.service.state.secrets(),
                "lee",
                "a long enough password"
            )
            .await
            .unwrap()
            .is_some(),
        "a refused password change changed the password"
    );
}

#[tokio::test]
async fn clients_are_registered_with_a_secret_shown_once_used_and_deleted() {
    let admin = Admin::start().await;
    let token = admin.token_of(ADMIN_OPAQUE).await;
    let token = Some(token.as_str());
    // A client id tried before it exists is not remembered as unknown once it is registered.
    let early = admin
        .service
        .post(
            "/token",
            Some(("batch", "guess")),
            "grant_type=client_credentials",
        )
        .await;
    assert_eq!(early.status, 401);

    let body = json!({
        "id": "batch",
        "scopes": ["akamai:social_profile:read"],
        "token_format": "opaque",
        "access_token_ttl": "15m",
        "audience": [API],
    });
    let (status, _, created) = admin
        .call(
            Method::POST,
            "/admin/clients",
            token,
            Some(&body.to_string()),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(secret.len() >= 43, "a 256-bit secret: {secret}");
    assert_eq!(created["grants"], json!(["client_credentials"]));
    assert_eq!(created["access_token_ttl"], "15m");
    assert_eq!(created["public"], false);
    assert_eq!(created["source"], "store");
    // Shown once: never in a listing or a read, and only its hash is in the store.
    let (_, _, read) = admin
        .call(Method::GET, "/admin/clients/batch", token, None)
        .await;
    assert!(read.get("secret").is_none(), "{read}");
    assert_eq!(read["scopes"], json!(["akamai:social_profile:read"]));
    let (_, _, listing) = admin.call(Method::GET, "/admin/clients", token, None).await;
    assert!(!listing.to_string().contains(&secret));
    let stored = admin
        .service
        .state
        .store()
        .find_client("batch")
        .await
        .unwrap()
        .unwrap();
    assert!(stored.secret.as_ref().is_some_and(|hash| {
        hash.as_str().starts_with("$argon2id$")
            && !hash.as_str().contains(&secret)
            && hash.verify(&secret)
    }));

    // It gets tokens at once, with its settings; the API introspects them.
    let issued = admin.service.token(("batch", &secret), "").await;
    assert_eq!(issued["expires_in"], 900, "{issued}");
    let opaque = issued["access_token"].as_str().unwrap().to_owned();
    let answer = admin.service.introspect(API_CREDENTIALS, &opaque).await;
    assert_eq!(answer.json["active"], true, "{}", answer.text);
    assert_eq!(answer.json["client_id"], "batch");

    // Deleted: its tokens are revoked and its secret no longer works.
    let (status, _, _) = admin
        .call(Method::DELETE, "/admin/clients/batch", token, None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let answer = admin.service.introspect(API_CREDENTIALS, &opaque).await;
    assert_eq!(answer.json, json!({"active": false}));
    let refused = admin
        .service
        .post(
            "/token",
            Some(("batch", &secret)),
            "grant_type=client_credentials",
        )
        .await;
    assert_eq!(
        (refused.status, refused.error()),
        (StatusCode::UNAUTHORIZED, "invalid_client")
    );
    let (status, _, _) = admin
        .call(Method::GET, "/admin/clients/batch", token, None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = admin
        .call(Method::DELETE, "/admin/clients/batch", token, None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A JWT client: its JWTs stop introspecting active once it is deleted.
    let body =
        json!({"id": "jwt-batch", "scopes": ["akamai:social_profile:read"], "audience": [API]});
    let (status, _, created) = admin
        .call(
            Method::POST,
            "/admin/clients",
            token,
            Some(&body.to_string()),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let secret = created["secret"].as_str().unwrap();
    let jwt = admin.service.token(("jwt-batch", secret), "").await;
    let jwt = jwt["access_token"].as_str().unwrap().to_owned();
    assert_eq!(jwt.matches('.').count(), 2);
    let answer = admin.service.introspect(API_CREDENTIALS, &jwt).await;
    assert_eq!(answer.json["active"], true, "{}", answer.text);
    let (status, _, _) = admin
        .call(Method::DELETE, "/admin/clients/jwt-batch", token, None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let answer = admin.service.introspect(API_CREDENTIALS, &jwt).await;
    assert_eq!(answer.json, json!({"active": false}));

    // A public sign-in client: no secret, its sign-in settings kept.
    let body = json!({
        "id": "spa",
        "public": true,
        "grants": ["authorization_code", "refresh_token"],
        "scopes": ["openid", "profile", "ad:user_custom:read"],
        "redirect_uris": ["https://spa.example.test/cb"],
        "post_logout_redirect_uris": ["https://spa.example.test/"],
        "required_claims": ["company_name"],
        "self_signup": true,
    });
    let (status, _, created) = admin
        .call(
            Method::POST,
            "/admin/clients",
            token,
            Some(&body.to_string()),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert!(created.get("secret").is_none(), "{created}");
    let client = admin
        .service
        .state
        .registry()
        .client("spa")
        .await
        .unwrap()
        .unwrap();
    assert!(client.is_public() && client.settings.self_signup);
    assert_eq!(client.settings.required_claims, ["company_name"]);
    assert_eq!(
        client.settings.post_logout_redirect_uris,
        ["https://spa.example.test/"]
    );
}

/// The admin API takes every member of a `[[clients]]` entry (but its secret), `default_scopes`
/// included, and answers with them; `null` counts as absent.
#[tokio::test]
async fn a_client_registered_here_has_every_setting_a_configured_one_has() {
    let admin = Admin::start().await;
    let token = admin.token_of(ADMIN).await;
    let token = Some(token.as_str());
    let body = json!({
        "id": "reports",
        "scopes": ["akamai:social_profile:write", "akamai:social_profile:read"],
        "default_scopes": ["akamai:social_profile:read"],
        "audience": null,
        "access_token_ttl": null,
    });
    let (status, _, created) = admin
        .call(
            Method::POST,
            "/admin/clients",
            token,
            Some(&body.to_string()),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(
        created["default_scopes"],
        json!(["akamai:social_profile:read"])
    );
    assert_eq!(created["audience"], json!([]));
    assert_eq!(created["access_token_ttl"], Value::Null);
    // Kept as a set, as the store keeps it.
    assert_eq!(
        created["scopes"],
        json!(["akamai:social_profile:read", "akamai:social_profile:write"])
    );
    let secret = created["secret"].as_str().unwrap().to_owned();
    // Asking for no scope gives the default ones; asking gives what is asked.
    let plain = admin.service.token(("reports", &secret), "").await;
    assert_eq!(plain["scope"], "akamai:social_profile:read", "{plain}");
    let asked = admin
        .service
        .token(("reports", &secret), "&scope=akamai:social_profile:write")
        .await;
    assert_eq!(asked["scope"], "akamai:social_profile:write", "{asked}");
    // Read back from the store (another instance would read it so), the same settings.
    let (_, _, read) = admin
        .call(Method::GET, "/admin/clients/reports", token, None)
        .await;
    let mut shown = created.clone();
    shown.as_object_mut().unwrap().remove("secret");
    assert_eq!(read, shown);
    // Defaults the client cannot be granted are refused, naming the member.
    let bad = json!({"id": "reports-2", "scopes": ["a:b:read"], "default_scopes": ["a:b:write"]});
    let (status, _, json) = admin
        .call(
            Method::POST,
            "/admin/clients",
            token,
            Some(&bad.to_string()),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{json}");
    assert_eq!(json["field"], "default_scopes", "{json}");
}

#[tokio::test]
async fn apis_are_registered_introspect_their_scopes_and_are_deleted() {
    let admin = Admin::start().await;
    let token = admin.token_of(ADMIN).await;
    let token = Some(token.as_str());
    // A scope another API owns, or the service itself, is refused: one owner per scope.
    for (scopes, owner) in [
        (json!(["other:thing"]), OTHER_API),
        (json!(["other:thing:read"]), OTHER_API),
        (json!(["akamai:social_profile:write"]), API),
        (json!(["openid"]), "the token service itself"),
        (json!(["scopegate:users"]), "the token service itself"),
    ] {
        let body = json!({"id": "https://reports.example.test", "scopes": scopes});
        let (status, _, refused) = admin
            .call(Method::POST, "/admin/apis", token, Some(&body.to_string()))
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{scopes}: {refused}");
        assert_eq!(refused["field"], "scopes[0]", "{refused}");
        assert!(
            refused["error_description"]
                .as_str()
                .unwrap()
                .contains(owner),
            "{refused}"
        );
    }
    let body = json!({"id": "https://reports.example.test", "scopes": ["other:report"]});
    let (status, _, created) = admin
        .call(Method::POST, "/admin/apis", token, Some(&body.to_string()))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert_eq!(created["scopes"], json!(["other:report"]));
    // Ids with `/` are percent-encoded in the path.
    let path = "/admin/apis/https%3A%2F%2Freports.example.test";
    let (status, _, read) = admin.call(Method::GET, path, token, None).await;
    assert_eq!(status, StatusCode::OK, "{read}");
    assert_eq!(read["id"], "https://reports.example.test");
    assert!(read.get("secret").is_none());
    let (_, _, listing) = admin.call(Method::GET, "/admin/apis", token, None).await;
    let ids: Vec<&str> = listing["apis"]
        .as_array()
        .unwrap()
        .iter()
        .map(|api| api["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [API, OTHER_API, "https://reports.example.test"]);

    // It introspects, and sees only its own scopes.
    let client = json!({
        "id": "reporter", "grants": ["client_credentials"], "token_format": "opaque",
        "scopes": ["other:report:read", "other:thing:read", "akamai:social_profile:read"],
    });
    let (status, _, reporter) = admin
        .call(
            Method::POST,
            "/admin/clients",
            token,
            Some(&client.to_string()),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{reporter}");
    let opaque = admin
        .service
        .token(
            ("reporter", reporter["secret"].as_str().unwrap()),
            "&scope=other:report:read other:thing:read akamai:social_profile:read",
        )
        .await;
    let opaque = opaque["access_token"].as_str().unwrap().to_owned();
    let reports = ("https://reports.example.test", secret.as_str());
    let answer = admin.service.introspect(reports, &opaque).await;
    assert_eq!(answer.json["active"], true, "{}", answer.text);
    assert_eq!(answer.json["scope"], "other:report:read");

    let (status, _, _) = admin.call(Method::DELETE, path, token, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let answer = admin.service.introspect(reports, &opaque).await;
    assert_eq!(
        (answer.status, answer.error()),
        (StatusCode::UNAUTHORIZED, "invalid_client")
    );
    let (status, _, _) = admin.call(Method::DELETE, path, token, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bad_client_and_api_registrations_get_400_naming_the_field_and_change_nothing() {
    let admin = Admin::start().await;
    let token = admin.token_of(ADMIN).await;
    let token = Some(token.as_str());
    let good = r#"{"id": "kept", "scopes": ["a:b:read"]}"#;
    let (status, _, _) = admin
        .call(Method::POST, "/admin/clients", token, Some(good))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let before = admin
        .call(Method::GET, "/admin/clients", token, None)
        .await
        .2;

    let bad_clients = [
        ("{", "body"),
        (r#""client""#, "body"),
        (r#"{"scopes": ["a:b:read"]}"#, "id"),
        (r#"{"id": "has space"}"#, "id"),
        (r#"{"id": "x", "secret": "mine"}"#, "secret"),
        (r#"{"id": "x", "scopes": "a:b:read"}"#, "scopes"),
        (r#"{"id": "x", "scopes": ["bad\"scope"]}"#, "scopes[0]"),
        (r#"{"id": "x", "scopes": ["a:b:read", 3]}"#, "scopes[1]"),
        (r#"{"id": "x", "grants": []}"#, "grants"),
        (r#"{"id": "x", "grants": ["implicit"]}"#, "grants[0]"),
        (r#"{"id": "x", "public": true}"#, "grants"),
        (r#"{"id": "x", "public": "yes"}"#, "public"),
        (r#"{"id": "x", "token_format": "saml"}"#, "token_format"),
        (
            r#"{"id": "x", "access_token_ttl": "3d"}"#,
            "access_token_ttl",
        ),
        (
            r#"{"id": "x", "access_token_ttl": "soon"}"#,
            "access_token_ttl",
        ),
        (r#"{"id": "x", "access_token_ttl": 60}"#, "access_token_ttl"),
        (r#"{"id": "x", "audience": ["has space"]}"#, "audience[0]"),
        (
            r#"{"id": "x", "grants": ["authorization_code"], "redirect_uris": ["not a url"]}"#,
            "redirect_uris[0]",
        ),
        (
            r#"{"id": "x", "grants": ["authorization_code"], "redirect_uris": ["https://a.test/cb#frag"]}"#,
            "redirect_uris[0]",
        ),
        (
            r#"{"id": "x", "grants": ["authorization_code"], "post_logout_redirect_uris": ["/relative"]}"#,
            "post_logout_redirect_uris[0]",
        ),
        (
            r#"{"id": "x", "grants": ["authorization_code"], "scopes": ["openid"], "required_claims": ["company_name"]}"#,
            "required_claims[0]",
        ),
        (
            r#"{"id": "x", "grants": ["authorization_code"], "scopes": ["email"], "required_claims": ["email_verified"]}"#,
            "required_claims[0]",
        ),
        (
            r#"{"id": "x", "scopes": ["ad:user_custom:read"], "required_claims": ["company_name"]}"#,
            "required_claims",
        ),
        (r#"{"id": "x", "self_signup": true}"#, "self_signup"),
        // The admin API does not hand out its own rights.
        (
            r#"{"id": "x", "scopes": ["a:b:read", "scopegate:users:*"]}"#,
            "scopes[1]",
        ),
        (
            r#"{"id": "x", "scopes": ["scopegate:clients:read"]}"#,
            "scopes[0]",
        ),
    ];
    for (body, field) in bad_clients {
        let (status, _, json) = admin
            .call(Method::POST, "/admin/clients", token, Some(body))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {json}");
        assert_eq!(json["error"], "invalid_request", "{body}");
        assert_eq!(json["field"], field, "{body}: {json}");
    }
    // Taken ids (stored, configured) → 409; configured clients are read-only; unknown → 404.
    for id in ["kept", "svc-jwt"] {
        let body = json!({"id": id});
        let (status, _, json) = admin
            .call(
                Method::POST,
                "/admin/clients",
                token,
                Some(&body.to_string()),
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{id}: {json}");
    }
    let (status, _, _) = admin
        .call(Method::DELETE, "/admin/clients/svc-jwt", token, None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _, _) = admin
        .call(Method::DELETE, "/admin/clients/nobody", token, None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let after = admin
        .call(Method::GET, "/admin/clients", token, None)
        .await
        .2;
    assert_eq!(before, after, "a refused request changed the clients");

    let apis_before = admin.call(Method::GET, "/admin/apis", token, None).await.2;
    let bad_apis = [
        ("[]", "body"),
        (r#"{"scopes": ["a:b"]}"#, "id"),
        (r#"{"id": "https://x.test"}"#, "scopes"),
        (r#"{"id": "https://x.test", "scopes": []}"#, "scopes"),
        (
            r#"{"id": "https://x.test", "scopes": ["a b"]}"#,
            "scopes[0]",
        ),
        (r#"{"id": "https://x.test", "scopes": [true]}"#, "scopes[0]"),
        (r#"{"id": "has space", "scopes": ["a:b"]}"#, "id"),
        (
            r#"{"id": "https://x.test", "scopes": ["a:b"], "secret": "s"}"#,
            "secret",
        ),
    ];
    for (body, field) in bad_apis {
        let (status, _, json) = admin
            .call(Method::POST, "/admin/apis", token, Some(body))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {json}");
        assert_eq!(json["field"], field, "{body}: {json}");
    }
    // The configured APIs and the service's own identity are taken and read-only.
    for id in [API, admin.issuer.as_str()] {
        let body = json!({"id": id, "scopes": ["a:b"]});
        let (status, _, json) = admin
            .call(Method::POST, "/admin/apis", token, Some(&body.to_string()))
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{id}: {json}");
    }
    let (status, _, _) = admin
        .call(
            Method::DELETE,
            "/admin/apis/https%3A%2F%2Fapi.example.test",
            token,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let apis_after = admin.call(Method::GET, "/admin/apis", token, None).await.2;
    assert_eq!(
        apis_before, apis_after,
        "a refused request changed the APIs"
    );
}

#[tokio::test]
async fn the_openapi_document_describes_exactly_the_routes_there_are() {
    let admin = Admin::start().await;
    let (status, _, document) = admin
        .call(Method::GET, "/admin/openapi.json", None, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        document["openapi"].as_str().unwrap().starts_with("3.1"),
        "{document}"
    );
    let mut documented = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            if method == "parameters" {
                continue;
            }
            let scopes: Vec<&str> = operation["security"]
                .as_array()
                .map(|requirements| {
                    requirements
                        .iter()
                        .flat_map(|requirement| requirement["oauth2"].as_array().unwrap())
                        .map(|scope| scope.as_str().unwrap())
                        .collect()
                })
                .unwrap_or_default();
            assert!(
                operation["responses"].is_object(),
                "{method} {path} has no responses"
            );
            documented.push((method.to_uppercase(), path.clone(), scopes.join(" ")));
        }
    }
    documented.sort();
    let mut served: Vec<(String, String, String)> = ENDPOINTS
        .iter()
        .map(|(method, path, _, scope)| {
            (
                (*method).to_owned(),
                (*path).to_owned(),
                (*scope).to_owned(),
            )
        })
        .collect();
    served.sort();
    assert_eq!(documented, served);
    // The client members are described from the model itself, every one of them.
    let settings = &document["components"]["schemas"]["ClientSettings"]["properties"];
    for member in [
        "id",
        "grants",
        "scopes",
        "default_scopes",
        "access_token_ttl",
        "self_signup",
    ] {
        assert!(
            settings[member].is_object(),
            "{member} is not described: {settings}"
        );
    }
    assert!(settings.get("secret").is_none(), "{settings}");
    // The security scheme points at this service's token endpoint.
    let flow = &document["components"]["securitySchemes"]["oauth2"]["flows"]["clientCredentials"];
    assert_eq!(flow["tokenUrl"], format!("{}/token", admin.issuer));
    assert_eq!(document["servers"][0]["url"], admin.issuer);
}

#[tokio::test]
async fn a_deleted_clients_jwts_no_longer_open_the_admin_api_even_if_its_id_returns() {
    use clap::Parser;
    use scopegate_token_service::config::ClientSettings;
    use scopegate_token_service::registration;

    /// `token-service client add`'s flags.
    #[derive(Parser)]
    struct ClientAdd {
        #[command(flatten)]
        settings: ClientSettings,
    }

    let admin = Admin::start().await;
    let token = admin.token_of(ADMIN).await;
    let state = &admin.service.state;
    // A stored operator client, added as `client add` would add it.
    let register = || {
        let new = ClientAdd::parse_from([
            "client-add",
            "--id",
            "ops",
            "--scope",
            "scopegate:users:read",
        ])
        .settings;
        registration::client(&state.config().scopes, new, state.now()).unwrap()
    };
    let (record, secret) = register();
    state.store().insert_client(&record).await.unwrap();
    let issued = admin
        .service
        .token(("ops", secret.unwrap().expose()), "")
        .await;
    let old_token = issued["access_token"].as_str().unwrap().to_owned();
    let (status, _, _) = admin
        .call(Method::GET, "/admin/users", Some(&old_token), None)
        .await;
    assert_eq!(status, StatusCode::OK);

    let (status, _, _) = admin
        .call(Method::DELETE, "/admin/clients/ops", Some(&token), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, challenge, _) = admin
        .call(Method::GET, "/admin/users", Some(&old_token), None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(challenge.contains("invalid_token"), "{challenge}");
    // Refused because the token is no longer active, as introspection says too.
    assert!(
        scopegate_token_service::tokens::lookup(state, &old_token)
            .await
            .unwrap()
            .is_none()
    );

    // Registered again under the same id: the old JWT stays refused, a new one works.
    admin.service.advance(std::time::Duration::from_secs(2));
    let (record, secret) = register();
    state.store().insert_client(&record).await.unwrap();
    // Written to the store directly (as `client add` does), so this instance learns of it
    // within 10 s; the test does not wait, it forgets as the admin API would.
    state.registry().forget_client("ops").await;
    let (status, _, _) = admin
        .call(Method::GET, "/admin/users", Some(&old_token), None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let issued = admin
        .service
        .token(("ops", secret.unwrap().expose()), "")
        .await;
    let new_token = issued["access_token"].as_str().unwrap();
    let (status, _, _) = admin
        .call(Method::GET, "/admin/users", Some(new_token), None)
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn claim_scopes_are_defined_read_replaced_and_deleted() {
    let admin = Admin::start().await;
    let token = admin.token_of(ADMIN).await;
    let token = Some(token.as_str());
    let configured = json!({
        "name": "ad:user_custom:read",
        "claims": { "company_name": "companyName" },
        "access_token": false,
        "source": "configuration",
    });
    let (status, _, list) = admin.call(Method::GET, "/admin/scopes", token, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list, json!({ "scopes": [configured] }));

    let body = json!({
        "name": "hr:department:read",
        "claims": { "department": "dept" },
        "access_token": true,
    });
    let (status, _, created) = admin
        .call(
            Method::POST,
            "/admin/scopes",
            token,
            Some(&body.to_string()),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let defined_at = created["created_at"].as_u64().unwrap();
    let mut expected = body.clone();
    expected["source"] = "store".into();
    expected["created_at"] = defined_at.into();
    expected["updated_at"] = defined_at.into();
    assert_eq!(created, expected);
    let path = "/admin/scopes/hr:department:read";
    let (status, _, read) = admin.call(Method::GET, path, token, None).await;
    assert_eq!((status, &read), (StatusCode::OK, &expected));
    // The auditor may read it, percent-encoded or not.
    let auditor = admin.token_of(AUDITOR).await;
    let (status, _, read) = admin
        .call(
            Method::GET,
            "/admin/scopes/hr%3Adepartment%3Aread",
            Some(&auditor),
            None,
        )
        .await;
    assert_eq!((status, &read), (StatusCode::OK, &expected));
    let (_, _, list) = admin.call(Method::GET, "/admin/scopes", token, None).await;
    assert_eq!(list, json!({ "scopes": [configured, expected] }));

    // Replaced in full: what the body leaves out is gone (`access_token` false).
    admin.service.advance(std::time::Duration::from_secs(5));
    let replacement = json!({ "claims": { "division": "dept", "cost_centre": "costCentre" } });
    let (status, _, replaced) = admin
        .call(Method::PUT, path, token, Some(&replacement.to_string()))
        .await;
    assert_eq!(status, StatusCode::OK, "{replaced}");
    let expected = json!({
        "name": "hr:department:read",
        "claims": { "division": "dept", "cost_centre": "costCentre" },
        "access_token": false,
        "source": "store",
        "created_at": defined_at,
        "updated_at": defined_at + 5,
    });
    assert_eq!(replaced, expected);
    let (_, _, read) = admin.call(Method::GET, path, token, None).await;
    assert_eq!(read, expected);

    let (status, _, _) = admin.call(Method::DELETE, path, token, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    for (method, body) in [
        (Method::GET, None),
        (Method::DELETE, None),
        (Method::PUT, Some(replacement.to_string())),
    ] {
        let (status, _, json) = admin
            .call(method.clone(), path, token, body.as_deref())
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method}: {json}");
        assert_eq!(json["error"], "not_found");
    }
    let (_, _, list) = admin.call(Method::GET, "/admin/scopes", token, None).await;
    assert_eq!(list, json!({ "scopes": [configured] }));
    // Defined again: a new definition.
    let (status, _, again) = admin
        .call(
            Method::POST,
            "/admin/scopes",
            token,
            Some(&body.to_string()),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{again}");
    assert_eq!(again["created_at"], defined_at + 5);
    assert_eq!(again["claims"], body["claims"]);
}

#[tokio::test]
async fn configured_claim_scopes_are_read_only_and_bad_scope_bodies_get_400_naming_the_field() {
    let admin = Admin::start().await;
    let token = admin.token_of(ADMIN).await;
    let token = Some(token.as_str());
    let stored = r#"{"name": "hr:department:read", "claims": {"department": "dept"}}"#;
    let (status, _, _) = admin
        .call(Method::POST, "/admin/scopes", token, Some(stored))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let before = admin
        .call(Method::GET, "/admin/scopes", token, None)
        .await
        .2;

    // The configuration file's scope: read-only, and its name taken.
    let configured = "/admin/scopes/ad:user_custom:read";
    for (method, path, body) in [
        (Method::PUT, configured, Some(r#"{"claims": {}}"#)),
        (Method::DELETE, configured, None),
        (
            Method::POST,
            "/admin/scopes",
            Some(r#"{"name": "ad:user_custom:read"}"#),
        ),
    ] {
        let (status, _, json) = admin.call(method.clone(), path, token, body).await;
        assert_eq!(status, StatusCode::CONFLICT, "{method} {path}: {json}");
        assert_eq!(json["error"], "conflict");
        assert!(
            json["error_description"]
                .as_str()
                .unwrap()
                .contains("configuration file"),
            "{json}"
        );
    }
    // A stored name is taken too; a name an API owns belongs to it.
    let (status, _, json) = admin
        .call(Method::POST, "/admin/scopes", token, Some(stored))
        .await;
    assert_eq!(
        (status, json.get("field")),
        (StatusCode::CONFLICT, None),
        "{json}"
    );
    for owned in [
        "akamai:social_profile:read",
        "akamai:social_profile",
        "other:thing:*",
    ] {
        let body = json!({ "name": owned }).to_string();
        let (status, _, json) = admin
            .call(Method::POST, "/admin/scopes", token, Some(&body))
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{owned}: {json}");
        assert_eq!(json["field"], "name", "{owned}: {json}");
    }
    // And an API cannot take a stored claim scope.
    let api = r#"{"id": "https://hr.example.test", "scopes": ["hr:department"]}"#;
    let (status, _, json) = admin
        .call(Method::POST, "/admin/apis", token, Some(api))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{json}");
    assert_eq!(json["field"], "scopes[0]");
    assert!(
        json["error_description"]
            .as_str()
            .unwrap()
            .contains("hr:department:read"),
        "{json}"
    );

    let bad_definitions = [
        ("{", "body"),
        ("[]", "body"),
        ("{}", "name"),
        (r#"{"name": 7}"#, "name"),
        (r#"{"name": "bad scope"}"#, "name"),
        (r#"{"name": "openid"}"#, "name"),
        (r#"{"name": "scopegate:scopes:read"}"#, "name"),
        (r#"{"name": "scopegate:reports:read"}"#, "name"),
        (r#"{"name": "a:b:read", "claims": "department"}"#, "claims"),
        (r#"{"name": "a:b:read", "claims": {"c": 3}}"#, "claims.c"),
        (
            r#"{"name": "a:b:read", "claims": {"c d": "x"}}"#,
            "claims.c d",
        ),
        (r#"{"name": "a:b:read", "claims": {"c": ""}}"#, "claims.c"),
        (
            r#"{"name": "a:b:read", "claims": {"username": "id"}, "access_token": true}"#,
            "claims",
        ),
        (
            r#"{"name": "a:b:read", "claims": {"sub": "id"}}"#,
            "claims.sub",
        ),
        (
            r#"{"name": "a:b:read", "claim_source": "nowhere"}"#,
            "claim_source",
        ),
        (
            r#"{"name": "a:b:read", "access_token": "yes"}"#,
            "access_token",
        ),
        (r#"{"name": "a:b:read", "colour": "red"}"#, "colour"),
    ];
    for (body, field) in bad_definitions {
        let (status, _, json) = admin
            .call(Method::POST, "/admin/scopes", token, Some(body))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {json}");
        assert_eq!(json["error"], "invalid_request", "{body}");
        assert_eq!(json["field"], field, "{body}: {json}");
    }
    let path = "/admin/scopes/hr:department:read";
    for (body, field) in [
        (r#"{"name": "hr:department:write"}"#, "name"),
        (
            r#"{"claims": {"username": "id"}, "access_token": true}"#,
            "claims",
        ),
        (
            r#"{"claims": {"email_verified": "v"}}"#,
            "claims.email_verified",
        ),
        (r#"{"claims": {"c": null}}"#, "claims.c"),
        ("not json", "body"),
    ] {
        let (status, _, json) = admin.call(Method::PUT, path, token, Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {json}");
        assert_eq!(json["field"], field, "{body}: {json}");
    }
    let after = admin
        .call(Method::GET, "/admin/scopes", token, None)
        .await
        .2;
    assert_eq!(before, after, "a refused request changed the scopes");
}
