//! The floor the SDK is measured against: a bare HTTP/1.1 client, one keep-alive connection per
//! worker, a fixed bearer token, no retries, no parsing beyond the framing of the response.
//!
//! It is written directly on a TCP stream because it must cost as little as a client possibly
//! can: whatever the SDK spends above it (connection pool, request pipeline, token cache, typed
//! parsing) shows up as the overhead ratio. It speaks plain `http://` only, which is all the
//! loopback sandbox offers.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;
use url::Url;

/// Largest response head (status line and headers) accepted.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Largest response body accepted: far above any FHIR page the workloads ask for.
const MAX_BODY_BYTES: usize = 256 * 1024 * 1024;
/// Read buffer of a connection.
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// Where the floor sends its requests: one resolved address and the base path.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    addr: SocketAddr,
    host_header: String,
    base_path: String,
}

impl Endpoint {
    /// Resolves the host of a plain `http://` FHIR base URL once, so that no request of the
    /// measurement pays for name resolution.
    pub(crate) async fn resolve(base: &Url) -> anyhow::Result<Self> {
        if base.scheme() != "http" {
            bail!(
                "the floor clients speak plain HTTP/1.1 only, and {base} is {}: pass --clients sdk,reqwest-bytes,reqwest-json for this server",
                base.scheme()
            );
        }
        let host = base
            .host_str()
            .ok_or_else(|| anyhow!("the base URL {base} has no host"))?;
        let port = base
            .port_or_known_default()
            .ok_or_else(|| anyhow!("the base URL {base} has no port"))?;
        let addr = tokio::net::lookup_host((host, port))
            .await
            .with_context(|| format!("cannot resolve {host}:{port}"))?
            .next()
            .ok_or_else(|| anyhow!("{host}:{port} resolves to no address"))?;
        let host_header = match base.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        Ok(Endpoint {
            addr,
            host_header,
            base_path: base.path().trim_end_matches('/').to_owned(),
        })
    }
}

/// A response: the status code and the whole body.
#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) body: Vec<u8>,
}

/// What went wrong with one attempt, and whether a fresh connection may simply try again.
enum AttemptError {
    /// The kept-alive connection was closed by the server before any byte of the answer came
    /// back: the request never reached a handler, so sending it again is safe (hyper and every
    /// pooling client do the same).
    Stale(anyhow::Error),
    /// Anything else.
    Fatal(anyhow::Error),
}

/// A bare HTTP/1.1 client over at most one open connection.
#[derive(Debug)]
pub(crate) struct Floor {
    endpoint: Endpoint,
    authorization: String,
    timeout: Duration,
    connection: Option<BufReader<TcpStream>>,
    connects: u64,
}

impl Floor {
    /// A client for `endpoint` that sends `Authorization: Bearer <token>` and gives up on a
    /// request after `timeout`.
    pub(crate) fn new(endpoint: Endpoint, token: &str, timeout: Duration) -> Self {
        Floor {
            endpoint,
            authorization: format!("Bearer {token}"),
            timeout,
            connection: None,
            connects: 0,
        }
    }

    /// Connections opened so far.
    pub(crate) fn connects(&self) -> u64 {
        self.connects
    }

    /// `GET {base}/{relative}`, where `relative` is e.g. `Patient/123` or `Observation?...`.
    pub(crate) async fn get(&mut self, relative: &str) -> anyhow::Result<Response> {
        let request = format!(
            "GET {}/{relative} HTTP/1.1\r\nHost: {}\r\nAccept: application/fhir+json\r\nAuthorization: {}\r\nUser-Agent: epic-fhir-bench-floor\r\n\r\n",
            self.endpoint.base_path, self.endpoint.host_header, self.authorization
        );
        let timeout = self.timeout;
        let attempt = async {
            match self.attempt(request.as_bytes()).await {
                Ok(response) => Ok(response),
                Err(AttemptError::Stale(_)) => match self.attempt(request.as_bytes()).await {
                    Ok(response) => Ok(response),
                    Err(AttemptError::Stale(error) | AttemptError::Fatal(error)) => Err(error),
                },
                Err(AttemptError::Fatal(error)) => Err(error),
            }
        };
        match tokio::time::timeout(timeout, attempt).await {
            Ok(result) => result,
            Err(_) => {
                // The connection is in an unknown state after a timeout: never reuse it.
                self.connection = None;
                Err(anyhow!("no complete response within {timeout:?}"))
            }
        }
    }

