//! A model as it travels: tensor manifest, raw little-endian bytes, hash.

use std::collections::BTreeMap;

use bytes::Bytes;
use fusion_core::{ParamSet, ParamTensor, StatisticTensor, natural_cmp};
use sha2::{Digest, Sha256};

use crate::error::WireError;
use crate::pb;

/// The dtype of weights in protocol version 2.
pub const F32: &str = "F32";

/// The dtype of statistics in protocol version 2: a least-squares merge
/// needs its Gram matrices and cross terms consistent to more than f32's
/// seven digits (see [`StatisticTensor`]).
pub const F64: &str = "F64";

/// A model ready to send, or just received and verified: its manifest
/// (names, dtype, shapes, in order), the tensors' bytes concatenated in
/// that order, and the SHA-256 of those bytes. An update may also carry
/// statistics a strategy asked for (their own manifest section, after the
/// weights' bytes), and an update of statistics alone has no weights.
///
/// Encoding once and slicing the shared [`Bytes`] lets a server stream the
/// same global model to many clients without copying it per client.
#[derive(Clone, Debug)]
pub struct Payload {
    /// Weight tensors in payload order (empty for statistics only).
    pub manifest: Vec<pb::TensorMeta>,
    /// Statistics tensors, after the weights, in payload order.
    pub statistics: Vec<pb::TensorMeta>,
    /// Raw little-endian data: the weights in F32, then the statistics in
    /// F64.
    pub bytes: Bytes,
    /// SHA-256 of `bytes`, lowercase hex.
    pub sha256: String,
}

impl Payload {
    /// Encodes a parameter set. Non-F32 pass-through tensors have no place
    /// in protocol version 2, so a set holding any is refused.
    pub fn from_params(params: &ParamSet) -> Result<Self, WireError> {
        Self::from_update(Some(params), &BTreeMap::new())
    }

    /// Encodes an update: the weights (if any) in canonical order, then the
    /// statistics in name order.
    pub fn from_update(
        params: Option<&ParamSet>,
        statistics: &BTreeMap<String, StatisticTensor>,
    ) -> Result<Self, WireError> {
        let empty = ParamSet::new();
        let params = params.unwrap_or(&empty);
        if let Some((name, _)) = params.passthrough().first() {
            return Err(WireError::Unsendable(format!(
                "tensor `{name}` is not F32; protocol version 2 carries F32 tensors only"
            )));
        }
        let statistics_numel: usize = statistics.values().map(StatisticTensor::numel).sum();
        let mut bytes = Vec::with_capacity(params.numel() * 4 + statistics_numel * 8);
        // Canonical order (natural sort of names), so the same tensors give
        // the same manifest and hash however the set was built or read.
        let mut tensors: Vec<_> = params.iter().collect();
        tensors.sort_by(|a, b| natural_cmp(a.0, b.0));
        let manifest = tensors
            .into_iter()
            .map(|(name, tensor)| append_weights(name, tensor, &mut bytes))
            .collect();
        // Statistics after the weights, in name order (the map's).
        let stats = statistics
            .iter()
            .map(|(name, tensor)| append_statistic(name, tensor, &mut bytes))
            .collect();
        let sha256 = sha256_hex(&bytes);
        Ok(Self {
            manifest,
            statistics: stats,
            bytes: Bytes::from(bytes),
            sha256,
        })
    }

    /// The header chunk announcing this payload.
    pub fn header(&self, round: u32, client_id: &str, examples: u64) -> pb::Header {
        pb::Header {
            round,
            client_id: client_id.to_owned(),
            examples,
            manifest: self.manifest.clone(),
            payload_bytes: self.bytes.len() as u64,
            sha256: self.sha256.clone(),
            exchange: 0,
            statistics: self.statistics.clone(),
            session: String::new(),
        }
    }

    /// The header, then the data in chunks of `chunk_bytes` (at least 1).
    /// The chunks share this payload's buffer.
    pub fn chunks(
        &self,
        header: pb::Header,
        chunk_bytes: usize,
    ) -> impl Iterator<Item = pb::Chunk> + Send + 'static {
        let step = chunk_bytes.max(1);
        let bytes = self.bytes.clone();
        let first = pb::Chunk {
            part: Some(pb::chunk::Part::Header(header)),
        };
        let data = (0..bytes.len()).step_by(step).map(move |start| {
            let end = (start + step).min(bytes.len());
            pb::Chunk {
                part: Some(pb::chunk::Part::Data(bytes.slice(start..end))),
            }
        });
        std::iter::once(first).chain(data)
    }

    /// Decodes the parameters, refusing NaN and infinities (naming the
    /// tensor and element), so a poisoned update never reaches an average.
    pub fn to_params(&self) -> Result<ParamSet, WireError> {
        Ok(self.to_update()?.0)
    }

    /// Decodes the weights and the statistics, refusing NaN and infinities
    /// in either, naming the tensor and element.
    pub fn to_update(&self) -> Result<(ParamSet, BTreeMap<String, StatisticTensor>), WireError> {
        let expected = payload_bytes(&self.manifest, &self.statistics)?;
        if expected != self.bytes.len() as u64 {
            return Err(WireError::Truncated {
                received: self.bytes.len() as u64,
                expected,
            });
        }
        let mut decoder = crate::TensorDecoder::new(&self.manifest, &self.statistics)?;
        decoder.push(&self.bytes)?;
        decoder.finish()
    }
}

