//! The `token-service serve` binary with `[telemetry]` on: Prometheus scrapes its own listener
//! (and nothing of it is on the public one), and a request's trace reaches an OTLP/HTTP
//! collector joined to the caller's `traceparent`, with the store operations under it.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message as _;
use support::cluster::{Instance, free_port};
use support::*;

/// An OTLP/HTTP collector on loopback keeping every span it is sent, with its service name.
async fn collector() -> (String, Arc<Mutex<Vec<(String, Span)>>>) {
    let received: Arc<Mutex<Vec<(String, Span)>>> = Arc::default();
    let kept = Arc::clone(&received);
    let app = Router::new().route(
        "/v1/traces",
        post(move |body: Bytes| {
            let kept = Arc::clone(&kept);
            async move {
                let request = ExportTraceServiceRequest::decode(body).unwrap();
                for resource_spans in request.resource_spans {
                    let service = resource_spans
                        .resource
                        .iter()
                        .flat_map(|resource| &resource.attributes)
                        .find(|attribute| attribute.key == "service.name")
                        .and_then(|attribute| attribute.value.as_ref()?.value.clone());
                    let service = match service {
                        Some(AnyValue::StringValue(name)) => name,
                        _ => String::new(),
                    };
                    for scope_spans in resource_spans.scope_spans {
                        for span in scope_spans.spans {
                            kept.lock().unwrap().push((service.clone(), span));
                        }
                    }
                }
                ExportTraceServiceResponse::default().encode_to_vec()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, received)
}

fn attribute<'a>(span: &'a Span, key: &str) -> Option<&'a AnyValue> {
    span.attributes
        .iter()
        .find(|attribute| attribute.key == key)?
        .value
        .as_ref()?
        .value
        .as_ref()
}

fn text_attribute<'a>(span: &'a Span, key: &str) -> Option<&'a str> {
    match attribute(span, key)? {
        AnyValue::StringValue(text) => Some(text),
        _ => None,
    }
}

/// The service's configuration for the tests, on a SQLite file in `dir`, with `telemetry`
/// appended as its `[telemetry]` table.
fn config_file(dir: &std::path::Path, port: u16, telemetry: &str) -> std::path::PathBuf {
    let config = dir.join("config.toml");
    let text = config_text(&format!("http://127.0.0.1:{port}"), "ES256").replace(
        "storage = \"sqlite::memory:\"",
        &format!("storage = \"sqlite://{}/store.db\"", dir.display()),
    );
    std::fs::write(&config, format!("{text}\n[telemetry]\n{telemetry}\n")).unwrap();
    config
}

async fn issue(instance: &Instance, traceparent: Option<&str>) {
    let mut request = reqwest::Client::new()
        .post(format!("{}/token", instance.url))
        .basic_auth("svc-opaque", Some("opaque-secret"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials");
    if let Some(traceparent) = traceparent {
        request = request.header("traceparent", traceparent);
    }
    assert_eq!(request.send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn the_binary_serves_metrics_apart_and_exports_joined_traces() {
    let (collector_url, received) = collector().await;
    let dir = tempfile::tempdir().unwrap();
    let (port, metrics_port) = (free_port(), free_port());
    let config = config_file(
        dir.path(),
        port,
        &format!(
            "metrics_listen = \"127.0.0.1:{metrics_port}\"\notlp_endpoint = \"{collector_url}\""
        ),
    );
    let instance = Instance::start(&config, port).await;

    // A caller already in a trace: the service's spans join it.
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let http = reqwest::Client::new();
    issue(&instance, Some(&format!("00-{trace_id}-{caller_span}-01"))).await;

    let metrics = http
        .get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    let metrics = metrics.text().await.unwrap();
    assert!(
        metrics
            .lines()
            .any(|line| line.starts_with("scopegate_tokens_issued_total{")
                && line.contains("client_id=\"svc-opaque\"")
                && line.ends_with(" 1")),
        "{metrics}"
    );
    let public = http
        .get(format!("{}/metrics", instance.url))
        .send()
        .await
        .unwrap();
    assert_eq!(
        public.status(),
        404,
        "metrics must not be on the public listener"
    );

    // The batch exporter sends within seconds; wait for the request's span, bounded.
    let deadline = Instant::now() + Duration::from_secs(60);
    let trace_bytes = hex(trace_id);
    let request_span = loop {
        let found = received.lock().unwrap().iter().find_map(|(service, span)| {
            (span.trace_id == trace_bytes && span.name == "POST /token")
                .then(|| (service.clone(), span.clone()))
        });
        if let Some(found) = found {
            break found;
        }
        assert!(
            Instant::now() < deadline,
            "no span of the request reached the collector: {}",
            instance.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (service, request_span) = request_span;
    assert_eq!(service, "scopegate-token-service");
    assert_eq!(request_span.parent_span_id, hex(caller_span));
    assert_eq!(request_span.kind, SpanKind::Server as i32);
    assert_eq!(text_attribute(&request_span, "http.route"), Some("/token"));
    assert_eq!(
        attribute(&request_span, "http.response.status_code"),
        Some(&AnyValue::IntValue(200))
    );

    // The store calls of the request, under its span: the client read and the token's write.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let children: Vec<Span> = received
            .lock()
            .unwrap()
            .iter()
            .map(|(_, span)| span.clone())
            .filter(|span| {
                span.trace_id == trace_bytes && span.parent_span_id == request_span.span_id
            })
            .collect();
        let names: Vec<&str> = children.iter().map(|span| span.name.as_str()).collect();
        let store_read = children.iter().find(|span| {
            text_attribute(span, "db.system.name") == Some("sqlite")
                && text_attribute(span, "db.operation.name") == Some("SELECT")
        });
        if let (Some(store_read), true) = (store_read, names.contains(&"group commit tokens")) {
            assert_eq!(store_read.kind, SpanKind::Client as i32);
            assert!(text_attribute(store_read, "db.collection.name").is_some());
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the request's store spans did not arrive under it: {names:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|index| u8::from_str_radix(&text[index..index + 2], 16).unwrap())
        .collect()
}

/// `trace_sample_ratio = 0` starts no trace of its own, yet a caller's sampled trace is kept whole
/// and an unsampled one stays unsampled (ParentBased sampling).
#[tokio::test]
async fn a_zero_sample_ratio_keeps_only_the_traces_callers_sampled() {
    let (collector_url, received) = collector().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = config_file(
        dir.path(),
        port,
        &format!("otlp_endpoint = \"{collector_url}\"\ntrace_sample_ratio = 0.0"),
    );
    let instance = Instance::start(&config, port).await;
    let (sampled, unsampled) = (
        "0af7651916cd43dd8448eb211c80319c",
        "5b8efff798038103d269b633813fc60c",
    );
    issue(&instance, None).await;
    issue(
        &instance,
        Some(&format!("00-{unsampled}-b7ad6b7169203331-00")),
    )
    .await;
    issue(
        &instance,
        Some(&format!("00-{sampled}-b7ad6b7169203331-01")),
    )
    .await;

    // Spans leave in the order they ended: once the sampled request's is in, the two before it
    // would be too, had they been sampled.
    let deadline = Instant::now() + Duration::from_secs(60);
    let sampled_bytes = hex(sampled);
    loop {
        let requests: Vec<Vec<u8>> = received
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, span)| span.name == "POST /token")
            .map(|(_, span)| span.trace_id.clone())
            .collect();
        if requests.contains(&sampled_bytes) {
            assert_eq!(
                requests,
                vec![sampled_bytes],
                "only the caller-sampled request is traced"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the sampled request's span never arrived: {}",
            instance.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