    async fn attempt(&mut self, request: &[u8]) -> Result<Response, AttemptError> {
        let reused = self.connection.is_some();
        let mut connection = match self.connection.take() {
            Some(connection) => connection,
            None => {
                let stream = TcpStream::connect(self.endpoint.addr)
                    .await
                    .with_context(|| format!("cannot connect to {}", self.endpoint.addr))
                    .map_err(AttemptError::Fatal)?;
                // Requests are small and written at once: do not let Nagle hold them back.
                stream
                    .set_nodelay(true)
                    .context("cannot set TCP_NODELAY")
                    .map_err(AttemptError::Fatal)?;
                self.connects += 1;
                BufReader::with_capacity(READ_BUFFER_BYTES, stream)
            }
        };
        let classify = |error: anyhow::Error, nothing_read: bool| {
            if reused && nothing_read {
                AttemptError::Stale(error)
            } else {
                AttemptError::Fatal(error)
            }
        };
        if let Err(error) = connection.get_mut().write_all(request).await {
            return Err(classify(
                anyhow::Error::new(error).context("cannot send the request"),
                true,
            ));
        }
        match read_response(&mut connection).await {
            Ok((response, keep_alive)) => {
                if keep_alive {
                    self.connection = Some(connection);
                }
                Ok(response)
            }
            Err(ReadError {
                error,
                nothing_read,
            }) => Err(classify(error, nothing_read)),
        }
    }
}

/// A failure while reading a response, and whether it happened before its first byte.
struct ReadError {
    error: anyhow::Error,
    nothing_read: bool,
}

impl ReadError {
    fn after_start(error: anyhow::Error) -> Self {
        ReadError {
            error,
            nothing_read: false,
        }
    }
}

/// The parts of a response head that decide how to read the body.
#[derive(Debug, PartialEq, Eq)]
struct Head {
    status: u16,
    content_length: Option<usize>,
    chunked: bool,
    keep_alive: bool,
}

/// Reads one response (skipping interim 1xx heads) and says whether the connection can carry
/// another request.
async fn read_response<R>(reader: &mut R) -> Result<(Response, bool), ReadError>
where
    R: tokio::io::AsyncBufRead + Unpin,
{
    let mut first = true;
    let head = loop {
        let head = read_head(reader, first).await?;
        first = false;
        if !(100..200).contains(&head.status) {
            break head;
        }
    };
    let no_body = head.status == 204 || head.status == 304;
    let (body, keep_alive) = if no_body {
        (Vec::new(), head.keep_alive)
    } else if head.chunked {
        (
            read_chunked(reader).await.map_err(ReadError::after_start)?,
            head.keep_alive,
        )
    } else if let Some(length) = head.content_length {
        if length > MAX_BODY_BYTES {
            return Err(ReadError::after_start(anyhow!(
                "Content-Length {length} is larger than the {MAX_BODY_BYTES}-byte limit"
            )));
        }
        let mut body = vec![0; length];
        reader
            .read_exact(&mut body)
            .await
            .context("the connection closed before the end of the body")
            .map_err(ReadError::after_start)?;
        (body, head.keep_alive)
    } else {
        // No framing: the body runs to the end of the connection, which cannot be reused.
        let mut body = Vec::new();
        reader
            .take(MAX_BODY_BYTES as u64 + 1)
            .read_to_end(&mut body)
            .await
            .context("cannot read the body")
            .map_err(ReadError::after_start)?;
        if body.len() > MAX_BODY_BYTES {
            return Err(ReadError::after_start(anyhow!(
                "the body is larger than the {MAX_BODY_BYTES}-byte limit"
            )));
        }
        (body, false)
    };
    Ok((
        Response {
            status: head.status,
            body,
        },
        keep_alive,
    ))
}

