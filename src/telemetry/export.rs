//! OTLP/HTTP export of the request spans: the tracer provider, its batch processor, and
//! the HTTP client it posts through.
//!
//! Spans are queued in memory (at most `OTEL_BSP_MAX_QUEUE_SIZE`, 2048 by default) and
//! posted in batches by the SDK's own thread; when the queue is full new spans are dropped.
//! A slow or dead collector therefore never holds up a request or grows the process: it
//! costs only the spans it does not get.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::{HttpClient, HttpError};
use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{BatchSpanProcessor, SdkTracer, SdkTracerProvider};
use tokio::runtime::Handle;

use super::config::TelemetryConfig;
use crate::config_key::{InvalidKey, invalid};
use crate::outbound::{self, HttpsClient};

/// How long one export may take, connection included; the SDK retries within it.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the last export at shutdown may take before the process ends anyway.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// A collector's answer is a small protobuf; anything longer is cut off.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// The `service.name` resource attribute.
const SERVICE_NAME: &str = "sipgw";

/// Span export to an OTLP/HTTP collector, while `[telemetry] otlp_endpoint` is set.
pub struct Traces {
    /// Owns the batch processor and its thread; shut down to flush.
    provider: SdkTracerProvider,
}

impl Traces {
    /// Starts export to `config`'s collector, or `None` when export is off. `instance`
    /// (`audit.instance`) names the replica (`service.instance.id`). Call it inside the
    /// Tokio runtime: exports run on it.
    pub fn start(config: &TelemetryConfig, instance: &str) -> Result<Option<Self>, InvalidKey> {
        let Some(url) = &config.traces_url else {
            return Ok(None);
        };
        let key = "telemetry.otlp_endpoint";
        let http = outbound::client(&[], EXPORT_TIMEOUT)
            .map_err(|e| invalid(key, format!("TLS set-up failed: {e}")))?;
        let client = CollectorClient {
            http,
            runtime: Handle::current(),
        };
        let exporter = SpanExporter::builder()
            .with_http()
            .with_http_client(client)
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(url.as_str())
            .with_timeout(EXPORT_TIMEOUT)
            .build()
            .map_err(|e| invalid(key, format!("cannot set up the exporter: {e}")))?;
        let resource = Resource::builder()
            .with_service_name(SERVICE_NAME)
            .with_attributes([
                KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
                KeyValue::new("service.instance.id", instance.to_owned()),
            ])
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(BatchSpanProcessor::builder(exporter).build())
            .with_resource(resource)
            .build();
        Ok(Some(Self { provider }))
    }

    /// The tracer the `tracing` bridge records spans with.
    pub(super) fn tracer(&self) -> SdkTracer {
        self.provider.tracer(SERVICE_NAME)
    }

    /// Exports what is queued (waiting at most a few seconds for the collector) and stops
    /// the export thread. Runs off the runtime's workers: the SDK blocks while it flushes.
    pub async fn shutdown(self) {
        let provider = self.provider;
        let flushed =
            tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT))
                .await;
        if let Ok(Err(error)) = flushed {
            tracing::warn!(%error, "traces not all exported at shutdown");
        }
    }
}

/// Posts the exporter's requests through the pooled client of [`crate::outbound`] (rustls,
/// the Mozilla roots): no second HTTP or TLS stack. The SDK's export thread is not a Tokio
/// thread, so each request runs as a task on the runtime and the thread awaits its result.
#[derive(Debug)]
struct CollectorClient {
    /// Keep-alive pool to the collector.
    http: HttpsClient,
    /// The runtime the requests run on.
    runtime: Handle,
}

#[async_trait::async_trait]
impl HttpClient for CollectorClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let http = self.http.clone();
        let request = request.map(Full::new);
        let exchange = self.runtime.spawn(async move {
            let deadline = tokio::time::Instant::now() + EXPORT_TIMEOUT;
            outbound::exchange(&http, request, deadline, MAX_ANSWER_BYTES).await
        });
        let (status, body) = exchange.await??;
        Ok(Response::builder().status(status).body(body)?)
    }
}
