//! The outbound client's connection pool, against small HTTP/1.1 servers on `127.0.0.1:0`
//! that count the connections they accept: connections are reused, a connection the server
//! closed while it sat idle is never used for a request, and a refused one names its cause.
//! (HTTP/2 over TLS is in `vendor_tls.rs`, with the simulator behind a TLS front.)

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use sipgw::outbound::{self, ExchangeError, HttpsClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// What the test server sends for every request: a short body, no `Connection: close`, so
/// the client keeps the connection.
const ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

/// A server that answers every request on a connection with [`ANSWER`]; with
/// `close_after_one`, it closes each connection after its first answer and reports it.
struct Server {
    /// `http://127.0.0.1:PORT`.
    base: String,
    /// Connections accepted so far.
    accepted: Arc<AtomicUsize>,
    /// One message per connection the server closed.
    closed: mpsc::UnboundedReceiver<()>,
}

impl Server {
    async fn start(close_after_one: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicUsize::new(0));
        let (report, closed) = mpsc::unbounded_channel();
        let count = Arc::clone(&accepted);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let report = report.clone();
                tokio::spawn(serve(stream, close_after_one, report));
            }
        });
        Self {
            base,
            accepted,
            closed,
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// Answers each request head (the client sends GETs without a body) until the peer closes,
/// or after the first one when `close_after_one`.
async fn serve(mut stream: TcpStream, close_after_one: bool, closed: mpsc::UnboundedSender<()>) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let Ok(n) = stream.read(&mut buf).await else {
            return;
        };
        if n == 0 {
            return;
        }
        head.extend_from_slice(&buf[..n]);
        while let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            head.drain(..end + 4);
            if stream.write_all(ANSWER).await.is_err() {
                return;
            }
            if close_after_one {
                drop(stream);
                let _ = closed.send(());
                return;
            }
        }
    }
}

fn client() -> HttpsClient {
    outbound::client(&[], Duration::from_secs(2)).unwrap()
}

async fn get(client: &HttpsClient, url: &str) -> Result<(StatusCode, Bytes), ExchangeError> {
    let request = Request::get(url).body(Full::new(Bytes::new())).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    outbound::exchange(client, request, deadline, 1024).await
}

#[tokio::test]
async fn sequential_requests_share_one_kept_alive_connection() {
    let server = Server::start(false).await;
    let client = client();
    for _ in 0..3 {
        let (status, body) = get(&client, &format!("{}/x", server.base)).await.unwrap();
        assert_eq!(status, StatusCode::OK);
        assert_eq!(&body[..], b"ok");
    }
    assert_eq!(server.accepted(), 1, "the connection was reused");
}

#[tokio::test]
async fn a_connection_the_server_closed_while_idle_is_not_used() {
    let mut server = Server::start(true).await;
    let client = client();
    let url = format!("{}/x", server.base);
    assert_eq!(get(&client, &url).await.unwrap().0, StatusCode::OK);
    // The server has closed the pooled connection: the next request must not fail on it,
    // but go out on a new connection (hyper hands back a request it could not write).
    server.closed.recv().await.unwrap();
    let (status, body) = get(&client, &url).await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&body[..], b"ok");
    assert_eq!(server.accepted(), 2);
}

#[tokio::test]
async fn clones_of_a_client_share_its_connections() {
    let server = Server::start(false).await;
    let first = client();
    let second = first.clone();
    let url = format!("{}/x", server.base);
    assert_eq!(get(&first, &url).await.unwrap().0, StatusCode::OK);
    assert_eq!(get(&second, &url).await.unwrap().0, StatusCode::OK);
    assert_eq!(server.accepted(), 1);
}

#[tokio::test]
async fn a_refused_connection_is_a_connect_error_naming_the_url_and_cause() {
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let error = get(&client(), &format!("http://{addr}/jwks?secret=1"))
        .await
        .unwrap_err();
    let ExchangeError::Connect { target, cause } = &error else {
        panic!("not a connect error: {error}");
    };
    assert_eq!(target, &format!("GET http://{addr}/jwks?…"));
    assert!(cause.contains("tcp connect error"), "{cause}");
    assert!(!error.to_string().contains("secret"), "{error}");
}

#[tokio::test]
async fn an_answer_over_the_size_limit_is_a_transport_error() {
    let server = Server::start(false).await;
    let request = Request::get(format!("{}/x", server.base))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let error = outbound::exchange(&client(), request, deadline, 1)
        .await
        .unwrap_err();
    assert!(matches!(error, ExchangeError::Transport { .. }), "{error}");
}