/// Reads a status line and headers up to the blank line.
async fn read_head<R>(reader: &mut R, first: bool) -> Result<Head, ReadError>
where
    R: tokio::io::AsyncBufRead + Unpin,
{
    let mut line = Vec::with_capacity(128);
    let mut total = 0;
    let mut lines: Vec<String> = Vec::new();
    loop {
        line.clear();
        let read = match reader.read_until(b'\n', &mut line).await {
            Ok(read) => read,
            Err(error) => {
                return Err(ReadError {
                    error: anyhow::Error::new(error).context("cannot read the response"),
                    nothing_read: first && total == 0,
                });
            }
        };
        if read == 0 {
            return Err(ReadError {
                error: anyhow!("the connection closed before a complete response head"),
                nothing_read: first && total == 0,
            });
        }
        total += read;
        if total > MAX_HEAD_BYTES {
            return Err(ReadError::after_start(anyhow!(
                "the response head is larger than {MAX_HEAD_BYTES} bytes"
            )));
        }
        let text = std::str::from_utf8(&line)
            .map_err(|_| ReadError::after_start(anyhow!("the response head is not UTF-8")))?
            .trim_end_matches(['\r', '\n']);
        if text.is_empty() {
            break;
        }
        lines.push(text.to_owned());
    }
    parse_head(&lines).map_err(ReadError::after_start)
}

/// Interprets the status line and the headers that matter for framing and keep-alive.
fn parse_head(lines: &[String]) -> anyhow::Result<Head> {
    let status_line = lines
        .first()
        .ok_or_else(|| anyhow!("the response has no status line"))?;
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let http10 = match version {
        "HTTP/1.1" => false,
        "HTTP/1.0" => true,
        other => bail!("unsupported response version `{other}` in `{status_line}`"),
    };
    let status: u16 = parts
        .next()
        .and_then(|code| code.parse().ok())
        .filter(|code| (100..=999).contains(code))
        .ok_or_else(|| anyhow!("no status code in `{status_line}`"))?;
    let mut content_length = None;
    let mut chunked = false;
    let mut keep_alive = !http10;
    for header in &lines[1..] {
        let (name, value) = header
            .split_once(':')
            .ok_or_else(|| anyhow!("malformed header line `{header}`"))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let length: usize = value
                .parse()
                .map_err(|_| anyhow!("invalid Content-Length `{value}`"))?;
            if content_length.is_some_and(|seen| seen != length) {
                bail!("conflicting Content-Length headers");
            }
            content_length = Some(length);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value
                .rsplit(',')
                .next()
                .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
            if !chunked {
                bail!("unsupported Transfer-Encoding `{value}`");
            }
        } else if name.eq_ignore_ascii_case("connection") {
            for option in value.split(',').map(str::trim) {
                if option.eq_ignore_ascii_case("close") {
                    keep_alive = false;
                } else if option.eq_ignore_ascii_case("keep-alive") {
                    keep_alive = true;
                }
            }
        }
    }
    Ok(Head {
        status,
        content_length,
        chunked,
        keep_alive,
    })
}

/// Reads a `Transfer-Encoding: chunked` body and its trailers.
async fn read_chunked<R>(reader: &mut R) -> anyhow::Result<Vec<u8>>
where
    R: tokio::io::AsyncBufRead + Unpin,
{
    let mut body = Vec::new();
    let mut line = Vec::with_capacity(32);
    loop {
        line.clear();
        read_line(reader, &mut line).await?;
        let text = std::str::from_utf8(&line).context("a chunk size line is not UTF-8")?;
        let size_text = text
            .split(';')
            .next()
            .unwrap_or_default()
            .trim_end_matches(['\r', '\n'])
            .trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| anyhow!("invalid chunk size `{size_text}`"))?;
        if size == 0 {
            break;
        }
        if body.len().saturating_add(size) > MAX_BODY_BYTES {
            bail!("the body is larger than the {MAX_BODY_BYTES}-byte limit");
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader
            .read_exact(&mut body[start..])
            .await
            .context("the connection closed inside a chunk")?;
        let mut crlf = [0_u8; 2];
        reader
            .read_exact(&mut crlf)
            .await
            .context("the connection closed after a chunk")?;
        if &crlf != b"\r\n" {
            bail!("a chunk is not followed by CRLF");
        }
    }
    // Trailers, if any, end with a blank line.
    loop {
        line.clear();
        read_line(reader, &mut line).await?;
        if line == b"\r\n" || line == b"\n" {
            return Ok(body);
        }
    }
}

