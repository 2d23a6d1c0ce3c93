//! Reading answer bodies under a size limit.
//!
//! Limits count the bytes the caller receives, that is after `Content-Encoding: gzip` is
//! undone, so a small compressed answer that expands without end is refused as soon as its
//! expansion passes the limit, having cost no more memory than the limit.

use bytes::{Buf as _, Bytes, BytesMut};
use futures_util::StreamExt as _;
use reqwest::header::{CONTENT_ENCODING, HeaderMap};
use tokio::sync::SemaphorePermit;

use super::gunzip::Gunzip;

/// The most bytes of each kind of answer the client reads into memory. An answer larger than
/// its limit is refused with [`ErrorKind::Limit`](crate::ErrorKind::Limit) as soon as the limit
/// is passed, whatever `Content-Length` said and after decompression, so a misbehaving server
/// cannot make the client buffer more than this.
///
/// One value configures both [`FhirClientBuilder::body_limits`](crate::FhirClientBuilder::body_limits)
/// (which uses `fhir`, `error` and `manifest`) and
/// [`BackendServicesAuthBuilder::body_limits`](crate::auth::BackendServicesAuthBuilder::body_limits)
/// (which uses `token`, `error` and `discovery`). Bulk export files are not buffered: they
/// stream to disk and are bounded by [`DownloadOptions`](crate::bulk::DownloadOptions).
/// Every field states its default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BodyLimits {
    /// FHIR JSON answers: a resource, a search page (Epic serves at most 1,000 entries), a
    /// write's result, the CapabilityStatement. Default 64 MiB.
    pub fhir: usize,
    /// The body of an error status (an OperationOutcome, an OAuth error, a proxy's HTML page),
    /// read to explain the error. Default 1 MiB.
    pub error: usize,
    /// A token endpoint's answer. Default 1 MiB.
    pub token: usize,
    /// SMART discovery documents (`.well-known/smart-configuration`, and the
    /// CapabilityStatement it falls back to). Default 16 MiB.
    pub discovery: usize,
    /// A bulk export's completion manifest (a list of files). Default 64 MiB.
    pub manifest: usize,
}

const MIB: usize = 1024 * 1024;

impl Default for BodyLimits {
    fn default() -> Self {
        BodyLimits {
            fhir: 64 * MIB,
            error: MIB,
            token: MIB,
            discovery: 16 * MIB,
            manifest: 64 * MIB,
        }
    }
}

impl BodyLimits {
    /// Sets the limit of FHIR JSON answers (at least 1 byte).
    #[must_use]
    pub fn with_fhir(mut self, bytes: usize) -> Self {
        self.fhir = bytes.max(1);
        self
    }

    /// Sets the limit of error bodies (at least 1 byte).
    #[must_use]
    pub fn with_error(mut self, bytes: usize) -> Self {
        self.error = bytes.max(1);
        self
    }

    /// Sets the limit of token endpoint answers (at least 1 byte).
    #[must_use]
    pub fn with_token(mut self, bytes: usize) -> Self {
        self.token = bytes.max(1);
        self
    }

    /// Sets the limit of discovery documents (at least 1 byte).
    #[must_use]
    pub fn with_discovery(mut self, bytes: usize) -> Self {
        self.discovery = bytes.max(1);
        self
    }

    /// Sets the limit of bulk export manifests (at least 1 byte).
    #[must_use]
    pub fn with_manifest(mut self, bytes: usize) -> Self {
        self.manifest = bytes.max(1);
        self
    }
}

/// Why a body could not be read whole.
#[derive(Debug)]
pub(crate) enum ReadFailure {
    /// The connection failed or timed out before the end.
    CutOff(reqwest::Error),
    /// More than `limit` bytes (after decompression).
    TooLarge { limit: usize },
}

