//! The example protected API: routes guarded by `tower-scopegate`, configured from the
//! environment (`ISSUER`, `AUDIENCE`, and optionally the introspection credentials, the
//! credentials to subscribe to the issuer's revocation events,
//! `RESOURCE`, its public URL, to publish RFC 9728 metadata, `EXTERNAL_ORIGIN`, where
//! clients reach it, for DPoP, and `METRICS_LISTEN`, where Prometheus scrapes its metrics). It accepts bearer tokens and DPoP-bound tokens with their
//! proofs (RFC 9449, [`DpopMode::Allowed`]); see its README.
//!
//! Run with: `ISSUER=http://127.0.0.1:8080 AUDIENCE=https://api.example.test cargo run -p example-protected-api`

pub mod delegation;

use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use scopegate_validator::scope::ScopeError;
use scopegate_validator::{Algorithm, BuildError, Validator};
use serde_json::{Value, json};
use tower_scopegate::{
    Authenticated, DpopMode, DpopSettings, InvalidResource, ResourceMetadata, ScopeLayer,
};

/// The API's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `ISSUER`: the token service; its keys and introspection endpoint come from discovery.
    pub issuer: String,
    /// `AUDIENCE`: this API's identifier, which tokens must be issued for.
    pub audience: String,
    /// `INTROSPECTION_CLIENT_ID` / `INTROSPECTION_CLIENT_SECRET`: set both to accept opaque
    /// tokens.
    pub introspection: Option<(String, String)>,
    /// `REVOCATION_EVENTS_CLIENT_ID` / `REVOCATION_EVENTS_CLIENT_SECRET`: set both to subscribe
    /// to the issuer's revocation events (the API's id and secret at the issuer, as for
    /// introspection), so that a revoked JWT is refused about a second after its revocation.
    pub revocation_events: Option<(String, String)>,
    /// `REVOCATION_EVENTS_MAX_BLIND`: seconds the event stream may fail before every token is
    /// answered 503; unset, the validator's default (5 minutes).
    pub revocation_events_max_blind: Option<Duration>,
    /// `LISTEN`, default `127.0.0.1:3000`.
    pub listen: String,
    /// `RESOURCE`: the URL clients call this API at; set it to publish RFC 9728 metadata and
    /// point every challenge to it.
    pub resource: Option<String>,
    /// `EXTERNAL_ORIGIN`: `scheme://host[:port]` (and the path prefix a proxy strips, if any)
    /// as clients reach this API, which DPoP proofs
    /// name (behind a TLS proxy, the proxy's). Default: the origin of `RESOURCE` if set, else
    /// `http://` and `LISTEN`.
    pub external_origin: Option<String>,
    /// `METRICS_LISTEN`: an address and port of its own where Prometheus scrapes `/metrics`
    /// (the validator's and the layer's metrics); unset, no metrics are recorded.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// `DOWNSTREAM_URL` and the `EXCHANGE_*` credentials: serve `GET /delegated`, which calls
    /// another API on the caller's behalf through token exchange ([`delegation`]).
    pub downstream: Option<delegation::Downstream>,
}

