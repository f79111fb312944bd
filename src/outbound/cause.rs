//! What an outbound request's failure says: the target (`METHOD URL`, without credentials
//! or query) and the whole `source()` chain of the error, so that a refused connection, a
//! DNS failure, an untrusted certificate and `https://` sent to a plain-HTTP port each read
//! differently. hyper-util's own top-level text (`client error (Connect)`) says none of
//! that and is left out.

use std::error::Error;
use std::fmt::Write as _;

use http::Uri;

/// Most links of a chain rendered; real chains hold three or four.
const MAX_LINKS: usize = 8;
/// Longest rendered chain: an error text comes from a library and may quote a peer.
const MAX_CHARS: usize = 512;

/// `METHOD URL` for a log line or an error message. The URL keeps its scheme, host, port
/// and path; user information and the query are left out, since either could hold a
/// credential (the URLs sipgw calls hold none, but the config could give one).
pub fn target(method: &http::Method, uri: &Uri) -> String {
    format!("{method} {}", safe_url(uri))
}

/// `uri` without user information or query (a query is shown as `?…`).
pub fn safe_url(uri: &Uri) -> String {
    let mut out = String::new();
    if let Some(scheme) = uri.scheme_str() {
        let _ = write!(out, "{scheme}://");
    }
    if let Some(authority) = uri.authority() {
        let host_port = authority
            .as_str()
            .rsplit_once('@')
            .map_or(authority.as_str(), |(_, host)| host);
        out.push_str(host_port);
    }
    out.push_str(uri.path());
    if uri.query().is_some() {
        out.push_str("?…");
    }
    out
}

/// The cause chain of `error`, outermost first, joined by `: `. A link whose text the
/// previous one already ends with is skipped (wrappers that repeat their cause), and a
/// rustls error is marked as the TLS handshake's, with a hint when the peer did not speak
/// TLS at all.
pub fn chain(error: &(dyn Error + 'static)) -> String {
    let mut links: Vec<String> = Vec::new();
    let mut next = Some(error);
    while let Some(link) = next.take() {
        next = link.source();
        if link.is::<hyper_util::client::legacy::Error>() && next.is_some() {
            continue; // "client error (Connect)": the kind, said better by its causes
        }
        let text = describe_link(link);
        if links.last().is_some_and(|last| last.ends_with(&text)) {
            continue;
        }
        links.push(text);
        if links.len() == MAX_LINKS {
            break;
        }
    }
    let mut rendered = links.join(": ");
    if rendered.len() > MAX_CHARS {
        let mut cut = MAX_CHARS;
        while !rendered.is_char_boundary(cut) {
            cut -= 1;
        }
        rendered.truncate(cut);
        rendered.push('…');
    }
    rendered
}

/// One link's text; a TLS failure (a rustls error, or an I/O error carrying one, as
/// tokio-rustls reports it) is named as the handshake's.
fn describe_link(link: &(dyn Error + 'static)) -> String {
    let Some(tls) = rustls_error(link) else {
        return link.to_string();
    };
    let hint = match tls {
        rustls::Error::InvalidMessage(_) => {
            " (the peer does not speak TLS: is it a plain-HTTP port?)"
        }
        _ => "",
    };
    format!("TLS handshake: {tls}{hint}")
}

/// The rustls error `link` is or carries: hyper-rustls wraps tokio-rustls's I/O error
/// (which carries the rustls error) in another I/O error, so wrappers are unwrapped.
fn rustls_error<'a>(link: &'a (dyn Error + 'static)) -> Option<&'a rustls::Error> {
    let mut current: &(dyn Error + 'static) = link;
    for _ in 0..MAX_LINKS {
        if let Some(tls) = current.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        current = current.downcast_ref::<std::io::Error>()?.get_ref()?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error with a fixed text and an optional cause, to build chains.
    #[derive(Debug)]
    struct Link(&'static str, Option<Box<dyn Error + Send + Sync>>);

    impl std::fmt::Display for Link {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl Error for Link {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            self.1.as_ref().map(|e| &**e as _)
        }
    }

    #[test]
    fn a_chain_reads_outermost_first() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let error = Link("tcp connect error", Some(Box::new(refused)));
        assert_eq!(chain(&error), "tcp connect error: connection refused");
    }

    #[test]
    fn a_link_repeating_its_cause_is_said_once() {
        let error = Link(
            "dns error: no such host",
            Some(Box::new(Link("no such host", None))),
        );
        assert_eq!(chain(&error), "dns error: no such host");
    }

    #[test]
    fn a_tls_failure_is_named_with_the_verifiers_reason() {
        let tls = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, tls);
        assert_eq!(
            chain(&io),
            "TLS handshake: invalid peer certificate: UnknownIssuer"
        );
        let plain = rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType);
        // hyper-rustls wraps tokio-rustls's I/O error in one more.
        let io = std::io::Error::other(std::io::Error::new(std::io::ErrorKind::InvalidData, plain));
        assert!(
            chain(&io).ends_with("(the peer does not speak TLS: is it a plain-HTTP port?)"),
            "{}",
            chain(&io)
        );
    }

    #[test]
    fn a_long_chain_is_cut() {
        let long: &'static str = "x".repeat(2 * MAX_CHARS).leak();
        let rendered = chain(&Link(long, None));
        assert!(
            rendered.chars().count() <= MAX_CHARS + 1,
            "{}",
            rendered.len()
        );
        assert!(rendered.ends_with('…'));
    }

    #[test]
    fn a_target_never_shows_credentials_or_the_query() {
        let uri: Uri = "https://user:pw@idp.example:8443/jwks?token=abc"
            .parse()
            .unwrap();
        assert_eq!(
            target(&http::Method::GET, &uri),
            "GET https://idp.example:8443/jwks?…"
        );
    }
}
