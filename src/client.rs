//! A minimal SSE client over plain HTTP/1.1, enough to follow a view: used by
//! `viewcast tail`, the tests and the benchmarks.

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    pub event: String,
    pub id: Option<String>,
    pub data: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("HTTP {status}: {body}")]
    Status { status: u16, body: String },
    #[error("malformed response: {0}")]
    Protocol(String),
}

/// `chunk_left` while the CRLF after a chunk's data is still to be read.
const AFTER_CHUNK: usize = usize::MAX;

pub struct SseClient {
    stream: TcpStream,
    buf: BytesMut,
    chunked: bool,
    /// Remaining bytes of the current chunk.
    chunk_left: usize,
    body: BytesMut,
    /// How much of `body` has been searched for the end of an event.
    scanned: usize,
}

impl SseClient {
    /// Opens `GET path` on `addr` (`host:port`) and reads the response head.
    pub async fn connect(addr: &str, path: &str) -> Result<SseClient, ClientError> {
        Self::connect_from(addr, path, None).await
    }

    /// As [`SseClient::connect`], resuming after the event with id `last_event_id`.
    pub async fn connect_from(
        addr: &str,
        path: &str,
        last_event_id: Option<&str>,
    ) -> Result<SseClient, ClientError> {
        let mut stream = TcpStream::connect(addr).await?;
        let resume = last_event_id
            .map(|id| format!("Last-Event-ID: {id}\r\n"))
            .unwrap_or_default();
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n{resume}\r\n"
        );
        stream.write_all(req.as_bytes()).await?;
        let mut c = SseClient {
            stream,
            buf: BytesMut::new(),
            chunked: false,
            chunk_left: 0,
            body: BytesMut::new(),
            scanned: 0,
        };
        let head = loop {
            if let Some(i) = c.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&c.buf[..i]).into_owned();
                c.buf.advance(i + 4);
                break head;
            }
            if c.stream.read_buf(&mut c.buf).await? == 0 {
                return Err(ClientError::Protocol(
                    "connection closed before the response head".into(),
                ));
            }
        };
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| ClientError::Protocol(head.clone()))?;
        c.chunked = head.lines().any(|l| {
            l.to_ascii_lowercase().starts_with("transfer-encoding:")
                && l.to_ascii_lowercase().contains("chunked")
        });
        if status != 200 {
            // Read the whole error body: Content-Length bytes, or to the end of
            // the chunks, giving up after a short wait.
            let length = head.lines().find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.trim()
                    .eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse::<usize>().ok())?
            });
            let mut body = Vec::new();
            while length.is_none_or(|n| body.len() < n) {
                match tokio::time::timeout(std::time::Duration::from_secs(2), c.read_body()).await {
                    Ok(Ok(Some(bytes))) => body.extend_from_slice(&bytes),
                    _ => break,
                }
            }
            return Err(ClientError::Status {
                status,
                body: String::from_utf8_lossy(&body).into_owned(),
            });
        }
        Ok(c)
    }

    /// Reads more body bytes (de-chunked); `None` at the end of the body.
    async fn read_body(&mut self) -> Result<Option<BytesMut>, ClientError> {
        loop {
            if !self.chunked {
                if !self.buf.is_empty() {
                    return Ok(Some(self.buf.split()));
                }
            } else if self.chunk_left == AFTER_CHUNK {
                // The CRLF that ends a chunk's data.
                if self.buf.len() >= 2 {
                    self.buf.advance(2);
                    self.chunk_left = 0;
                    continue;
                }
            } else if self.chunk_left > 0 && !self.buf.is_empty() {
                let n = self.chunk_left.min(self.buf.len());
                self.chunk_left -= n;
                let out = self.buf.split_to(n);
                if self.chunk_left == 0 {
                    self.chunk_left = AFTER_CHUNK;
                }
                return Ok(Some(out));
            } else if self.chunk_left == 0 {
                if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                    let line = String::from_utf8_lossy(&self.buf[..i]).into_owned();
                    self.buf.advance(i + 2);
                    let size =
                        usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
                            .map_err(|_| {
                                ClientError::Protocol(format!("bad chunk size {line:?}"))
                            })?;
                    if size == 0 {
                        return Ok(None);
                    }
                    self.chunk_left = size;
                    continue;
                }
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Ok(None);
            }
        }
    }

    /// The next event; `None` when the server closes the stream.
    pub async fn next_event(&mut self) -> Result<Option<SseEvent>, ClientError> {
        loop {
            // Resume the search where the last one stopped: one large event
            // arrives in many reads, and rescanning it each time is quadratic.
            let from = self.scanned.saturating_sub(1);
            if let Some(i) = self.body[from..]
                .windows(2)
                .position(|w| w == b"\n\n")
                .map(|i| i + from)
            {
                let block = String::from_utf8_lossy(&self.body[..i]).into_owned();
                self.body.advance(i + 2);
                self.scanned = 0;
                let mut ev = SseEvent {
                    event: "message".into(),
                    id: None,
                    data: String::new(),
                };
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event: ") {
                        ev.event = v.to_string();
                    } else if let Some(v) = line.strip_prefix("id: ") {
                        ev.id = Some(v.to_string());
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        if !ev.data.is_empty() {
                            ev.data.push('\n');
                        }
                        ev.data.push_str(v);
                    }
                }
                return Ok(Some(ev));
            }
            self.scanned = self.body.len();
            match self.read_body().await? {
                Some(bytes) => self.body.extend_from_slice(&bytes),
                None => return Ok(None),
            }
        }
    }
}

/// `GET path` and the whole body as a string, with the status.
pub async fn get(addr: &str, path: &str) -> Result<(u16, String), ClientError> {
    let mut stream = TcpStream::connect(addr).await?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| ClientError::Protocol("no response head".into()))?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| ClientError::Protocol(head.to_string()))?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok((status, body))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].strip_prefix("\r\n").unwrap_or(&rest[n..]);
    }
    out
}