impl Config {
    /// Reads the settings through `lookup` (the environment, in `main`).
    ///
    /// # Errors
    /// A message naming the variable that is missing or inconsistent.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let required = |name: &str| {
            lookup(name)
                .filter(|value| !value.is_empty())
                .ok_or_else(|| format!("{name} is required"))
        };
        let introspection = match (
            lookup("INTROSPECTION_CLIENT_ID"),
            lookup("INTROSPECTION_CLIENT_SECRET"),
        ) {
            (Some(id), Some(secret)) => Some((id, secret)),
            (None, None) => None,
            _ => {
                return Err(
                    "set both INTROSPECTION_CLIENT_ID and INTROSPECTION_CLIENT_SECRET, or neither"
                        .to_owned(),
                );
            }
        };
        let revocation_events = match (
            lookup("REVOCATION_EVENTS_CLIENT_ID"),
            lookup("REVOCATION_EVENTS_CLIENT_SECRET"),
        ) {
            (Some(id), Some(secret)) => Some((id, secret)),
            (None, None) => None,
            _ => {
                return Err("set both REVOCATION_EVENTS_CLIENT_ID and \
                            REVOCATION_EVENTS_CLIENT_SECRET, or neither"
                    .to_owned());
            }
        };
        let revocation_events_max_blind = lookup("REVOCATION_EVENTS_MAX_BLIND")
            .map(|seconds| {
                seconds.parse().map(Duration::from_secs).map_err(|_| {
                    "REVOCATION_EVENTS_MAX_BLIND must be a whole number of seconds".to_owned()
                })
            })
            .transpose()?;
        let metrics_listen = lookup("METRICS_LISTEN")
            .filter(|value| !value.is_empty())
            .map(|address| {
                address.parse().map_err(|_| {
                    format!("METRICS_LISTEN must be an address and port like 127.0.0.1:9465, not {address:?}")
                })
            })
            .transpose()?;
        Ok(Self {
            issuer: required("ISSUER")?,
            audience: required("AUDIENCE")?,
            introspection,
            revocation_events,
            revocation_events_max_blind,
            listen: lookup("LISTEN").unwrap_or_else(|| "127.0.0.1:3000".to_owned()),
            resource: lookup("RESOURCE").filter(|value| !value.is_empty()),
            external_origin: lookup("EXTERNAL_ORIGIN").filter(|value| !value.is_empty()),
            metrics_listen,
            downstream: delegation::Downstream::from_lookup(&lookup)?,
        })
    }

    /// Where clients reach this API: `EXTERNAL_ORIGIN`, else the origin of `RESOURCE`, else
    /// `http://` and `LISTEN`.
    #[must_use]
    pub fn origin(&self) -> String {
        if let Some(origin) = &self.external_origin {
            return origin.clone();
        }
        let from_resource = self
            .resource
            .as_deref()
            .and_then(|resource| url::Url::parse(resource).ok())
            .map(|url| url.origin().ascii_serialization());
        from_resource.unwrap_or_else(|| format!("http://{}", self.listen))
    }

    /// DPoP for the routes (RFC 9449): bearer tokens stay accepted for tokens bound to no key,
    /// DPoP-bound tokens need a proof made for [`origin`](Self::origin) and the request.
    ///
    /// # Errors
    /// An origin that is not `https://host[:port]` (`http` on loopback), named
    /// `external_origin`: set `EXTERNAL_ORIGIN` when listening on a non-loopback address.
    pub fn dpop(&self) -> Result<DpopSettings, BuildError> {
        Ok(DpopSettings::new(&self.origin())?.mode(DpopMode::Allowed))
    }

    /// The validator for these settings: any asymmetric algorithm the issuer's keys allow.
    /// With revocation events, its subscription starts here, on the current tokio runtime.
    ///
    /// # Errors
    /// An invalid issuer URL, empty credentials, a `REVOCATION_EVENTS_MAX_BLIND` out of
    /// bounds, or revocation events outside a tokio runtime.
    pub fn validator(&self) -> Result<Validator, BuildError> {
        let mut builder = Validator::builder()
            .issuer(&self.issuer)
            .audience(&self.audience)
            .algorithms(Algorithm::ALL);
        if let Some((id, secret)) = &self.introspection {
            builder = builder.introspection(id, secret);
        }
        if let Some((id, secret)) = &self.revocation_events {
            builder = builder.revocation_events(id, secret);
        }
        if let Some(max_blind) = self.revocation_events_max_blind {
            builder = builder.revocation_events_max_blind(max_blind);
        }
        builder.build()
    }

    /// The RFC 9728 metadata to publish, when `RESOURCE` is set.
    ///
    /// # Errors
    /// A `RESOURCE` that is not an https URL (http on loopback) without query or fragment.
    pub fn metadata(
        &self,
        validator: &Validator,
    ) -> Result<Option<ResourceMetadata>, InvalidResource> {
        self.resource
            .as_deref()
            .map(|resource| {
                ResourceMetadata::new(resource, validator)
                    .map(|metadata| metadata.resource_name("Scopegate example API"))
            })
            .transpose()
    }
}

/// The routes: `GET /public` open; `GET|PUT|DELETE /profile` need
/// `akamai:social_profile:read|write|delete`; `GET /me` needs any valid token. Bearer tokens
/// only (a DPoP-bound one is refused as a bearer token): [`app_with`] adds DPoP.
///
/// # Errors
/// Never for these fixed scopes; the signature shows where a bad scope string would fail —
/// at start-up.
pub fn app(validator: &Validator) -> Result<Router, ScopeError> {
    app_with(validator, None, None)
}

/// [`app`], publishing `metadata` at its well-known path, every route described by it.
///
/// # Errors
/// As [`app`].
pub fn app_described(
    validator: &Validator,
    metadata: &ResourceMetadata,
) -> Result<Router, ScopeError> {
    app_with(validator, Some(metadata), None)
}

/// [`app`] with RFC 9728 metadata when given (published, and named by every challenge) and
/// DPoP when given (every protected route accepts DPoP-bound tokens with their proofs).
///
/// # Errors
/// As [`app`].
pub fn app_with(
    validator: &Validator,
    metadata: Option<&ResourceMetadata>,
    dpop: Option<&DpopSettings>,
) -> Result<Router, ScopeError> {
    let routes = routes(validator, metadata, dpop)?;
    Ok(match metadata {
        Some(metadata) => routes.merge(metadata.router()),
        None => routes,
    })
}