/// Appends a weight tensor's little-endian F32 bytes to `bytes`; returns
/// its entry in the manifest.
fn append_weights(name: &str, tensor: &ParamTensor, bytes: &mut Vec<u8>) -> pb::TensorMeta {
    for value in tensor.data() {
        bytes.extend_from_slice(&value.to_le_bytes());
    }
    meta(name, F32, tensor.shape())
}

/// Appends a statistic's little-endian F64 bytes to `bytes`; returns its
/// entry in the statistics manifest.
fn append_statistic(name: &str, tensor: &StatisticTensor, bytes: &mut Vec<u8>) -> pb::TensorMeta {
    for value in tensor.data() {
        bytes.extend_from_slice(&value.to_le_bytes());
    }
    meta(name, F64, tensor.shape())
}

fn meta(name: &str, dtype: &str, shape: &[usize]) -> pb::TensorMeta {
    pb::TensorMeta {
        name: name.to_owned(),
        dtype: dtype.to_owned(),
        shape: shape.iter().map(|&d| d as u64).collect(),
    }
}

/// Bytes a payload with these two manifest sections holds: the weights in
/// F32, the statistics in F64. Other dtypes, and sizes that overflow, are
/// refused (a hostile header cannot make the receiver allocate).
pub fn payload_bytes(
    weights: &[pb::TensorMeta],
    statistics: &[pb::TensorMeta],
) -> Result<u64, WireError> {
    manifest_bytes(weights, F32)?
        .checked_add(manifest_bytes(statistics, F64)?)
        .ok_or_else(|| WireError::Manifest("manifest size overflows".into()))
}

/// Bytes a manifest section of `dtype` (F32 or F64) describes, refusing
/// entries of any other dtype and sizes that overflow.
pub fn manifest_bytes(manifest: &[pb::TensorMeta], dtype: &'static str) -> Result<u64, WireError> {
    let width: u64 = if dtype == F64 { 8 } else { 4 };
    let mut total: u64 = 0;
    for meta in manifest {
        if meta.dtype != dtype {
            return Err(WireError::Dtype {
                name: meta.name.clone(),
                dtype: meta.dtype.clone(),
                expected: dtype,
            });
        }
        let numel = meta
            .shape
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .and_then(|n| n.checked_mul(width))
            .ok_or_else(|| {
                WireError::Manifest(format!("tensor `{}` has an impossible shape", meta.name))
            })?;
        total = total
            .checked_add(numel)
            .ok_or_else(|| WireError::Manifest("manifest size overflows".into()))?;
    }
    Ok(total)
}

/// Checks that `got` describes exactly the tensors of `expected`, naming
/// the first difference.
pub fn check_manifest(
    expected: &[pb::TensorMeta],
    got: &[pb::TensorMeta],
) -> Result<(), WireError> {
    for (i, (e, g)) in expected.iter().zip(got).enumerate() {
        if e.name != g.name {
            return Err(WireError::Manifest(format!(
                "tensor {i} is `{}`, expected `{}`",
                g.name, e.name
            )));
        }
        if e.dtype != g.dtype {
            return Err(WireError::Manifest(format!(
                "tensor `{}` has dtype {}, expected {}",
                g.name, g.dtype, e.dtype
            )));
        }
        if e.shape != g.shape {
            return Err(WireError::Manifest(format!(
                "tensor `{}` has shape {:?}, expected {:?}",
                g.name, g.shape, e.shape
            )));
        }
    }
    if expected.len() != got.len() {
        return Err(WireError::Manifest(format!(
            "{} tensors, expected {}",
            got.len(),
            expected.len()
        )));
    }
    Ok(())
}

