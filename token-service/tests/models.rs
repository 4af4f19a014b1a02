//! One model per concept for every entry point (issue 15): the configuration file, the admin
//! API and `token-service client add` / `api add` / `scope add` read the same members into the
//! same `ClientSettings` / `ApiSettings` / `ScopeSettings`, and each member is all three (a key,
//! a JSON member, a flag). The store's round trip of every member is `tests/store.rs`.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod support;

use clap::{CommandFactory, Parser};
use scopegate_token_service::config::{
    ApiSettings, ClientSettings, Config, ConfigError, Defined, JsonSettings, ScopeSettings,
    build_api, build_client, build_scope,
};
use scopegate_token_service::secret::SecretHash;
use serde_json::{Value, json};

/// `token-service client add`'s flags.
#[derive(Parser)]
struct ClientAdd {
    #[command(flatten)]
    settings: ClientSettings,
}

/// `token-service api add`'s flags.
#[derive(Parser)]
struct ApiAdd {
    #[command(flatten)]
    settings: ApiSettings,
}

/// `token-service scope add`'s (and `scope update`'s) flags.
#[derive(Parser)]
struct ScopeAdd {
    #[command(flatten)]
    settings: ScopeSettings,
}

const TOP: &str = "issuer = \"http://127.0.0.1:8080\"\nlisten = \"127.0.0.1:8080\"\nstorage = \"sqlite::memory:\"\n";

/// Clients that between them set every member to something other than its default (some
/// members exclude each other: a public client has no keys; keys are `jwks` or `jwks_uri`).
fn every_member() -> Vec<Value> {
    let public = json!({
        "id": "portal",
        "public": true,
        "grants": ["authorization_code", "refresh_token"],
        "scopes": ["openid", "profile", "a:b:read", "a:b:write"],
        "default_scopes": ["openid", "a:b"],
        "token_format": "opaque",
        "access_token_ttl": "15m",
        "audience": ["https://api.example.test", "other"],
        "redirect_uris": ["https://portal.example.test/cb"],
        "post_logout_redirect_uris": ["https://portal.example.test/"],
        "required_claims": ["name"],
        "self_signup": true,
        "rate_limit": "600/min",
        "dpop_bound_access_tokens": true,
    });
    let mut with_jwks = public.clone();
    with_jwks["public"] = false.into();
    with_jwks["grants"] = json!(["authorization_code", "refresh_token", "token_exchange"]);
    with_jwks["exchange_from"] = json!(["https://api.example.test"]);
    with_jwks["jwks"] =
        json!({ "keys": [{ "kty": "EC", "crv": "P-256", "kid": "k1", "x": "x", "y": "y" }] });
    let mut with_jwks_uri = public.clone();
    with_jwks_uri["public"] = false.into();
    with_jwks_uri["jwks_uri"] = "https://portal.example.test/jwks.json".into();
    vec![public, with_jwks, with_jwks_uri]
}

/// The members the admin API documents and reads.
fn members(schema: &Value) -> Vec<String> {
    let mut names: Vec<String> = schema["properties"]
        .as_object()
        .expect("the schema lists its properties")
        .keys()
        .cloned()
        .collect();
    names.sort();
    names
}

/// The flags of a command, by the member each fills.
fn flag_members(command: &clap::Command) -> Vec<String> {
    let mut names: Vec<String> = command
        .get_arguments()
        .filter(|argument| argument.get_id() != "help")
        .map(|argument| argument.get_id().to_string())
        .collect();
    names.sort();
    names
}

/// The TOML of a JSON object of strings, booleans, arrays and objects (as inline tables).
fn toml_of(value: &Value) -> String {
    let object = value.as_object().expect("an object");
    object
        .iter()
        .map(|(key, value)| format!("{key} = {}\n", support::jose::toml_inline(value)))
        .collect()
}

/// The `client add` arguments for a JSON object, each member as the flag clap made of it.
fn flags_of(command: &clap::Command, value: &Value) -> Vec<String> {
    let mut args = vec!["client-add".to_owned()];
    for (member, value) in value.as_object().expect("an object") {
        let argument = command
            .get_arguments()
            .find(|argument| argument.get_id() == member.as_str())
            .unwrap_or_else(|| panic!("`{member}` has no flag"));
        let flag = format!("--{}", argument.get_long().expect("a long flag"));
        match value {
            Value::Bool(true) => args.push(flag),
            // The default: no flag.
            Value::Bool(false) => {}
            Value::String(text) => args.extend([flag, text.clone()]),
            Value::Object(_) => args.extend([flag, value.to_string()]),
            Value::Array(items) => {
                for item in items {
                    args.extend([flag.clone(), item.as_str().expect("strings").to_owned()]);
                }
            }
            other => panic!("`{member}`: no flag form for {other}"),
        }
    }
    args
}

