//! Putting a chunked payload back together, verifying as it arrives.

use sha2::{Digest, Sha256};

use crate::error::WireError;
use crate::header::check_header_text;
use crate::payload::{Payload, hex, payload_bytes};
use crate::{MAX_CHUNK_BYTES, pb};

/// A complete, length- and hash-verified payload with its header.
#[derive(Clone, Debug)]
pub struct Received {
    /// The header chunk.
    pub header: pb::Header,
    /// The verified payload.
    pub payload: Payload,
}

/// Reassembles one payload from its chunks. It checks the header against
/// its own manifest and the size limit before allocating, counts bytes as
/// data arrives (so an oversized stream is cut off early) and hashes
/// incrementally; [`Assembler::finish`] is the only way to get the payload
/// out, so a stream that breaks part way yields nothing.
#[derive(Debug)]
pub struct Assembler {
    header: pb::Header,
    buffer: Vec<u8>,
    hasher: Sha256,
}

impl Assembler {
    /// Starts from the first chunk, which must be a header announcing at
    /// most `limit` bytes.
    pub fn start(first: pb::Chunk, limit: u64) -> Result<Self, WireError> {
        let header = match first.part {
            Some(pb::chunk::Part::Header(h)) => h,
            _ => return Err(WireError::MissingHeader),
        };
        check_header_text(&header)?;
        let manifest = payload_bytes(&header.manifest, &header.statistics)?;
        if manifest != header.payload_bytes {
            return Err(WireError::HeaderSize {
                header: header.payload_bytes,
                manifest,
            });
        }
        if header.payload_bytes > limit {
            return Err(WireError::TooLarge {
                bytes: header.payload_bytes,
                limit,
            });
        }
        let capacity = usize::try_from(header.payload_bytes).map_err(|_| WireError::TooLarge {
            bytes: header.payload_bytes,
            limit,
        })?;
        Ok(Self {
            header,
            buffer: Vec::with_capacity(capacity),
            hasher: Sha256::new(),
        })
    }

    /// The header, available before any data is read, so a receiver can
    /// refuse a stream (wrong round, wrong client) without reading it.
    pub fn header(&self) -> &pb::Header {
        &self.header
    }

    /// Adds the next chunk.
    pub fn push(&mut self, chunk: pb::Chunk) -> Result<(), WireError> {
        let data = match chunk.part {
            Some(pb::chunk::Part::Data(d)) => d,
            Some(pb::chunk::Part::Header(_)) => return Err(WireError::ExtraHeader),
            None => return Err(WireError::MissingHeader),
        };
        if data.len() > MAX_CHUNK_BYTES {
            return Err(WireError::ChunkTooLarge {
                bytes: data.len(),
                limit: MAX_CHUNK_BYTES,
            });
        }
        if (self.buffer.len() + data.len()) as u64 > self.header.payload_bytes {
            return Err(WireError::Overflow {
                expected: self.header.payload_bytes,
            });
        }
        self.hasher.update(&data);
        self.buffer.extend_from_slice(&data);
        Ok(())
    }

    /// Bytes received so far.
    pub fn received(&self) -> u64 {
        self.buffer.len() as u64
    }

    /// Checks the length and the hash and returns the payload.
    pub fn finish(self) -> Result<Received, WireError> {
        let received = self.buffer.len() as u64;
        if received != self.header.payload_bytes {
            return Err(WireError::Truncated {
                received,
                expected: self.header.payload_bytes,
            });
        }
        let actual = hex(&self.hasher.finalize());
        if !actual.eq_ignore_ascii_case(&self.header.sha256) {
            return Err(WireError::Hash {
                expected: self.header.sha256.clone(),
                actual,
            });
        }
        let payload = Payload {
            manifest: self.header.manifest.clone(),
            statistics: self.header.statistics.clone(),
            bytes: self.buffer.into(),
            sha256: actual,
        };
        Ok(Received {
            header: self.header,
            payload,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(corrupt: impl Fn(&mut Vec<pb::Chunk>)) -> Result<Received, WireError> {
        let params = fusion_core::synthetic::random_mlp(&[4, 6, 2], 2);
        let payload = Payload::from_params(&params)?;
        let mut list: Vec<_> = payload.chunks(payload.header(1, "c", 5), 32).collect();
        corrupt(&mut list);
        let mut it = list.into_iter();
        let mut asm = Assembler::start(it.next().ok_or(WireError::Empty)?, 1 << 20)?;
        for c in it {
            asm.push(c)?;
        }
        asm.finish()
    }

    #[test]
    fn a_flipped_bit_fails_the_hash() {
        let err = chunks(|l| {
            if let Some(pb::chunk::Part::Data(d)) = &mut l[2].part {
                let mut v = d.to_vec();
                v[0] ^= 1;
                *d = v.into();
            }
        })
        .expect_err("corrupt");
        assert!(matches!(err, WireError::Hash { .. }), "{err}");
    }

    #[test]
    fn a_missing_chunk_is_truncation() {
        let err = chunks(|l| {
            l.pop();
        })
        .expect_err("short");
        assert!(matches!(err, WireError::Truncated { .. }), "{err}");
    }

    #[test]
    fn data_before_header_and_a_second_header_are_refused() {
        let err = chunks(|l| l.swap(0, 1)).expect_err("no header");
        assert!(matches!(err, WireError::MissingHeader), "{err}");
        let err = chunks(|l| {
            let h = l[0].clone();
            l.insert(2, h);
        })
        .expect_err("two headers");
        assert!(matches!(err, WireError::ExtraHeader), "{err}");
    }

    #[test]
    fn extra_data_and_lying_sizes_are_refused() {
        let err = chunks(|l| {
            let d = l[1].clone();
            l.push(d);
        })
        .expect_err("overflow");
        assert!(matches!(err, WireError::Overflow { .. }), "{err}");
        let err = chunks(|l| {
            if let Some(pb::chunk::Part::Header(h)) = &mut l[0].part {
                h.payload_bytes += 4;
            }
        })
        .expect_err("lying header");
        assert!(matches!(err, WireError::HeaderSize { .. }), "{err}");
    }

    #[test]
    fn the_size_limit_is_checked_before_reading() {
        let params = fusion_core::synthetic::random_mlp(&[4, 6, 2], 2);
        let payload = Payload::from_params(&params).expect("encodes");
        let first = payload
            .chunks(payload.header(1, "c", 5), 32)
            .next()
            .expect("header");
        let err = Assembler::start(first, 8).expect_err("too large");
        assert_eq!(err.code(), tonic::Code::ResourceExhausted);
    }
}
