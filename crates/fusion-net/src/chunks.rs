//! Putting a chunked payload back together, verifying as it arrives.

use std::collections::BTreeMap;

use fusion_core::{ParamSet, StatisticTensor};
use sha2::{Digest, Sha256};

use crate::decode::TensorDecoder;
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

/// What every receiver checks, whatever it does with the data: a header
/// first, consistent with its own manifest and within the size limit
/// before anything is allocated; data chunks only, each within the chunk
/// limit, never past the announced length; the SHA-256 of every byte.
#[derive(Debug)]
struct Framing {
    header: pb::Header,
    hasher: Sha256,
    received: u64,
}

impl Framing {
    fn start(first: pb::Chunk, limit: u64) -> Result<Self, WireError> {
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
        if header.payload_bytes > limit || usize::try_from(header.payload_bytes).is_err() {
            return Err(WireError::TooLarge {
                bytes: header.payload_bytes,
                limit,
            });
        }
        Ok(Self {
            header,
            hasher: Sha256::new(),
            received: 0,
        })
    }

    /// The data of the next chunk, counted and hashed.
    fn data(&mut self, chunk: pb::Chunk) -> Result<bytes::Bytes, WireError> {
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
        if self.received + data.len() as u64 > self.header.payload_bytes {
            return Err(WireError::Overflow {
                expected: self.header.payload_bytes,
            });
        }
        self.hasher.update(&data);
        self.received += data.len() as u64;
        Ok(data)
    }

    /// Checks the length and the hash; the header and the hash.
    fn finish(self) -> Result<(pb::Header, String), WireError> {
        if self.received != self.header.payload_bytes {
            return Err(WireError::Truncated {
                received: self.received,
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
        Ok((self.header, actual))
    }
}

/// Reassembles one payload from its chunks. It checks the header against
/// its own manifest and the size limit before allocating, counts bytes as
/// data arrives (so an oversized stream is cut off early) and hashes
/// incrementally; [`Assembler::finish`] is the only way to get the payload
/// out, so a stream that breaks part way yields nothing.
#[derive(Debug)]
pub struct Assembler {
    framing: Framing,
    buffer: Vec<u8>,
}

impl Assembler {
    /// Starts from the first chunk, which must be a header announcing at
    /// most `limit` bytes.
    pub fn start(first: pb::Chunk, limit: u64) -> Result<Self, WireError> {
        let framing = Framing::start(first, limit)?;
        let capacity = framing.header.payload_bytes as usize;
        Ok(Self {
            framing,
            buffer: Vec::with_capacity(capacity),
        })
    }

    /// The header, available before any data is read, so a receiver can
    /// refuse a stream (wrong round, wrong client) without reading it.
    pub fn header(&self) -> &pb::Header {
        &self.framing.header
    }

    /// Adds the next chunk.
    pub fn push(&mut self, chunk: pb::Chunk) -> Result<(), WireError> {
        let data = self.framing.data(chunk)?;
        self.buffer.extend_from_slice(&data);
        Ok(())
    }

    /// Bytes received so far.
    pub fn received(&self) -> u64 {
        self.framing.received
    }

    /// Checks the length and the hash and returns the payload.
    pub fn finish(self) -> Result<Received, WireError> {
        let (header, sha256) = self.framing.finish()?;
        let payload = Payload {
            manifest: header.manifest.clone(),
            statistics: header.statistics.clone(),
            bytes: self.buffer.into(),
            sha256,
        };
        Ok(Received { header, payload })
    }
}

/// An update decoded as it arrived, length- and hash-verified.
#[derive(Debug)]
pub struct ReceivedUpdate {
    /// The header chunk.
    pub header: pb::Header,
    /// The weights (empty for an update of statistics alone).
    pub params: ParamSet,
    /// The statistics, by name.
    pub statistics: BTreeMap<String, StatisticTensor>,
    /// SHA-256 of the payload's bytes, lowercase hex.
    pub sha256: String,
}

/// Like [`Assembler`], but decodes each chunk into tensors as it arrives
/// instead of keeping the bytes: what a server receiving updates wants.
/// An update then costs one decoded model in memory, not its bytes plus
/// a decoded copy, and each byte is read once (hashed and decoded in the
/// same pass over the chunk). Non-finite values are refused as soon as
/// they arrive; the tensors come out only from
/// [`DecodingAssembler::finish`], after the length and hash are verified.
#[derive(Debug)]
pub struct DecodingAssembler {
    framing: Framing,
    decoder: TensorDecoder,
}

impl DecodingAssembler {
    /// Starts from the first chunk, which must be a header announcing at
    /// most `limit` bytes.
    pub fn start(first: pb::Chunk, limit: u64) -> Result<Self, WireError> {
        let framing = Framing::start(first, limit)?;
        let decoder = TensorDecoder::new(&framing.header.manifest, &framing.header.statistics)?;
        Ok(Self { framing, decoder })
    }

    /// The header.
    pub fn header(&self) -> &pb::Header {
        &self.framing.header
    }

    /// Adds and decodes the next chunk.
    pub fn push(&mut self, chunk: pb::Chunk) -> Result<(), WireError> {
        let data = self.framing.data(chunk)?;
        self.decoder.push(&data)
    }

    /// Bytes received so far.
    pub fn received(&self) -> u64 {
        self.framing.received
    }

    /// Checks the length and the hash and returns the decoded update.
    pub fn finish(self) -> Result<ReceivedUpdate, WireError> {
        let (header, sha256) = self.framing.finish()?;
        let (params, statistics) = self.decoder.finish()?;
        Ok(ReceivedUpdate {
            header,
            params,
            statistics,
            sha256,
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
