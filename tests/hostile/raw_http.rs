//! Hand-written HTTP over TCP: HTTP/1.1 bytes no client library would send, and HTTP/2
//! frames below what a client library allows (RFC 9113 §4.1 framing, HPACK literals only).

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::support::PATIENCE;

/// A request that ends every HTTP/1.1 exchange: if the attack left the connection open, the
/// server answers it (404, not audited) and closes; responses come in order, so whatever
/// the server answered before it is everything it took from the attack.
pub const SENTINEL: &str =
    "GET /hostile-sentinel HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";

/// One HTTP/1.1 response as read off the wire.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    /// Header lines, names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The problem `code`, when the body is a problem document.
    pub fn code(&self) -> Option<String> {
        let json: serde_json::Value = serde_json::from_slice(&self.body).ok()?;
        json["code"].as_str().map(str::to_owned)
    }
}

/// Writes `bytes` (then nothing more) and reads until the server closes, within
/// [`PATIENCE`]; a server that neither answers nor closes fails the case as a hang. Write
/// errors are ignored: a server may close before it has read everything.
pub async fn exchange(addr: SocketAddr, bytes: &[u8], case: &str) -> Vec<u8> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    // Read while writing, so an early answer is taken before a reset can discard it.
    let reader = tokio::spawn(async move {
        let mut received = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => return received,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    });
    let _ = write.write_all(bytes).await;
    let _ = write.flush().await;
    let received = tokio::time::timeout(PATIENCE, reader)
        .await
        .unwrap_or_else(|_| panic!("{case}: the server neither answered nor closed (a hang)"))
        .unwrap();
    drop(write);
    received
}

/// Splits what a server sent into responses (bodies framed by `Content-Length`; the
/// server's own answers always carry one). Interim (1xx) responses are kept.
pub fn parse_responses(bytes: &[u8], case: &str) -> Vec<RawResponse> {
    try_parse_responses(bytes).unwrap_or_else(|| {
        panic!(
            "{case}: a truncated or garbled response: {:?}",
            String::from_utf8_lossy(bytes)
        )
    })
}

/// [`parse_responses`], or `None` while the last response is incomplete.
pub fn try_parse_responses(mut bytes: &[u8]) -> Option<Vec<RawResponse>> {
    let mut responses = Vec::new();
    while !bytes.is_empty() {
        let end = find(bytes, b"\r\n\r\n")?;
        let head = std::str::from_utf8(&bytes[..end]).ok()?;
        let mut lines = head.split("\r\n");
        let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let length: usize = match headers.iter().find(|(n, _)| n == "content-length") {
            Some((_, v)) => v.parse().ok()?,
            None => 0,
        };
        let body_start = end + 4;
        let body_end = body_start + length;
        let body = bytes.get(body_start..body_end)?.to_vec();
        responses.push(RawResponse {
            status,
            headers,
            body,
        });
        bytes = &bytes[body_end..];
    }
    Some(responses)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

// ---------------------------------------------------------------------------------------
// HTTP/2

/// Frame types (RFC 9113 §6).
pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const PING: u8 = 0x6;
pub const GOAWAY: u8 = 0x7;
pub const WINDOW_UPDATE: u8 = 0x8;
pub const CONTINUATION: u8 = 0x9;

/// Flags.
pub const END_STREAM: u8 = 0x1;
pub const ACK: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;

/// Error codes (RFC 9113 §7).
pub const PROTOCOL_ERROR: u32 = 0x1;
pub const FLOW_CONTROL_ERROR: u32 = 0x3;
pub const STREAM_CLOSED: u32 = 0x5;
pub const REFUSED_STREAM: u32 = 0x7;
pub const CANCEL: u32 = 0x8;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// One frame.
#[derive(Debug, Clone)]
pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

impl Frame {
    /// The error code of a RST_STREAM, or of a GOAWAY (after its last stream id).
    pub fn error_code(&self) -> Option<u32> {
        let at = match self.kind {
            RST_STREAM => 0,
            GOAWAY => 4,
            _ => return None,
        };
        let bytes: [u8; 4] = self.payload.get(at..at + 4)?.try_into().ok()?;
        Some(u32::from_be_bytes(bytes))
    }
}

/// Encodes one frame.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap();
    assert!(len < 1 << 24);
    let mut out = Vec::with_capacity(9 + payload.len());
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// An HPACK integer with an `n`-bit prefix whose high bits are `first` (RFC 7541 §5.1).
fn hpack_int(out: &mut Vec<u8>, value: usize, n: u32, first: u8) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(first | value as u8);
        return;
    }
    out.push(first | max as u8);
    let mut rest = value - max;
    while rest >= 128 {
        out.push((rest % 128) as u8 | 0x80);
        rest /= 128;
    }
    out.push(rest as u8);
}

/// A header block of "literal without indexing, new name" fields (RFC 7541 §6.2.2): no
/// table state, so every block stands on its own.
pub fn header_block(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.push(0x00);
        hpack_int(&mut out, name.len(), 7, 0);
        out.extend_from_slice(name.as_bytes());
        hpack_int(&mut out, value.len(), 7, 0);
        out.extend_from_slice(value.as_bytes());
    }
    out
}

