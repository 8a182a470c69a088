//! Decoding a payload's bytes into tensors as they arrive, in any pieces.

use std::collections::BTreeMap;

use fusion_core::{ParamSet, ParamTensor, StatisticTensor};

use crate::error::WireError;
use crate::payload::payload_bytes;
use crate::pb;

/// Turns the bytes of a payload into its weight tensors (F32) and
/// statistics (F64), in whatever pieces they come (chunk boundaries need
/// not fall between values), refusing non-finite values as soon as they
/// arrive and naming the tensor and element.
///
/// A receiver that decodes as it receives never holds the payload's
/// bytes and a decoded copy at once: one update costs one model's worth
/// of memory, and each byte is read once.
#[derive(Debug)]
pub struct TensorDecoder {
    /// Bytes the manifest announces (computed once: a hostile manifest
    /// of many tensors must not make each step cost a pass over it).
    total: u64,
    weights: Vec<pb::TensorMeta>,
    statistics: Vec<pb::TensorMeta>,
    /// Index of the tensor being filled, over weights then statistics.
    index: usize,
    /// Shape and element count of that tensor.
    shape: Vec<usize>,
    numel: usize,
    /// Values of that tensor so far (one of the two is used).
    f32s: Vec<f32>,
    f64s: Vec<f64>,
    /// Bytes of a value split across pieces.
    carry: [u8; 8],
    carry_len: usize,
    params: ParamSet,
    decoded_statistics: BTreeMap<String, StatisticTensor>,
}

impl TensorDecoder {
    /// A decoder for the payload these manifest sections describe. Their
    /// dtypes and sizes are checked first (as [`payload_bytes`] does), so
    /// no allocation exceeds what the manifest announces.
    pub fn new(
        weights: &[pb::TensorMeta],
        statistics: &[pb::TensorMeta],
    ) -> Result<Self, WireError> {
        let total = payload_bytes(weights, statistics)?;
        let mut decoder = Self {
            total,
            weights: weights.to_vec(),
            statistics: statistics.to_vec(),
            index: 0,
            shape: Vec::new(),
            numel: 0,
            f32s: Vec::new(),
            f64s: Vec::new(),
            carry: [0; 8],
            carry_len: 0,
            params: ParamSet::new(),
            decoded_statistics: BTreeMap::new(),
        };
        decoder.open_next()?;
        Ok(decoder)
    }

    /// Decodes the next piece of the payload.
    pub fn push(&mut self, mut data: &[u8]) -> Result<(), WireError> {
        while !data.is_empty() {
            let Some(width) = self.width() else {
                return Err(WireError::Overflow {
                    expected: self.total_bytes(),
                });
            };
            if self.carry_len > 0 || data.len() < width {
                // A value split across pieces: gather its bytes.
                let take = (width - self.carry_len).min(data.len());
                self.carry[self.carry_len..self.carry_len + take].copy_from_slice(&data[..take]);
                self.carry_len += take;
                data = &data[take..];
                if self.carry_len == width {
                    let value = self.carry;
                    self.carry_len = 0;
                    self.take_values(&value[..width])?;
                }
                continue;
            }
            let count = (data.len() / width).min(self.numel - self.filled());
            let (whole, rest) = data.split_at(count * width);
            self.take_values(whole)?;
            data = rest;
        }
        Ok(())
    }

    /// The decoded weights and statistics; `Truncated` unless every
    /// announced byte arrived.
    pub fn finish(self) -> Result<(ParamSet, BTreeMap<String, StatisticTensor>), WireError> {
        if self.width().is_some() || self.carry_len > 0 {
            let expected = self.total_bytes();
            return Err(WireError::Truncated {
                received: self.decoded_bytes(),
                expected,
            });
        }
        Ok((self.params, self.decoded_statistics))
    }

    /// Bytes per value of the tensor being filled; `None` past the last.
    fn width(&self) -> Option<usize> {
        if self.index < self.weights.len() {
            Some(4)
        } else if self.index < self.weights.len() + self.statistics.len() {
            Some(8)
        } else {
            None
        }
    }