#[test]
fn every_member_is_a_flag_of_client_add_or_api_add_and_every_flag_a_member() {
    let client = members(&ClientSettings::json_schema());
    assert_eq!(flag_members(&ClientAdd::command()), client);
    // The samples below cover them all, so the next test reads every member.
    let mut sample: Vec<String> = every_member()
        .iter()
        .flat_map(|sample| sample.as_object().unwrap().keys().cloned())
        .collect();
    sample.sort();
    sample.dedup();
    assert_eq!(sample, client, "give every_member() the new member");
    let api = members(&ApiSettings::json_schema());
    assert_eq!(flag_members(&ApiAdd::command()), api);
    assert_eq!(
        api,
        ["id", "jwks", "jwks_uri", "rate_limit", "scopes"],
        "give the API test below the new member"
    );
}

#[test]
fn the_file_the_admin_api_and_client_add_read_a_client_alike() {
    for sample in every_member() {
        let from_json = ClientSettings::from_json(sample.clone()).expect("the admin API reads it");
        let from_flags = ClientAdd::try_parse_from(flags_of(&ClientAdd::command(), &sample))
            .expect("client add reads it")
            .settings;
        assert_eq!(from_flags, from_json);

        let config = Config::from_toml(&format!("{TOP}[[clients]]\n{}", toml_of(&sample)))
            .expect("the configuration file reads it");
        // One check for all: what it makes of the admin API's reading is what the file gives.
        let checked = build_client("", from_json, None, None, &config.scopes).expect("valid");
        assert_eq!(config.clients[0].settings, checked.settings);
        assert_eq!(config.clients[0].keys, checked.keys);
        // And the check kept what was asked: defaults as granted (`a:b` → both permissions).
        let defaults: Vec<&str> = checked
            .settings
            .default_scopes
            .iter()
            .flatten()
            .map(|scope| scope.as_str())
            .collect();
        assert_eq!(defaults, ["a:b:read", "a:b:write", "openid"]);
        assert_eq!(
            serde_json::to_value(&checked.settings).unwrap()["access_token_ttl"],
            "15m"
        );
    }
}

#[test]
fn the_admin_reader_names_the_member_that_is_wrong() {
    for (body, field) in [
        (
            json!({"id": "x", "grants": ["client_credentials", "implicit"]}),
            "grants[1]",
        ),
        (
            json!({"id": "x", "scopes": ["a:b:read", "bad scope"]}),
            "scopes[1]",
        ),
        (
            json!({"id": "x", "access_token_ttl": "soon"}),
            "access_token_ttl",
        ),
        (json!({"id": "x", "self_signup": "yes"}), "self_signup"),
        (json!({"id": "x", "secret": "mine"}), "secret"),
        (
            json!({"id": "x", "secret_hash": "$argon2id$"}),
            "secret_hash",
        ),
        (json!({"id": "x", "colour": "red"}), "colour"),
        (json!(["x"]), ""),
    ] {
        match ClientSettings::from_json(body.clone()) {
            Err(ConfigError::Invalid { field: named, .. }) => {
                assert_eq!(named, field, "{body}");
            }
            other => panic!("{body}: {other:?}"),
        }
    }
}