/// The header block of a POST to the endpoint for `agent`, with `token` when given.
pub fn change_headers(agent: &str, token: Option<&str>, extra: &[(&str, &str)]) -> Vec<u8> {
    let path = format!("/v1/agents/{agent}/sip-phone-password");
    let bearer = token.map(|t| format!("Bearer {t}"));
    let mut fields = vec![
        (":method", "POST"),
        (":scheme", "http"),
        (":path", path.as_str()),
        (":authority", "127.0.0.1"),
        ("content-type", "application/json"),
    ];
    if let Some(bearer) = &bearer {
        fields.push(("authorization", bearer.as_str()));
    }
    fields.extend_from_slice(extra);
    header_block(&fields)
}

/// A raw HTTP/2 connection (h2c by prior knowledge), past the settings exchange.
pub struct H2 {
    read: tokio::net::tcp::OwnedReadHalf,
    pub write: tokio::net::tcp::OwnedWriteHalf,
    buffer: Vec<u8>,
    /// Whether the server closed the connection.
    pub closed: bool,
}

impl H2 {
    /// Connects, sends the preface and empty SETTINGS, waits for the server's SETTINGS and
    /// acknowledges them.
    pub async fn connect(addr: SocketAddr) -> Self {
        let (read, mut write) = TcpStream::connect(addr).await.unwrap().into_split();
        write.write_all(PREFACE).await.unwrap();
        write.write_all(&frame(SETTINGS, 0, 0, &[])).await.unwrap();
        let mut h2 = Self {
            read,
            write,
            buffer: Vec::new(),
            closed: false,
        };
        h2.until("the server's SETTINGS", |f| {
            f.kind == SETTINGS && f.flags & ACK == 0
        })
        .await
        .expect("the server sends its SETTINGS");
        h2.send(&frame(SETTINGS, ACK, 0, &[])).await;
        h2
    }

    /// Writes bytes; a server that already closed is not an error here (the frames read
    /// say what happened).
    pub async fn send(&mut self, bytes: &[u8]) -> bool {
        self.write.write_all(bytes).await.is_ok()
    }

    /// The next frame, or `None` once the server closed. Fails the case after
    /// [`PATIENCE`] without one.
    pub async fn next(&mut self, case: &str) -> Option<Frame> {
        next_frame(&mut self.read, &mut self.buffer, &mut self.closed, case).await
    }

    /// Writes `bytes` (a flood) while reading what the server sends, then a PING, and reads
    /// until its ACK or until the server closes. Returns every frame read (the ACK not
    /// included) and whether the ACK came.
    pub async fn flood(&mut self, bytes: &[u8], case: &str) -> (Vec<Frame>, bool) {
        const OPAQUE: [u8; 8] = *b"hostile!";
        let write = &mut self.write;
        let writing = async move {
            write.write_all(bytes).await.is_ok()
                && write.write_all(&frame(PING, 0, 0, &OPAQUE)).await.is_ok()
        };
        let (read, buffer, closed) = (&mut self.read, &mut self.buffer, &mut self.closed);
        let reading = async move {
            let mut frames = Vec::new();
            while let Some(frame) = next_frame(read, buffer, closed, case).await {
                if frame.kind == PING && frame.flags & ACK != 0 && frame.payload == OPAQUE {
                    return (frames, true);
                }
                frames.push(frame);
            }
            (frames, false)
        };
        let (_, read) = tokio::join!(writing, reading);
        read
    }

    /// Reads frames until one satisfies `done` (returned; the frames before it are
    /// dropped), or the server closes (`None`).
    pub async fn until(&mut self, case: &str, done: impl Fn(&Frame) -> bool) -> Option<Frame> {
        while let Some(frame) = self.next(case).await {
            if done(&frame) {
                return Some(frame);
            }
        }
        None
    }
}

/// Reads one frame from `read` through `buffer`; `None` once the peer closed.
async fn next_frame(
    read: &mut tokio::net::tcp::OwnedReadHalf,
    buffer: &mut Vec<u8>,
    closed: &mut bool,
    case: &str,
) -> Option<Frame> {
    loop {
        if buffer.len() >= 9 {
            let len = u32::from_be_bytes([0, buffer[0], buffer[1], buffer[2]]) as usize;
            if buffer.len() >= 9 + len {
                let bytes: Vec<u8> = buffer.drain(..9 + len).collect();
                return Some(Frame {
                    kind: bytes[3],
                    flags: bytes[4],
                    stream: u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]])
                        & 0x7fff_ffff,
                    payload: bytes[9..].to_vec(),
                });
            }
        }
        if *closed {
            return None;
        }
        let mut buf = [0u8; 16384];
        let n = tokio::time::timeout(PATIENCE, read.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("{case}: the server went silent (a hang)"));
        match n {
            Ok(0) | Err(_) => *closed = true,
            Ok(n) => buffer.extend_from_slice(&buf[..n]),
        }
    }
}