/// SHA-256 of a manifest's names, dtypes and shapes: what a client sends at
/// `Join` so that a server refuses a different architecture up front.
pub fn manifest_hash(manifest: &[pb::TensorMeta]) -> String {
    let mut hasher = Sha256::new();
    for meta in manifest {
        hasher.update(meta.name.as_bytes());
        hasher.update([0]);
        hasher.update(meta.dtype.as_bytes());
        for d in &meta.shape {
            hasher.update(d.to_le_bytes());
        }
        hasher.update([0xff]);
    }
    hex(&hasher.finalize())
}

/// SHA-256 of `bytes` as lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Whether `s` is a SHA-256 as [`sha256_hex`] writes it: 64 lowercase hex
/// digits. Hashes a peer sends are checked with this before they are
/// compared or echoed.
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

pub(crate) fn hex(digest: &[u8]) -> String {
    use std::fmt::Write;
    digest.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> ParamSet {
        fusion_core::synthetic::random_mlp(&[5, 7, 3], 1)
    }

    #[test]
    fn round_trips_bit_for_bit_through_chunks() {
        let params = model();
        let payload = Payload::from_params(&params).expect("encodes");
        let header = payload.header(3, "c", 10);
        let chunks: Vec<_> = payload.chunks(header, 16).collect();
        // 5*7+7+7*3+3 = 66 floats = 264 bytes = 17 data chunks of ≤ 16.
        assert_eq!(chunks.len(), 1 + 17);
        let mut it = chunks.into_iter();
        let mut asm =
            crate::Assembler::start(it.next().expect("header"), u64::MAX).expect("header ok");
        for c in it {
            asm.push(c).expect("data ok");
        }
        let got = asm.finish().expect("verifies");
        assert_eq!(got.header.round, 3);
        assert_eq!(got.payload.to_params().expect("decodes"), params);
    }

    #[test]
    fn non_finite_values_are_named() {
        let mut params = model();
        let at = params
            .position("layers.0.bias")
            .expect("named like PyTorch");
        params.at_mut(at).data_mut()[2] = f32::NAN;
        let payload = Payload::from_params(&params).expect("encodes");
        let err = payload.to_params().expect_err("NaN refused").to_string();
        assert!(
            err.contains("layers.0.bias") && err.contains("element 2"),
            "{err}"
        );
    }

    #[test]
    fn manifest_differences_are_named() {
        let a = Payload::from_params(&model()).expect("a");
        let b =
            Payload::from_params(&fusion_core::synthetic::random_mlp(&[5, 8, 3], 1)).expect("b");
        let err = check_manifest(&a.manifest, &b.manifest).expect_err("differs");
        assert!(err.to_string().contains("layers.0."), "{err}");
        assert_ne!(manifest_hash(&a.manifest), manifest_hash(&b.manifest));
        assert!(check_manifest(&a.manifest, &a.manifest).is_ok());
    }

    #[test]
    fn statistics_travel_in_f64_bit_for_bit() {
        let params = model();
        // A value f32 cannot hold: it must come back unrounded.
        let fine = 1.0 + f64::EPSILON;
        let stats = BTreeMap::from([(
            "gram:layers.0".to_owned(),
            StatisticTensor::new("gram:layers.0", vec![3], vec![fine, -2.5, 1e300]).expect("stat"),
        )]);
        let payload = Payload::from_update(Some(&params), &stats).expect("encodes");
        assert_eq!(payload.statistics[0].dtype, F64);
        assert_eq!(payload.bytes.len(), params.numel() * 4 + 3 * 8);
        let (got_params, got_stats) = payload.to_update().expect("decodes");
        assert_eq!(got_params, params);
        assert_eq!(got_stats, stats);

        // A statistic announced as F32 is refused before any data is read.
        let mut header = payload.header(1, "c", 10);
        header.statistics[0].dtype = F32.into();
        header.payload_bytes -= 12;
        let chunk = pb::Chunk {
            part: Some(pb::chunk::Part::Header(header)),
        };
        let err = crate::Assembler::start(chunk, u64::MAX)
            .expect_err("F32 statistic")
            .to_string();
        assert!(
            err.contains("gram:layers.0") && err.contains("must be F64"),
            "{err}"
        );
        let mut nan = stats.clone();
        nan.get_mut("gram:layers.0").expect("stat").data_mut()[1] = f64::NAN;
        let err = Payload::from_update(None, &nan)
            .expect("encodes")
            .to_update()
            .expect_err("NaN")
            .to_string();
        assert!(
            err.contains("gram:layers.0") && err.contains("element 1"),
            "{err}"
        );
    }

    #[test]
    fn hostile_shapes_do_not_overflow() {
        let meta = pb::TensorMeta {
            name: "x".into(),
            dtype: F32.into(),
            shape: vec![u64::MAX, 2],
        };
        assert!(manifest_bytes(&[meta], F32).is_err());
    }
}