async fn read_line<R>(reader: &mut R, line: &mut Vec<u8>) -> anyhow::Result<()>
where
    R: tokio::io::AsyncBufRead + Unpin,
{
    let read = reader
        .read_until(b'\n', line)
        .await
        .context("cannot read the chunked body")?;
    if read == 0 {
        bail!("the connection closed inside the chunked body");
    }
    if line.len() > MAX_HEAD_BYTES {
        bail!("a chunk size or trailer line is longer than {MAX_HEAD_BYTES} bytes");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::AsyncWriteExt as _;
    use tokio::net::TcpListener;

    use super::*;

    async fn parse(bytes: &[u8]) -> Result<(Response, bool), String> {
        let mut reader = BufReader::new(bytes);
        read_response(&mut reader)
            .await
            .map_err(|e| format!("{:#}", e.error))
    }

    #[tokio::test]
    async fn content_length_body() {
        let (response, keep_alive) = parse(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/fhir+json\r\ncontent-length: 2\r\n\r\n{}",
        )
        .await
        .expect("parses");
        assert_eq!(response.status, 200);
        assert_eq!(response.body, b"{}");
        assert!(keep_alive);
    }

    #[tokio::test]
    async fn chunked_body_with_extension_and_trailer() {
        let (response, keep_alive) = parse(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\nX-Trailer: t\r\n\r\n",
        )
        .await
        .expect("parses");
        assert_eq!(response.body, b"{\"a\":1}");
        assert!(keep_alive);
    }

    #[tokio::test]
    async fn interim_response_is_skipped() {
        let (response, _) = parse(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 404 Not Found\r\ncontent-length: 1\r\n\r\nx",
        )
        .await
        .expect("parses");
        assert_eq!(response.status, 404);
        assert_eq!(response.body, b"x");
    }

    #[tokio::test]
    async fn connection_close_and_http10_are_not_kept() {
        let (_, keep_alive) =
            parse(b"HTTP/1.1 200 OK\r\nConnection: close\r\ncontent-length: 0\r\n\r\n")
                .await
                .expect("parses");
        assert!(!keep_alive);
        let (_, keep_alive) = parse(b"HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n")
            .await
            .expect("parses");
        assert!(!keep_alive);
        let (response, keep_alive) = parse(b"HTTP/1.1 200 OK\r\n\r\nto the end")
            .await
            .expect("parses");
        assert_eq!(response.body, b"to the end");
        assert!(!keep_alive, "a body framed by the end of the connection");
    }

    #[tokio::test]
    async fn malformed_responses_are_errors_naming_the_problem() {
        let cases: [(&[u8], &str); 7] = [
            (b"", "closed before a complete response head"),
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nab",
                "before the end of the body",
            ),
            (
                b"SPDY/3 200 OK\r\n\r\n",
                "unsupported response version `SPDY/3`",
            ),
            (b"HTTP/1.1 abc OK\r\n\r\n", "no status code"),
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n",
                "invalid Content-Length `x`",
            ),
            (
                b"HTTP/1.1 200 OK\r\nbad header\r\n\r\n",
                "malformed header line `bad header`",
            ),
            (
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
                "invalid chunk size `zz`",
            ),
        ];
        for (bytes, expected) in cases {
            let error = parse(bytes).await.expect_err("must fail");
            assert!(
                error.contains(expected),
                "{:?}: `{error}` should mention `{expected}`",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn head_parsing_is_case_insensitive_and_checks_duplicates() {
        let lines = |ls: &[&str]| ls.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let head = parse_head(&lines(&[
            "HTTP/1.1 201 Created",
            "CONTENT-LENGTH: 10",
            "connection: Keep-Alive",
        ]))
        .expect("parses");
        assert_eq!(
            head,
            Head {
                status: 201,
                content_length: Some(10),
                chunked: false,
                keep_alive: true
            }
        );
        let error = parse_head(&lines(&[
            "HTTP/1.1 200 OK",
            "content-length: 1",
            "content-length: 2",
        ]))
        .expect_err("conflict");
        assert!(error.to_string().contains("conflicting Content-Length"));
        let error = parse_head(&lines(&["HTTP/1.1 200 OK", "transfer-encoding: gzip"]))
            .expect_err("unsupported");
        assert!(
            error
                .to_string()
                .contains("unsupported Transfer-Encoding `gzip`")
        );
    }

    /// A server that answers each request on a connection with `body`, closing every
    /// connection after `per_connection` answers without announcing it.
    async fn server(per_connection: usize) -> (Url, Arc<AtomicUsize>, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let (c, r) = (Arc::clone(&connections), Arc::clone(&requests));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                let r = Arc::clone(&r);
                tokio::spawn(async move {
                    let mut reader = BufReader::new(stream);
                    for _ in 0..per_connection {
                        let mut target = String::new();
                        let mut authorized = false;
                        loop {
                            let mut line = String::new();
                            if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                                return;
                            }
                            if target.is_empty() {
                                target = line.split(' ').nth(1).unwrap_or_default().to_owned();
                            }
                            authorized |= line == "Authorization: Bearer secret-token\r\n";
                            if line == "\r\n" {
                                break;
                            }
                        }
                        r.fetch_add(1, Ordering::SeqCst);
                        let (status, body) = if authorized {
                            ("200 OK", format!("{{\"target\":\"{target}\"}}"))
                        } else {
                            ("401 Unauthorized", String::from("{}"))
                        };
                        let reply = format!(
                            "HTTP/1.1 {status}\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if reader.get_mut().write_all(reply.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        let url = Url::parse(&format!("http://{addr}/fhir/R4/")).expect("url");
        (url, connections, requests)
    }

    #[tokio::test]
    async fn keeps_the_connection_alive_and_sends_the_token() {
        let (url, connections, requests) = server(usize::MAX).await;
        let endpoint = Endpoint::resolve(&url).await.expect("endpoint");
        let mut floor = Floor::new(endpoint, "secret-token", Duration::from_secs(5));
        for id in ["a", "b", "c"] {
            let response = floor.get(&format!("Patient/{id}")).await.expect("get");
            assert_eq!(response.status, 200);
            assert_eq!(
                String::from_utf8(response.body).expect("utf-8"),
                format!("{{\"target\":\"/fhir/R4/Patient/{id}\"}}")
            );
        }
        assert_eq!(connections.load(Ordering::SeqCst), 1);
        assert_eq!(requests.load(Ordering::SeqCst), 3);
        assert_eq!(floor.connects(), 1);
    }

    #[tokio::test]
    async fn a_connection_closed_by_the_server_is_replaced_transparently() {
        let (url, connections, requests) = server(1).await;
        let endpoint = Endpoint::resolve(&url).await.expect("endpoint");
        let mut floor = Floor::new(endpoint, "secret-token", Duration::from_secs(5));
        for _ in 0..3 {
            let response = floor.get("Observation?patient=x").await.expect("get");
            assert_eq!(response.status, 200);
        }
        assert_eq!(requests.load(Ordering::SeqCst), 3);
        assert_eq!(connections.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn error_statuses_are_returned_not_hidden() {
        let (url, _, _) = server(usize::MAX).await;
        let endpoint = Endpoint::resolve(&url).await.expect("endpoint");
        let mut floor = Floor::new(endpoint, "wrong", Duration::from_secs(5));
        let response = floor.get("Patient/a").await.expect("get");
        assert_eq!(response.status, 401);
    }

    #[tokio::test]
    async fn refuses_https_and_reports_unreachable_servers() {
        let https = Url::parse("https://example.org/fhir").expect("url");
        let error = Endpoint::resolve(&https).await.expect_err("https");
        assert!(error.to_string().contains("plain HTTP/1.1 only"));

        // Bind then drop a listener so the port is very likely closed.
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let url = Url::parse(&format!("http://{addr}/fhir")).expect("url");
        let endpoint = Endpoint::resolve(&url).await.expect("endpoint");
        let mut floor = Floor::new(endpoint, "t", Duration::from_secs(5));
        let error = floor.get("Patient/a").await.expect_err("closed port");
        assert!(format!("{error:#}").contains("cannot connect"), "{error:#}");
    }
}
