//! Undoing `Content-Encoding: gzip` of streamed bodies (export files) in large pieces.
//!
//! reqwest's own decoder hands its output on in pieces of 4 KiB: a 1 GiB export becomes a
//! quarter of a million chunks, each paying the download loop's per-chunk work, and with
//! resources of about 1 KiB most chunks end inside a line, which the line check then has to
//! assemble and read again. The crate's own download connections therefore leave the body
//! compressed, and [`Gunzip`] turns it into pieces of [`DECODED_CHUNK`] bytes for
//! [`super::body::BodyChunks`].
//!
//! Memory stays bounded whatever the stream expands to: each call to the decoder adds at most
//! its 32 KiB buffer of output, and a piece is handed on as soon as it reaches
//! [`DECODED_CHUNK`], so a gzip bomb costs no more than one piece before the caller's limits
//! see its bytes.

use std::io::{self, Write as _};

use bytes::Bytes;
use flate2::write::MultiGzDecoder;

/// The size of the decoded pieces handed on (the last one of a file may be smaller).
pub(super) const DECODED_CHUNK: usize = 256 * 1024;
/// Room for the decoder's last addition past [`DECODED_CHUNK`] (its internal buffer).
const HEADROOM: usize = 32 * 1024;

/// A streaming gzip decoder (several members in a row are one stream, as RFC 1952 allows).
pub(super) struct Gunzip {
    decoder: MultiGzDecoder<Vec<u8>>,
}

impl std::fmt::Debug for Gunzip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gunzip")
            .field("decoded", &self.decoder.get_ref().len())
            .finish_non_exhaustive()
    }
}

impl Gunzip {
    pub(super) fn new() -> Self {
        Gunzip {
            decoder: MultiGzDecoder::new(Vec::with_capacity(DECODED_CHUNK + HEADROOM)),
        }
    }

    /// Decodes from the front of `input` until a piece of [`DECODED_CHUNK`] bytes is ready,
    /// which it returns, or until `input` is used up (`None`: call again with the next bytes
    /// received). `input` is advanced past what was decoded.
    ///
    /// # Errors
    /// [`io::ErrorKind::InvalidInput`] or [`io::ErrorKind::InvalidData`] when the bytes are not
    /// gzip.
    pub(super) fn decode(&mut self, input: &mut &[u8]) -> io::Result<Option<Bytes>> {
        while !input.is_empty() {
            let used = self.decoder.write(input)?;
            if used == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "the gzip decoder took no more bytes",
                ));
            }
            *input = &input[used..];
            if self.decoder.get_ref().len() >= DECODED_CHUNK {
                return Ok(Some(self.take()));
            }
        }
        Ok(None)
    }

    /// Ends the stream: checks that the last member is complete (its CRC and length) and
    /// returns the decoded bytes not handed on yet.
    ///
    /// # Errors
    /// [`io::ErrorKind::InvalidInput`] or [`io::ErrorKind::InvalidData`] for a stream cut
    /// short or damaged; an empty stream is not gzip either.
    pub(super) fn finish(&mut self) -> io::Result<Bytes> {
        self.decoder.try_finish()?;
        Ok(Bytes::from(std::mem::take(self.decoder.get_mut())))
    }

    fn take(&mut self) -> Bytes {
        let fresh = Vec::with_capacity(DECODED_CHUNK + HEADROOM);
        Bytes::from(std::mem::replace(self.decoder.get_mut(), fresh))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::Compression;
    use flate2::write::GzEncoder;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
        encoder.write_all(data).expect("compress");
        encoder.finish().expect("compress")
    }

    /// Decodes `compressed` fed in pieces of `step` bytes, checking every piece's size.
    fn decode_in_steps(compressed: &[u8], step: usize) -> io::Result<Vec<u8>> {
        let mut gunzip = Gunzip::new();
        let mut out = Vec::new();
        for piece in compressed.chunks(step) {
            let mut input = piece;
            while let Some(chunk) = gunzip.decode(&mut input)? {
                assert!(
                    (DECODED_CHUNK..=DECODED_CHUNK + HEADROOM).contains(&chunk.len()),
                    "piece of {} bytes",
                    chunk.len()
                );
                out.extend_from_slice(&chunk);
            }
            assert!(input.is_empty());
        }
        out.extend_from_slice(&gunzip.finish()?);
        Ok(out)
    }

    fn sample(lines: usize) -> Vec<u8> {
        let mut data = Vec::new();
        for i in 0..lines {
            data.extend_from_slice(
                format!(
                    "{{\"resourceType\":\"Observation\",\"id\":\"o{i}\",\"valueQuantity\":{{\"value\":{}}}}}\n",
                    i * 7919 % 1000
                )
                .as_bytes(),
            );
        }
        data
    }

    #[test]
    fn any_split_of_the_input_gives_the_same_bytes_in_large_pieces() {
        let data = sample(40_000);
        let compressed = gzip(&data);
        for step in [1, 7, 4096, 65_536, compressed.len()] {
            assert_eq!(decode_in_steps(&compressed, step).expect("gzip"), data);
        }
    }

    #[test]
    fn members_in_a_row_are_one_stream() {
        let (first, second) = (sample(100), sample(3));
        let mut compressed = gzip(&first);
        compressed.extend_from_slice(&gzip(&second));
        let decoded = decode_in_steps(&compressed, 100).expect("gzip");
        assert_eq!(decoded, [first, second].concat());
    }

    #[test]
    fn a_damaged_or_short_stream_is_an_error() {
        let data = sample(2_000);
        let compressed = gzip(&data);
        // Cut off before the trailer.
        let short = &compressed[..compressed.len() - 4];
        assert!(decode_in_steps(short, 1000).is_err());
        // A wrong CRC.
        let mut wrong = compressed.clone();
        let at = wrong.len() - 8;
        wrong[at] ^= 0xff;
        assert!(decode_in_steps(&wrong, 1000).is_err());
        // Not gzip at all, and nothing at all.
        assert!(decode_in_steps(b"{\"resourceType\":\"Patient\"}\n", 10).is_err());
        assert!(decode_in_steps(b"", 10).is_err());
        // Bytes after the last member that are not another member.
        let mut trailing = compressed;
        trailing.extend_from_slice(b"garbage");
        assert!(decode_in_steps(&trailing, 1000).is_err());
    }

    #[test]
    fn a_bomb_is_decoded_one_bounded_piece_at_a_time() {
        // 64 MiB of zeros in about 64 KiB, fed at once: every piece stays bounded.
        let compressed = gzip(&vec![0u8; 64 << 20]);
        assert!(compressed.len() < 1 << 20);
        let mut gunzip = Gunzip::new();
        let mut input = &compressed[..];
        let mut pieces = 0;
        while let Some(chunk) = gunzip.decode(&mut input).expect("gzip") {
            assert!(chunk.len() <= DECODED_CHUNK + HEADROOM);
            pieces += 1;
        }
        let rest = gunzip.finish().expect("complete");
        assert!(rest.len() <= DECODED_CHUNK + HEADROOM);
        assert!(pieces >= (64 << 20) / (DECODED_CHUNK + HEADROOM));
    }
}
