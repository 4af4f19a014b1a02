//! The admin API for users over real HTTP: guarded by the service's own tower-scopegate layer
//! (401 without a token or with one addressed elsewhere, 403 `insufficient_scope` without the
//! scope), every endpoint with good and bad input, nothing changed by a refused request.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod support;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::*;

const ADMIN: (&str, &str) = ("admin", "admin-secret");
const AUDITOR: (&str, &str) = ("auditor", "auditor-secret");
const ADMIN_OPAQUE: (&str, &str) = ("admin-opaque", "admin-opaque-secret");

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
            r#"{}
[[clients]]
id = "admin"
secret = "admin-secret"
grants = ["client_credentials"]
scopes = ["scopegate:users:*"]
token_format = "jwt"

[[clients]]
id = "admin-opaque"
secret = "admin-opaque-secret"
grants = ["client_credentials"]
scopes = ["scopegate:users:*"]
token_format = "opaque"

[[clients]]
id = "auditor"
secret = "auditor-secret"
grants = ["client_credentials"]
scopes = ["scopegate:users:read"]
token_format = "jwt"
"#,
            config_text(&issuer, "ES256")
        );
        let service = TestService::start_with(&config).await;
        tokio::spawn(scopegate_token_service::serve(
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
        let answer = self.service.token(client, "").await;
        answer["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no token for {}: {answer}", client.0))
            .to_owned()
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

/// Every endpoint, by method and path, and whether it changes anything.
const ENDPOINTS: [(&str, &str, bool); 6] = [
    ("GET", "/admin/users", false),
    ("POST", "/admin/users", true),
    ("GET", "/admin/users/jane", false),
    ("PATCH", "/admin/users/jane", true),
    ("PUT", "/admin/users/jane/password", true),
    ("DELETE", "/admin/users/jane", true),
];

#[tokio::test]
async fn every_endpoint_needs_a_token_for_this_service_with_the_right_scope() {
    let admin = Admin::start().await;
    let machine = admin.token_of(JWT_CLIENT).await; // addressed to the APIs, not to us
    let auditor = admin.token_of(AUDITOR).await;
    for (method, path, changes) in ENDPOINTS {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let body = Some("{}");
        let (status, challenge, _) = admin.call(method.clone(), path, None, body).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}");
        assert_eq!(challenge, "Bearer realm=\"token-service\"");
        let (status, challenge, _) = admin.call(method.clone(), path, Some(&machine), body).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}");
        assert!(challenge.contains("invalid_token"), "{challenge}");
        if changes {
            let (status, challenge, _) =
                admin.call(method.clone(), path, Some(&auditor), body).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}");
            assert!(
                challenge.contains("error=\"insufficient_scope\"")
                    && challenge.contains("scope=\"scopegate:users:write\""),
                "{challenge}"
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
    // Taken names: in the store and in the configuration file, the same answer.
    for username in ["lee", "jane"] {
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
