//! Serving export files: NDJSON streamed from the stored JSON bytes, with gzip and byte
//! ranges.
//!
//! A file is never assembled in memory: its bytes are the stored JSON of each resource
//! followed by `\n`, produced in chunks of at most [`CHUNK_BYTES`]. `Range` requests are
//! served on these identity bytes only; a request carrying `Range` is never gzipped, because
//! offsets into a compressed stream would be ambiguous and could not be resumed reliably.

use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::BytesMut;
use flate2::Compression;
use flate2::write::GzEncoder;

use super::bearer_grant;
use super::job::{ExportFile, FileContent};
use crate::outcome::FhirError;
use crate::server::AppState;

/// The media type of export files.
const NDJSON: &str = "application/fhir+ndjson";
/// The largest chunk of body produced at once.
const CHUNK_BYTES: usize = 64 * 1024;

/// `GET [base]/$export-file/{job}/{n}`.
pub(super) async fn file(
    State(state): State<Arc<AppState>>,
    Path((id, index)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, FhirError> {
    state.stats.fhir_requests.fetch_add(1, Ordering::Relaxed);
    let grant = bearer_grant(&state, &headers)?;
    let job = state.bulk.find(&id, &grant.client_id)?;
    let Some(finished) = job.finished() else {
        return Err(FhirError::not_found(format!(
            "export job {id} has not finished: its files are listed in the manifest once it has"
        )));
    };
    let file = index
        .parse::<usize>()
        .ok()
        .and_then(|n| finished.files.get(n))
        .cloned()
        .ok_or_else(|| FhirError::not_found(format!("export job {id} has no file {index}")))?;
    // Files never change, so the job and file number make a strong validator.
    let etag = format!("\"{id}-{index}\"");
    Ok(serve(file, &headers, &etag))
}

/// The response for one file, after negotiating the range and the encoding.
fn serve(file: Arc<ExportFile>, headers: &HeaderMap, etag: &str) -> Response {
    let range_header = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    // `If-Range` with another validator (or a date, which these files do not carry) asks
    // for the whole file.
    let range_applies = headers
        .get(header::IF_RANGE)
        .is_none_or(|v| v.to_str().is_ok_and(|v| v.trim() == etag));
    let range = match range_header {
        Some(value) if range_applies => parse_range(value, file.len),
        _ => ByteRange::Whole,
    };
    let len = file.len;
    let mut response = match range {
        ByteRange::Unsatisfiable => {
            let mut response = FhirError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "invalid",
                format!(
                    "Range `{}` is not satisfiable: the file has {len} bytes",
                    range_header.unwrap_or_default()
                ),
            )
            .into_response();
            if let Ok(value) = HeaderValue::from_str(&format!("bytes */{len}")) {
                response.headers_mut().insert(header::CONTENT_RANGE, value);
            }
            return response;
        }
        ByteRange::Part { start, end } => {
            let mut response = identity(file, start, end + 1);
            *response.status_mut() = StatusCode::PARTIAL_CONTENT;
            if let Ok(value) = HeaderValue::from_str(&format!("bytes {start}-{end}/{len}")) {
                response.headers_mut().insert(header::CONTENT_RANGE, value);
            }
            response
        }
        ByteRange::Whole if range_header.is_none() && accepts_gzip(headers) => {
            let stream = Gzip {
                source: FileBytes::new(file, 0, len),
                encoder: Some(GzEncoder::new(Vec::new(), Compression::fast())),
            };
            let mut response = Response::new(Body::from_stream(futures_util::stream::iter(stream)));
            response
                .headers_mut()
                .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            response
        }
        ByteRange::Whole => identity(file, 0, len),
    };
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(NDJSON));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    if let Ok(value) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, value);
    }
    response
}

/// The identity bytes `[start, end)` with their `Content-Length`.
fn identity(file: Arc<ExportFile>, start: u64, end: u64) -> Response {
    let length = end - start;
    let chunks = FileBytes::new(file, start, end).map(Ok::<Bytes, std::convert::Infallible>);
    let mut response = Response::new(Body::from_stream(futures_util::stream::iter(chunks)));
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    response
}

/// What a `Range` header asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ByteRange {
    /// The whole file: no range, or one this server ignores (another unit, several ranges,
    /// a malformed range), as RFC 9110 allows.
    Whole,
    /// Bytes `start..=end`.
    Part { start: u64, end: u64 },
    /// A range starting past the end: 416.
    Unsatisfiable,
}