fn routes(
    validator: &Validator,
    metadata: Option<&ResourceMetadata>,
    dpop: Option<&DpopSettings>,
) -> Result<Router, ScopeError> {
    // One settings value for every route: they share its replay cache.
    let described = |mut layer: ScopeLayer| {
        if let Some(metadata) = metadata {
            layer = layer.described_by(metadata);
        }
        if let Some(dpop) = dpop {
            layer = layer.dpop(dpop.clone());
        }
        layer
    };
    Ok(Router::new()
        .route("/public", get(public))
        .route(
            "/profile",
            get(read_profile)
                .put(write_profile)
                .delete(delete_profile)
                .route_layer(described(ScopeLayer::method_derived(
                    validator,
                    "akamai:social_profile",
                )?)),
        )
        .route(
            "/me",
            get(me).route_layer(described(ScopeLayer::any_valid_token(validator))),
        ))
}

async fn public() -> Json<Value> {
    Json(json!({ "message": "anyone may read this" }))
}

async fn read_profile(who: Authenticated) -> Json<Value> {
    Json(json!({ "sub": who.subject(), "profile": { "nickname": "jane", "locale": "en" } }))
}

async fn write_profile(who: Authenticated, Json(profile): Json<Value>) -> Json<Value> {
    Json(json!({ "sub": who.subject(), "profile": profile, "updated": true }))
}

async fn delete_profile(_: Authenticated) -> StatusCode {
    StatusCode::NO_CONTENT
}

async fn me(who: Authenticated) -> Json<Value> {
    let scopes: Vec<&str> = who.scopes().iter().map(|scope| scope.as_str()).collect();
    // `actors`: who calls on the subject's behalf (RFC 8693 `act`), the caller first.
    Json(json!({
        "sub": who.subject(),
        "client_id": who.client_id(),
        "scopes": scopes,
        "actors": who.principal().actors(),
    }))
}

