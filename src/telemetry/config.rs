//! `[telemetry]` as the file holds it, and [`TelemetryConfig`], what it is checked into.

use serde::{Deserialize, Serialize};

use crate::config_key::{InvalidKey, invalid};

/// The path an OTLP/HTTP collector takes traces on, under its base URL.
pub const TRACES_PATH: &str = "/v1/traces";

/// `[telemetry]`: where traces go. Absent (the default), nothing is exported.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetrySection {
    /// The OpenTelemetry collector's base URL (`http://127.0.0.1:4318`); spans are sent to
    /// `{otlp_endpoint}/v1/traces` as OTLP/HTTP protobuf. Unset or empty: no export.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otlp_endpoint: Option<String>,
}

/// The checked `[telemetry]` section.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TelemetryConfig {
    /// The full URL spans are posted to (`{otlp_endpoint}/v1/traces`); `None`: export off.
    pub traces_url: Option<String>,
}

impl TelemetryConfig {
    /// Checks `telemetry.otlp_endpoint`: an `http://` or `https://` URL with a host and no
    /// query. A collector is usually a local agent or sidecar on plain HTTP, so both
    /// schemes are accepted; `https://` trusts the Mozilla roots.
    pub fn from_section(section: &TelemetrySection) -> Result<Self, InvalidKey> {
        let key = "telemetry.otlp_endpoint";
        let Some(raw) = section.otlp_endpoint.as_deref().filter(|s| !s.is_empty()) else {
            return Ok(Self::default());
        };
        // Credentials would be printed by `check-config` and in errors; the value is not
        // echoed here either.
        if raw.contains('@') {
            return Err(invalid(
                key,
                "must not hold credentials (user:password@); a collector's API key goes in \
                 the OTEL_EXPORTER_OTLP_HEADERS environment variable",
            ));
        }
        let uri: http::Uri = raw
            .parse()
            .map_err(|_| invalid(key, format!("is not a URL: {raw:?}")))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) {
            return Err(invalid(
                key,
                format!("must be an http:// or https:// URL, got {raw:?}"),
            ));
        }
        if uri.host().is_none_or(str::is_empty) {
            return Err(invalid(key, format!("has no host: {raw:?}")));
        }
        if uri.query().is_some() {
            return Err(invalid(key, "must not have a query string"));
        }
        if raw.ends_with(TRACES_PATH) || raw.ends_with(&format!("{TRACES_PATH}/")) {
            return Err(invalid(
                key,
                format!("is the collector's base URL; sipgw adds {TRACES_PATH} itself"),
            ));
        }
        let base = raw.trim_end_matches('/');
        Ok(Self {
            traces_url: Some(format!("{base}{TRACES_PATH}")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(endpoint: Option<&str>) -> Result<TelemetryConfig, InvalidKey> {
        TelemetryConfig::from_section(&TelemetrySection {
            otlp_endpoint: endpoint.map(str::to_owned),
        })
    }

    #[test]
    fn absent_or_empty_means_no_export() {
        assert_eq!(check(None).unwrap().traces_url, None);
        assert_eq!(check(Some("")).unwrap().traces_url, None);
    }

    #[test]
    fn the_traces_path_is_added_to_the_base_url() {
        let url = |raw| check(Some(raw)).unwrap().traces_url.unwrap();
        assert_eq!(
            url("http://127.0.0.1:4318"),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            url("https://otel.example/"),
            "https://otel.example/v1/traces"
        );
        assert_eq!(url("http://gw:4318/otlp"), "http://gw:4318/otlp/v1/traces");
    }

    #[test]
    fn bad_endpoints_are_refused_naming_the_key() {
        for (raw, says) in [
            ("127.0.0.1:4318", "http:// or https://"),
            ("grpc://collector:4317", "http:// or https://"),
            ("http://", "not a URL"),
            ("http://collector:4318/?x=1", "query"),
            ("http://collector:4318/v1/traces", "base URL"),
            ("not a url", "not a URL"),
            ("http://user:pw@collector:4318", "credentials"),
        ] {
            let error = check(Some(raw)).expect_err(raw);
            assert_eq!(error.key, "telemetry.otlp_endpoint", "{raw}");
            assert!(error.message.contains(says), "{raw}: {}", error.message);
            assert!(
                !error.message.contains("pw@"),
                "never echoed: {}",
                error.message
            );
        }
    }
}