    fn filled(&self) -> usize {
        self.f32s.len().max(self.f64s.len())
    }

    fn meta(&self) -> Option<&pb::TensorMeta> {
        self.weights
            .get(self.index)
            .or_else(|| self.statistics.get(self.index - self.weights.len()))
    }

    fn total_bytes(&self) -> u64 {
        self.total
    }

    /// Bytes decoded so far (for a truncation message).
    fn decoded_bytes(&self) -> u64 {
        let before: u64 = self.weights[..self.index.min(self.weights.len())]
            .iter()
            .map(|m| m.shape.iter().product::<u64>() * 4)
            .chain(
                self.statistics[..self.index.saturating_sub(self.weights.len())]
                    .iter()
                    .map(|m| m.shape.iter().product::<u64>() * 8),
            )
            .sum();
        before + (self.filled() * self.width().unwrap_or(0) + self.carry_len) as u64
    }

    /// Decodes whole values (a multiple of the width, within the current
    /// tensor) and closes the tensor when it is full.
    fn take_values(&mut self, bytes: &[u8]) -> Result<(), WireError> {
        let start = self.filled();
        let bad = if self.index < self.weights.len() {
            self.f32s.extend(
                bytes
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            );
            self.f32s[start..]
                .iter()
                .position(|v| !v.is_finite())
                .map(|i| (start + i, f64::from(self.f32s[start + i])))
        } else {
            self.f64s.extend(
                bytes
                    .chunks_exact(8)
                    .map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])),
            );
            self.f64s[start..]
                .iter()
                .position(|v| !v.is_finite())
                .map(|i| (start + i, self.f64s[start + i]))
        };
        if let Some((index, value)) = bad {
            return Err(WireError::NonFinite {
                name: self.meta().map(|m| m.name.clone()).unwrap_or_default(),
                index,
                value,
            });
        }
        if self.filled() == self.numel {
            self.close()?;
            self.open_next()?;
        }
        Ok(())
    }

    /// Stores the full tensor and moves past it.
    fn close(&mut self) -> Result<(), WireError> {
        let meta = self.meta().cloned().ok_or_else(|| WireError::Overflow {
            expected: self.total_bytes(),
        })?;
        let shape = std::mem::take(&mut self.shape);
        if self.index < self.weights.len() {
            let tensor = ParamTensor::new(&meta.name, shape, std::mem::take(&mut self.f32s))
                .map_err(|e| WireError::Manifest(e.to_string()))?;
            self.params
                .insert(&meta.name, tensor)
                .map_err(|e| WireError::Manifest(e.to_string()))?;
        } else {
            let tensor = StatisticTensor::new(&meta.name, shape, std::mem::take(&mut self.f64s))
                .map_err(|e| WireError::Manifest(e.to_string()))?;
            if self
                .decoded_statistics
                .insert(meta.name.clone(), tensor)
                .is_some()
            {
                return Err(WireError::Manifest(format!(
                    "statistic `{}` appears twice",
                    meta.name
                )));
            }
        }
        self.index += 1;
        Ok(())
    }

    /// Prepares the tensor at `index`, storing empty ones at once (in a
    /// loop: a manifest of many empty tensors must not recurse).
    fn open_next(&mut self) -> Result<(), WireError> {
        while let Some(meta) = self.meta() {
            let shape: Vec<usize> = meta
                .shape
                .iter()
                .map(|&d| usize::try_from(d))
                .collect::<Result<_, _>>()
                .map_err(|_| WireError::Manifest(format!("tensor `{}` is too large", meta.name)))?;
            self.numel = shape.iter().product();
            self.shape = shape;
            if self.numel > 0 {
                if self.index < self.weights.len() {
                    self.f32s = Vec::with_capacity(self.numel);
                } else {
                    self.f64s = Vec::with_capacity(self.numel);
                }
                return Ok(());
            }
            self.close()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Payload;

    fn update() -> (ParamSet, BTreeMap<String, StatisticTensor>) {
        let params = fusion_core::synthetic::random_mlp(&[5, 7, 3], 3);
        let stats = BTreeMap::from([
            (
                "gram:a".to_owned(),
                StatisticTensor::new(
                    "gram:a",
                    vec![2, 3],
                    vec![1.0 + f64::EPSILON, -2.0, 3.5, 0.0, 1e300, -7.25],
                )
                .expect("stat"),
            ),
            (
                "gram:empty".to_owned(),
                StatisticTensor::new("gram:empty", vec![0], vec![]).expect("stat"),
            ),
        ]);
        (params, stats)
    }

    /// Decodes `bytes` cut at `cuts` (sorted offsets).
    fn decode_in_pieces(
        payload: &Payload,
        cuts: &[usize],
    ) -> Result<(ParamSet, BTreeMap<String, StatisticTensor>), WireError> {
        let mut decoder = TensorDecoder::new(&payload.manifest, &payload.statistics)?;
        let mut at = 0;
        for &cut in cuts.iter().chain([&payload.bytes.len()]) {
            decoder.push(&payload.bytes[at..cut])?;
            at = cut;
        }
        decoder.finish()
    }

    #[test]
    fn any_cutting_of_the_bytes_decodes_bit_for_bit() {
        let (params, stats) = update();
        let payload = Payload::from_update(Some(&params), &stats).expect("encodes");
        let len = payload.bytes.len();
        // Every single cut (values split at every byte offset, tensor
        // boundaries, the weights/statistics boundary), then many cuts.
        for cut in 0..=len {
            let (p, s) = decode_in_pieces(&payload, &[cut]).expect("decodes");
            assert_eq!((p, s), (params.clone(), stats.clone()), "cut at {cut}");
        }
        let every_byte: Vec<usize> = (1..len).collect();
        assert_eq!(
            decode_in_pieces(&payload, &every_byte).expect("decodes"),
            (params, stats)
        );
    }

    #[test]
    fn short_long_and_non_finite_input_is_refused_by_name() {
        let (mut params, stats) = update();
        let payload = Payload::from_update(Some(&params), &stats).expect("encodes");
        let len = payload.bytes.len();
        let mut decoder = TensorDecoder::new(&payload.manifest, &payload.statistics).expect("ok");
        decoder
            .push(&payload.bytes[..len - 3])
            .expect("so far so good");
        let err = decoder.finish().expect_err("short");
        assert!(
            matches!(err, WireError::Truncated { received, expected } if received == len as u64 - 3 && expected == len as u64),
            "{err}"
        );
        let mut decoder = TensorDecoder::new(&payload.manifest, &payload.statistics).expect("ok");
        decoder.push(&payload.bytes).expect("all of it");
        assert!(matches!(
            decoder.push(&[0]),
            Err(WireError::Overflow { .. })
        ));

        let at = params.position("layers.1.weight").expect("named");
        params.at_mut(at).data_mut()[4] = f32::INFINITY;
        let payload = Payload::from_update(Some(&params), &stats).expect("encodes");
        // The bad value split across two pieces is still named exactly.
        let offset = payload.bytes.len() - stats["gram:a"].numel() * 8 - (21 - 4) * 4 + 2;
        let err = decode_in_pieces(&payload, &[offset]).expect_err("inf");
        assert!(
            matches!(&err, WireError::NonFinite { name, index: 4, .. } if name == "layers.1.weight"),
            "{err}"
        );
    }

    #[test]
    fn many_empty_tensors_decode_in_linear_time_without_recursion() {
        let metas: Vec<pb::TensorMeta> = (0..200_000)
            .map(|i| pb::TensorMeta {
                name: format!("t{i}"),
                dtype: crate::F32.into(),
                shape: vec![0],
            })
            .collect();
        let decoder = TensorDecoder::new(&metas, &[]).expect("empty tensors");
        let (params, stats) = decoder.finish().expect("nothing to read");
        assert_eq!((params.len(), stats.len()), (200_000, 0));
    }
}