#[test]
fn the_file_the_admin_api_and_api_add_read_an_api_alike() {
    let sample = json!({
        "id": "https://billing.example.test",
        "scopes": ["b:i:read", "b:p"],
        "rate_limit": "50/s",
    });
    let from_json = ApiSettings::from_json(sample.clone()).expect("the admin API reads it");
    let from_flags = ApiAdd::try_parse_from(flags_of(&ApiAdd::command(), &sample))
        .expect("api add reads it")
        .settings;
    assert_eq!(from_flags, from_json);
    let config = Config::from_toml(&format!(
        "{TOP}[[apis]]\nsecret = \"s\"\n{}",
        toml_of(&sample)
    ))
    .expect("the configuration file reads it");
    let checked = build_api("", from_json, Some(SecretHash::hash("s")), None).expect("valid");
    assert_eq!(config.apis[0].id, checked.id);
    assert_eq!(config.apis[0].scopes, checked.scopes);
    assert_eq!(config.apis[0].rate_limit, checked.rate_limit);
    assert_eq!(
        checked.rate_limit.map(|rate| rate.to_string()).as_deref(),
        Some("50/s")
    );
    // The one check refuses alike wherever the API comes from.
    let no_scopes = Config::from_toml(&format!(
        "{TOP}[[apis]]\nid = \"https://x.test\"\nsecret = \"s\"\n"
    ));
    assert!(
        matches!(&no_scopes, Err(ConfigError::Invalid { field, .. }) if field == "apis[0].scopes"),
        "{no_scopes:?}"
    );
    let admin = ApiSettings::from_json(json!({"id": "https://x.test"})).unwrap();
    assert!(matches!(
        build_api("", admin, Some(SecretHash::hash("s")), None),
        Err(ConfigError::Invalid { field, .. }) if field == "scopes"
    ));
    // An API with keys instead of a secret, read alike from the three.
    for keys in [
        json!({ "jwks": { "keys": [{ "kty": "OKP", "crv": "Ed25519", "x": "x" }] } }),
        json!({ "jwks_uri": "https://billing.example.test/jwks.json" }),
    ] {
        let mut sample = sample.clone();
        sample
            .as_object_mut()
            .unwrap()
            .extend(keys.as_object().unwrap().clone());
        let from_json = ApiSettings::from_json(sample.clone()).expect("the admin API reads it");
        let from_flags = ApiAdd::try_parse_from(flags_of(&ApiAdd::command(), &sample))
            .expect("api add reads it")
            .settings;
        assert_eq!(from_flags, from_json);
        let config = Config::from_toml(&format!("{TOP}[[apis]]\n{}", toml_of(&sample)))
            .expect("the configuration file reads it");
        let checked = build_api("", from_json, None, None).expect("valid");
        assert!(checked.keys.is_some() && checked.secret.is_none());
        assert_eq!(config.apis[0].keys, checked.keys);
    }
    let spaced = Config::from_toml(&format!(
        "{TOP}[[apis]]\nid = \"has space\"\nsecret = \"s\"\nscopes = [\"a:b\"]\n"
    ));
    assert!(
        matches!(&spaced, Err(ConfigError::Invalid { field, .. }) if field == "apis[0].id"),
        "{spaced:?}"
    );
}

#[test]
fn the_file_the_admin_api_and_scope_add_read_a_claim_scope_alike() {
    let schema = members(&ScopeSettings::json_schema());
    assert_eq!(flag_members(&ScopeAdd::command()), schema);
    assert_eq!(
        schema,
        ["access_token", "claim_source", "claims", "name"],
        "give this test the new member"
    );
    let sample = json!({
        "name": "hr:department:read",
        "claims": { "department": "dept", "cost_centre": "costCentre" },
        "access_token": true,
        "claim_source": "hr-directory",
    });
    let from_json = ScopeSettings::from_json(sample.clone()).expect("the admin API reads it");
    // On the command line, one `--claim CLAIM=ATTRIBUTE` per claim.
    let flags = [
        "scope-add",
        "--name",
        "hr:department:read",
        "--claim",
        "department=dept",
        "--claim",
        "cost_centre=costCentre",
        "--access-token",
        "--claim-source",
        "hr-directory",
    ];
    let from_flags = ScopeAdd::try_parse_from(flags)
        .expect("scope add reads it")
        .settings;
    assert_eq!(from_flags, from_json);
    let config = Config::from_toml(&format!(
        "{TOP}[[claim_sources]]\nname = \"hr-directory\"\nurl = \"https://hr.example.test/{{sub}}\"\n[[scopes]]\n{}",
        toml_of(&sample)
    ))
    .expect("the configuration file reads it");
    let checked = build_scope("", from_json, &Defined::default()).expect("valid");
    assert_eq!(config.scopes, std::slice::from_ref(&checked));
    // What the admin API answers is what it reads.
    assert_eq!(
        ScopeSettings::from_json(serde_json::to_value(checked.settings()).unwrap()).unwrap(),
        from_flags
    );
    for refused in [
        vec![
            "scope-add",
            "--name",
            "a:b:read",
            "--claim",
            "c=x",
            "--claim",
            "c=y",
        ],
        vec!["scope-add", "--name", "a:b:read", "--claim", "no-attribute"],
        vec!["scope-add", "--name", "a:b:read", "--claim", "=x"],
    ] {
        assert!(ScopeAdd::try_parse_from(&refused).is_err(), "{refused:?}");
    }
    for (body, field) in [
        (json!({"name": "a:b:read", "claims": {"c": 3}}), "claims.c"),
        (json!({"name": "a:b:read", "claims": ["c"]}), "claims"),
        (
            json!({"name": "a:b:read", "access_token": "yes"}),
            "access_token",
        ),
        (json!({"name": 7}), "name"),
        (json!({"name": "a:b:read", "colour": "red"}), "colour"),
    ] {
        match ScopeSettings::from_json(body.clone()) {
            Err(ConfigError::Invalid { field: named, .. }) => assert_eq!(named, field, "{body}"),
            other => panic!("{body}: {other:?}"),
        }
    }
}