/// Runs the API as its binary does: configured from the environment, serving until Ctrl-C.
///
/// # Errors
/// A message naming the setting that is wrong, or the address that cannot be listened on.
pub async fn serve_from_env() -> Result<(), String> {
    let config = Config::from_lookup(|name| std::env::var(name).ok())?;
    // Before the validator and the layers are built: they take their metric handles then.
    if let Some(address) = config.metrics_listen {
        serve_metrics(address)?;
    }
    let validator = config.validator().map_err(|error| error.to_string())?;
    // Fetch the issuer's keys now so the first request does not wait; a failure here is not
    // fatal (the issuer may start later), requests answer 503 until it is reachable.
    if let Err(error) = validator.refresh_keys().await {
        tracing::warn!(%error, "could not fetch the issuer's keys yet");
    }
    let metadata = config
        .metadata(&validator)
        .map_err(|error| error.to_string())?;
    let dpop = config.dpop().map_err(|error| error.to_string())?;
    let mut app =
        app_with(&validator, metadata.as_ref(), Some(&dpop)).map_err(|error| error.to_string())?;
    if let Some(downstream) = config.downstream.clone() {
        let delegating = delegation::routes(&validator, &config.issuer, downstream)
            .map_err(|error| error.to_string())?;
        app = app.merge(delegating);
    }
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .map_err(|error| format!("cannot listen on {}: {error}", config.listen))?;
    tracing::info!(
        listen = %config.listen,
        issuer = %config.issuer,
        dpop_origin = %dpop.origin().as_str(),
        revocation_events = config.revocation_events.is_some(),
        "protected API ready"
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(|error| error.to_string())
}

/// Installs the Prometheus exporter, serving `/metrics` on `address` (a listener of its own,
/// not the API's).
fn serve_metrics(address: std::net::SocketAddr) -> Result<(), String> {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    const SECONDS: [f64; 12] = [
        0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
    ];
    PrometheusBuilder::new()
        .with_http_listener(address)
        .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), &SECONDS)
        .and_then(PrometheusBuilder::install)
        .map_err(|error| format!("cannot serve metrics on {address}: {error}"))?;
    tracing::info!(%address, "metrics at /metrics");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An environment of `pairs` (the example's modules' tests share it).
    pub(crate) fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        move |name| {
            pairs
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.clone())
        }
    }

    #[test]
    fn metrics_listen_is_an_address_or_refused_by_name() {
        let base = [("ISSUER", "http://127.0.0.1:8080"), ("AUDIENCE", "api")];
        let with = |value: &str| {
            let mut pairs = base.to_vec();
            pairs.push(("METRICS_LISTEN", value));
            Config::from_lookup(lookup(&pairs))
        };
        assert_eq!(
            with("127.0.0.1:9465").unwrap().metrics_listen,
            Some("127.0.0.1:9465".parse().unwrap())
        );
        assert_eq!(with("").unwrap().metrics_listen, None);
        let refused = with("localhost").unwrap_err();
        assert!(refused.contains("METRICS_LISTEN"), "{refused}");
        assert_eq!(
            Config::from_lookup(lookup(&base)).unwrap().metrics_listen,
            None
        );
    }

    #[test]
    fn settings_come_from_the_environment_with_defaults() {
        let config = Config::from_lookup(lookup(&[
            ("ISSUER", "http://127.0.0.1:8080"),
            ("AUDIENCE", "api"),
        ]))
        .unwrap();
        assert_eq!(config.listen, "127.0.0.1:3000");
        assert_eq!(config.introspection, None);
        assert_eq!(config.revocation_events, None);
        config.validator().unwrap();
        assert_eq!(config.origin(), "http://127.0.0.1:3000");
        assert_eq!(
            config.dpop().unwrap().origin().as_str(),
            "http://127.0.0.1:3000"
        );
    }

    #[test]
    fn the_dpop_origin_is_configured_or_derived_and_checked_at_start() {
        let base = [("ISSUER", "http://127.0.0.1:8080"), ("AUDIENCE", "api")];
        let with = |extra: &[(&str, &str)]| {
            let pairs: Vec<(&str, &str)> = base.iter().chain(extra).copied().collect();
            Config::from_lookup(lookup(&pairs)).unwrap()
        };
        let resource = with(&[("RESOURCE", "https://api.example.test/v1")]);
        assert_eq!(resource.origin(), "https://api.example.test");
        let explicit = with(&[
            ("RESOURCE", "https://api.example.test/v1"),
            ("EXTERNAL_ORIGIN", "https://edge.example.test"),
        ]);
        assert_eq!(
            explicit.dpop().unwrap().origin().as_str(),
            "https://edge.example.test"
        );
        // Listening on every interface: the origin clients use cannot be guessed.
        let public = with(&[("LISTEN", "0.0.0.0:3000")]);
        assert_eq!(public.dpop().unwrap_err().field(), "external_origin");
        // Behind a proxy that strips a prefix, the prefix is part of what clients call.
        let prefixed = with(&[("EXTERNAL_ORIGIN", "https://edge.example.test/api")]);
        assert_eq!(
            prefixed.dpop().unwrap().origin().as_str(),
            "https://edge.example.test/api"
        );
        let bad = with(&[("EXTERNAL_ORIGIN", "https://api.example.test/?v=1")]);
        assert_eq!(bad.dpop().unwrap_err().field(), "external_origin");
    }

    #[test]
    fn missing_or_half_set_variables_are_named() {
        assert_eq!(
            Config::from_lookup(lookup(&[("AUDIENCE", "api")])).unwrap_err(),
            "ISSUER is required"
        );
        let half = Config::from_lookup(lookup(&[
            ("ISSUER", "http://127.0.0.1:8080"),
            ("AUDIENCE", "api"),
            ("INTROSPECTION_CLIENT_ID", "api"),
        ]));
        assert!(half.unwrap_err().contains("INTROSPECTION_CLIENT_SECRET"));
        let half = Config::from_lookup(lookup(&[
            ("ISSUER", "http://127.0.0.1:8080"),
            ("AUDIENCE", "api"),
            ("REVOCATION_EVENTS_CLIENT_SECRET", "s"),
        ]));
        assert!(half.unwrap_err().contains("REVOCATION_EVENTS_CLIENT_ID"));
        let vague = Config::from_lookup(lookup(&[
            ("ISSUER", "http://127.0.0.1:8080"),
            ("AUDIENCE", "api"),
            ("REVOCATION_EVENTS_MAX_BLIND", "5m"),
        ]));
        assert!(vague.unwrap_err().contains("REVOCATION_EVENTS_MAX_BLIND"));
    }

    #[tokio::test]
    async fn revocation_events_are_opt_in_and_configured_from_the_environment() {
        let config = Config::from_lookup(lookup(&[
            ("ISSUER", "http://127.0.0.1:8080"),
            ("AUDIENCE", "api"),
            ("REVOCATION_EVENTS_CLIENT_ID", "api"),
            ("REVOCATION_EVENTS_CLIENT_SECRET", "api-secret"),
            ("REVOCATION_EVENTS_MAX_BLIND", "120"),
        ]))
        .unwrap();
        assert_eq!(
            config.revocation_events,
            Some(("api".to_owned(), "api-secret".to_owned()))
        );
        assert_eq!(
            config.revocation_events_max_blind,
            Some(Duration::from_secs(120))
        );
        let validator = config.validator().unwrap();
        let streams = validator.revocation_stream_status();
        assert_eq!(streams.len(), 1);
        assert_eq!(streams[0].issuer, "http://127.0.0.1:8080");
        let zero = Config {
            revocation_events_max_blind: Some(Duration::ZERO),
            ..config
        };
        assert_eq!(
            zero.validator().unwrap_err().field(),
            "revocation_events_max_blind"
        );
    }
}
