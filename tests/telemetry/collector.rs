//! A small OTLP/HTTP collector for the tests: `POST /v1/traces` with an
//! `ExportTraceServiceRequest` in protobuf, decoded and kept.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use tokio::net::TcpListener;

/// One exported span, with the resource it came from.
#[derive(Debug, Clone)]
pub struct Received {
    /// The span as decoded.
    pub span: Span,
    /// The resource's attributes (`service.name`, ...), as strings.
    pub resource: HashMap<String, String>,
}

impl Received {
    /// The span's trace id, as 32 hex digits.
    pub fn trace_id(&self) -> String {
        hex(&self.span.trace_id)
    }

    /// The span's id, as 16 hex digits.
    pub fn span_id(&self) -> String {
        hex(&self.span.span_id)
    }

    /// Its parent's id, as hex; empty for a root span.
    pub fn parent_id(&self) -> String {
        hex(&self.span.parent_span_id)
    }

    /// A string attribute of the span.
    pub fn attribute(&self, key: &str) -> Option<String> {
        self.span
            .attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref()?.value.as_ref())
            .map(text)
    }
}

/// The collector: what it received, request bodies included (the tests scan them for
/// secrets).
#[derive(Clone, Default)]
pub struct Collector {
    /// Every span received, in arrival order.
    spans: Arc<Mutex<Vec<Received>>>,
    /// Every export request's body, as received.
    bodies: Arc<Mutex<Vec<Bytes>>>,
}

impl Collector {
    /// Starts a collector on `127.0.0.1:0`; its base URL is `http://{addr}`.
    pub async fn start() -> (Self, SocketAddr) {
        let collector = Self::default();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let serving = collector.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let collector = serving.clone();
                let service = service_fn(move |request| {
                    let collector = collector.clone();
                    async move { Ok::<_, hyper::Error>(collector.export(request).await) }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        (collector, addr)
    }

    async fn export(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let answer = |status| {
            let mut response = Response::new(Full::new(Bytes::new()));
            *response.status_mut() = status;
            response
        };
        if request.method() != http::Method::POST || request.uri().path() != "/v1/traces" {
            return answer(StatusCode::NOT_FOUND);
        }
        if request.headers()["content-type"] != "application/x-protobuf" {
            return answer(StatusCode::UNSUPPORTED_MEDIA_TYPE);
        }
        let body = request.into_body().collect().await.unwrap().to_bytes();
        let Ok(decoded) = ExportTraceServiceRequest::decode(body.clone()) else {
            return answer(StatusCode::BAD_REQUEST);
        };
        self.bodies.lock().unwrap().push(body);
        let mut spans = self.spans.lock().unwrap();
        for resource_spans in decoded.resource_spans {
            let resource: HashMap<String, String> = resource_spans
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .filter_map(|kv| Some((kv.key.clone(), text(kv.value.as_ref()?.value.as_ref()?))))
                .collect();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    spans.push(Received {
                        span,
                        resource: resource.clone(),
                    });
                }
            }
        }
        // An empty ExportTraceServiceResponse: everything accepted.
        let mut ok = answer(StatusCode::OK);
        ok.headers_mut().insert(
            "content-type",
            http::HeaderValue::from_static("application/x-protobuf"),
        );
        ok
    }

    /// Waits until the spans of trace `trace_id` include every name in `names` (the
    /// gateway exports in batches, on its own schedule), and returns that trace's spans.
    pub async fn trace(&self, trace_id: &str, names: &[&str]) -> Vec<Received> {
        for _ in 0..600 {
            let trace: Vec<Received> = self
                .spans
                .lock()
                .unwrap()
                .iter()
                .filter(|s| s.trace_id() == trace_id)
                .cloned()
                .collect();
            if names
                .iter()
                .all(|n| trace.iter().any(|s| s.span.name == *n))
            {
                return trace;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("trace {trace_id} never held all of {names:?}");
    }

    /// The span named `name` whose `request_id` attribute is `request_id`, once received.
    pub async fn request_span(&self, request_id: &str) -> Received {
        for _ in 0..600 {
            let found = self
                .spans
                .lock()
                .unwrap()
                .iter()
                .find(|s| {
                    s.span.name == "request"
                        && s.attribute("request_id").as_deref() == Some(request_id)
                })
                .cloned();
            if let Some(span) = found {
                return span;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no request span for {request_id}");
    }

    /// Every export body received so far, concatenated.
    pub fn raw(&self) -> Vec<u8> {
        self.bodies
            .lock()
            .unwrap()
            .iter()
            .flat_map(|b| b.to_vec())
            .collect()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn text(value: &Value) -> String {
    match value {
        Value::StringValue(s) => s.clone(),
        Value::IntValue(n) => n.to_string(),
        other => format!("{other:?}"),
    }
}