/// Reads a whole body of at most `limit` bytes (after decompression). A `Content-Length`
/// beyond the limit is refused before a byte is read.
pub(crate) async fn read_limited(
    response: reqwest::Response,
    limit: usize,
) -> Result<Bytes, ReadFailure> {
    // reqwest reports no length for a compressed answer, so this is the decoded length.
    if response
        .content_length()
        .is_some_and(|length| length > limit as u64)
    {
        return Err(ReadFailure::TooLarge { limit });
    }
    let expected = response.content_length().map_or(0, |n| n as usize);
    let mut body = BytesMut::with_capacity(expected.min(limit));
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(ReadFailure::CutOff)?;
        if chunk.len() > limit - body.len() {
            return Err(ReadFailure::TooLarge { limit });
        }
        if expected > 0 && body.is_empty() && chunk.len() == expected {
            // The whole body in one chunk: hand it over without a copy.
            return Ok(chunk);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Reads at most `limit` bytes of a body and keeps what arrived, for explaining an error: a
/// body cut off or too long gives its start.
pub(crate) async fn read_prefix(response: reqwest::Response, limit: usize) -> Bytes {
    let mut body = BytesMut::new();
    let mut stream = response.bytes_stream();
    while let Some(Ok(chunk)) = stream.next().await {
        let room = limit.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= limit {
            break;
        }
    }
    body.freeze()
}

/// Why a streamed body stopped before its end.
#[derive(Debug)]
pub(crate) enum BodyError {
    /// The connection failed or timed out.
    CutOff(reqwest::Error),
    /// The gzip stream is damaged or cut short: the bytes cannot be trusted.
    Damaged(std::io::Error),
}

/// A body read chunk by chunk, with `Content-Encoding: gzip` undone when the HTTP client left
/// it (the crate's download client does, see [`super::gunzip`]); a client that undid it
/// itself removed the header. It holds the concurrency permit while it is read.
pub(crate) struct BodyChunks<'e> {
    response: reqwest::Response,
    gunzip: Option<Gunzip>,
    /// Compressed bytes received and not decoded yet.
    input: Bytes,
    ended: bool,
    _permit: Option<SemaphorePermit<'e>>,
}

impl<'e> BodyChunks<'e> {
    /// The body of `response`, whose headers are `headers`; `Err` names a
    /// `Content-Encoding` this client cannot undo.
    pub(crate) fn new(
        response: reqwest::Response,
        headers: &HeaderMap,
        permit: Option<SemaphorePermit<'e>>,
    ) -> Result<Self, String> {
        let gzip = content_encoding(headers)?;
        Ok(BodyChunks {
            response,
            gunzip: gzip.then(Gunzip::new),
            input: Bytes::new(),
            ended: false,
            _permit: permit,
        })
    }

    /// The next chunk of the (decoded) body, `None` at its end.
    pub(crate) async fn next(&mut self) -> Option<Result<Bytes, BodyError>> {
        let Some(gunzip) = &mut self.gunzip else {
            return self
                .response
                .chunk()
                .await
                .transpose()
                .map(|chunk| chunk.map_err(BodyError::CutOff));
        };
        if self.ended {
            return None;
        }
        loop {
            let mut rest = &self.input[..];
            let decoded = gunzip.decode(&mut rest);
            let used = self.input.len() - rest.len();
            self.input.advance(used);
            match decoded {
                Ok(Some(piece)) => return Some(Ok(piece)),
                Ok(None) => {}
                Err(error) => {
                    self.ended = true;
                    return Some(Err(BodyError::Damaged(error)));
                }
            }
            match self.response.chunk().await {
                Ok(Some(bytes)) => self.input = bytes,
                Ok(None) => {
                    self.ended = true;
                    return match gunzip.finish() {
                        Ok(rest) if rest.is_empty() => None,
                        Ok(rest) => Some(Ok(rest)),
                        Err(error) => Some(Err(BodyError::Damaged(error))),
                    };
                }
                Err(error) => {
                    self.ended = true;
                    return Some(Err(BodyError::CutOff(error)));
                }
            }
        }
    }
}

/// Whether a body is gzip (`Ok(true)`) or as is (`Ok(false)`); `Err` names an encoding this
/// client cannot undo (another, or gzip twice).
fn content_encoding(headers: &HeaderMap) -> Result<bool, String> {
    let mut gzip = false;
    for value in headers.get_all(CONTENT_ENCODING) {
        let value = value.to_str().unwrap_or("(not text)");
        for coding in value.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            let is_gzip =
                coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip");
            if (is_gzip && gzip) || (!is_gzip && !coding.eq_ignore_ascii_case("identity")) {
                return Err(value.to_owned());
            }
            gzip |= is_gzip;
        }
    }
    Ok(gzip)
}