/// Parses a single `bytes=` range (`N-`, `N-M` or the suffix `-N`) against a file of `len`
/// bytes.
pub(super) fn parse_range(value: &str, len: u64) -> ByteRange {
    let value = value.trim();
    let Some(spec) = value
        .get(..6)
        .filter(|unit| unit.eq_ignore_ascii_case("bytes="))
        .map(|_| value[6..].trim())
    else {
        return ByteRange::Whole;
    };
    if spec.contains(',') {
        return ByteRange::Whole;
    }
    let Some((first, last)) = spec.split_once('-') else {
        return ByteRange::Whole;
    };
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        return match digits(last) {
            None => ByteRange::Whole,
            Some(0) => ByteRange::Unsatisfiable,
            Some(_) if len == 0 => ByteRange::Unsatisfiable,
            Some(suffix) => ByteRange::Part {
                start: len - suffix.min(len),
                end: len - 1,
            },
        };
    }
    let Some(start) = digits(first) else {
        return ByteRange::Whole;
    };
    let end = if last.is_empty() {
        None
    } else {
        match digits(last) {
            Some(end) if end >= start => Some(end),
            _ => return ByteRange::Whole,
        }
    };
    if start >= len {
        return ByteRange::Unsatisfiable;
    }
    ByteRange::Part {
        start,
        end: end.map_or(len - 1, |end| end.min(len - 1)),
    }
}

/// A non-negative decimal number of ASCII digits only (no sign, no spaces).
fn digits(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Whether `Accept-Encoding` allows gzip: `gzip`/`x-gzip`, or `*`, with a non-zero q-value;
/// an explicit entry wins over `*`.
pub(super) fn accepts_gzip(headers: &HeaderMap) -> bool {
    let mut star = None;
    for value in headers.get_all(header::ACCEPT_ENCODING) {
        let Ok(value) = value.to_str() else {
            continue;
        };
        for item in value.split(',') {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or_default().trim();
            let q = parts
                .find_map(|p| {
                    p.trim()
                        .strip_prefix("q=")
                        .map(|q| q.trim().parse::<f32>().unwrap_or(0.0))
                })
                .unwrap_or(1.0);
            if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
                return q > 0.0;
            }
            if coding == "*" {
                star = Some(q > 0.0);
            }
        }
    }
    star.unwrap_or(false)
}

impl ExportFile {
    /// The `k`-th piece of the file's bytes: for resources, even pieces are a resource's
    /// stored JSON and odd ones the `\n` after it.
    fn segment(&self, k: usize) -> Option<&[u8]> {
        match &self.content {
            FileContent::Resources(resources) => {
                let resource = resources.get(k / 2)?;
                Some(if k % 2 == 0 { resource.json() } else { b"\n" })
            }
            FileContent::Outcomes(bytes) => (k == 0).then_some(&bytes[..]),
        }
    }
}

/// The identity bytes of a file between two offsets, in chunks of at most [`CHUNK_BYTES`].
pub(super) struct FileBytes {
    file: Arc<ExportFile>,
    segment: usize,
    offset: usize,
    remaining: u64,
}

impl FileBytes {
    /// Bytes `[start, end)`; `end` must not exceed the file's length.
    pub(super) fn new(file: Arc<ExportFile>, start: u64, end: u64) -> Self {
        let mut segment = 0;
        let mut skip = start;
        while let Some(bytes) = file.segment(segment) {
            let len = bytes.len() as u64;
            if skip < len {
                break;
            }
            skip -= len;
            segment += 1;
        }
        FileBytes {
            file,
            segment,
            // `skip` is below the length of one segment here, so it fits.
            offset: usize::try_from(skip).unwrap_or(usize::MAX),
            remaining: end.saturating_sub(start),
        }
    }
}

impl Iterator for FileBytes {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        if self.remaining == 0 {
            return None;
        }
        let capacity = usize::try_from(self.remaining).map_or(CHUNK_BYTES, |r| r.min(CHUNK_BYTES));
        let mut chunk = BytesMut::with_capacity(capacity);
        while self.remaining > 0 && chunk.len() < CHUNK_BYTES {
            let Some(segment) = self.file.segment(self.segment) else {
                // The file is shorter than announced; end the body rather than loop.
                self.remaining = 0;
                break;
            };
            let available = segment.get(self.offset..).unwrap_or_default();
            let take = available
                .len()
                .min(CHUNK_BYTES - chunk.len())
                .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
            chunk.extend_from_slice(&available[..take]);
            self.offset += take;
            self.remaining -= take as u64;
            if self.offset >= segment.len() {
                self.segment += 1;
                self.offset = 0;
            }
        }
        (!chunk.is_empty()).then(|| chunk.freeze())
    }
}

/// A gzip stream over a file's identity bytes, compressed chunk by chunk.
struct Gzip {
    source: FileBytes,
    encoder: Option<GzEncoder<Vec<u8>>>,
}

impl Iterator for Gzip {
    type Item = std::io::Result<Bytes>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let encoder = self.encoder.as_mut()?;
            match self.source.next() {
                Some(chunk) => {
                    if let Err(error) = encoder.write_all(&chunk) {
                        self.encoder = None;
                        return Some(Err(error));
                    }
                    let compressed = std::mem::take(encoder.get_mut());
                    if !compressed.is_empty() {
                        return Some(Ok(Bytes::from(compressed)));
                    }
                }
                None => {
                    let encoder = self.encoder.take()?;
                    return Some(encoder.finish().map(Bytes::from));
                }
            }
        }
    }
}
