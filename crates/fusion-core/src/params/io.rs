//! safetensors reading and writing.

use std::borrow::Cow;

use safetensors::{Dtype, SafeTensors, View};

use super::{ParamSet, ParamTensor, ParamsError, RawTensor, natural_cmp};

/// One tensor's entry in a safetensors header, for `fusion inspect`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TensorInfo {
    /// Tensor name.
    pub name: String,
    /// dtype as safetensors spells it (`F32`, `BF16`, …).
    pub dtype: String,
    /// Shape, outermost first.
    pub shape: Vec<usize>,
}

/// Lists the tensors of a safetensors file without converting any data.
pub fn describe_safetensors(bytes: &[u8]) -> Result<Vec<TensorInfo>, ParamsError> {
    let st =
        SafeTensors::deserialize(bytes).map_err(|e| ParamsError::Safetensors(e.to_string()))?;
    let mut infos: Vec<TensorInfo> = st
        .iter()
        .map(|(name, view)| TensorInfo {
            name: name.to_owned(),
            dtype: format!("{:?}", view.dtype()),
            shape: view.shape().to_vec(),
        })
        .collect();
    infos.sort_by(|a, b| natural_cmp(&a.name, &b.name));
    Ok(infos)
}

impl ParamSet {
    /// Reads a safetensors file's bytes.
    ///
    /// F32, F16, BF16 and F64 tensors become `f32`; integer and bool tensors
    /// are kept as [`RawTensor`]s and written back unchanged. Tensors are
    /// ordered by [`natural_cmp`] of their names, the model's own order for
    /// the usual `layers.{i}` naming.
    pub fn from_safetensors(bytes: &[u8]) -> Result<Self, ParamsError> {
        let st =
            SafeTensors::deserialize(bytes).map_err(|e| ParamsError::Safetensors(e.to_string()))?;
        let mut views: Vec<_> = st.iter().collect();
        views.sort_by(|a, b| natural_cmp(a.0, b.0));
        let mut set = ParamSet::new();
        for (name, view) in views {
            let shape = view.shape().to_vec();
            let data = view.data();
            let values: Option<Vec<f32>> = match view.dtype() {
                Dtype::F32 => Some(decode(data, f32::from_le_bytes)),
                Dtype::F16 => Some(decode(data, |b| half::f16::from_le_bytes(b).to_f32())),
                Dtype::BF16 => Some(decode(data, |b| half::bf16::from_le_bytes(b).to_f32())),
                Dtype::F64 => Some(decode(data, |b| f64::from_le_bytes(b) as f32)),
                Dtype::BOOL
                | Dtype::U8
                | Dtype::I8
                | Dtype::I16
                | Dtype::U16
                | Dtype::I32
                | Dtype::U32
                | Dtype::I64
                | Dtype::U64 => None,
                other => {
                    return Err(ParamsError::UnsupportedDtype {
                        name: name.to_owned(),
                        dtype: format!("{other:?}"),
                    });
                }
            };
            match values {
                Some(values) => set.insert(name, ParamTensor::new(name, shape, values)?)?,
                None => set.insert_passthrough(
                    name,
                    RawTensor {
                        dtype: view.dtype(),
                        shape,
                        bytes: data.to_vec(),
                    },
                )?,
            }
        }
        if set.is_empty() {
            return Err(ParamsError::Empty);
        }
        Ok(set)
    }

    /// Writes the set as safetensors bytes: float tensors as F32, carried
    /// tensors as they came.
    pub fn to_safetensors(&self) -> Result<Vec<u8>, ParamsError> {
        self.to_safetensors_with_metadata(None)
    }

    /// [`ParamSet::to_safetensors`] with string metadata in the header
    /// (`__metadata__`), which travels inside the one file: the federated
    /// server stores the round a global model belongs to there, so the model
    /// and its round can never disagree after a crash.
    pub fn to_safetensors_with_metadata(
        &self,
        metadata: Option<std::collections::HashMap<String, String>>,
    ) -> Result<Vec<u8>, ParamsError> {
        let floats = self.iter().map(|(name, t)| {
            (
                name.to_owned(),
                Entry {
                    dtype: Dtype::F32,
                    shape: t.shape(),
                    bytes: le_bytes(t.data()),
                },
            )
        });
        let raws = self.passthrough().iter().map(|(name, raw)| {
            (
                name.clone(),
                Entry {
                    dtype: raw.dtype,
                    shape: &raw.shape,
                    bytes: Cow::Borrowed(&raw.bytes),
                },
            )
        });
        safetensors::serialize(floats.chain(raws), metadata)
            .map_err(|e| ParamsError::Safetensors(e.to_string()))
    }
}

/// `values` as little-endian bytes: borrowed where memory already is
/// little-endian (x86, ARM), so writing a model costs no copy of it.
fn le_bytes(values: &[f32]) -> Cow<'_, [u8]> {
    if cfg!(target_endian = "little") {
        Cow::Borrowed(bytemuck::cast_slice(values))
    } else {
        Cow::Owned(values.iter().flat_map(|x| x.to_le_bytes()).collect())
    }
}

/// Decodes little-endian values of `N` bytes each. safetensors has already
/// checked that the byte length matches the shape and dtype.
fn decode<const N: usize>(bytes: &[u8], f: impl Fn([u8; N]) -> f32) -> Vec<f32> {
    bytes
        .chunks_exact(N)
        .map(|c| {
            let mut b = [0u8; N];
            b.copy_from_slice(c);
            f(b)
        })
        .collect()
}

/// A tensor ready for `safetensors::serialize`.
struct Entry<'a> {
    dtype: Dtype,
    shape: &'a [usize],
    bytes: Cow<'a, [u8]>,
}

impl View for Entry<'_> {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

/// The `__metadata__` map of a safetensors file (empty when it has none).
pub fn safetensors_metadata(
    bytes: &[u8],
) -> Result<std::collections::HashMap<String, String>, ParamsError> {
    let (_, metadata) = safetensors::SafeTensors::read_metadata(bytes)
        .map_err(|e| ParamsError::Safetensors(e.to_string()))?;
    Ok(metadata.metadata().clone().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use safetensors::tensor::TensorView;

    use super::*;

    fn sample() -> ParamSet {
        let mut s = ParamSet::new();
        s.insert(
            "layers.10.weight",
            ParamTensor::new("", vec![2, 2], vec![1.0, -2.5, 3.25, 0.0]).expect("ok"),
        )
        .expect("ok");
        s.insert(
            "layers.2.bias",
            ParamTensor::new("", vec![3], vec![0.5, 1e-3, -7.0]).expect("ok"),
        )
        .expect("ok");
        s.insert_passthrough(
            "bn.num_batches_tracked",
            RawTensor {
                dtype: Dtype::I64,
                shape: vec![],
                bytes: 42i64.to_le_bytes().to_vec(),
            },
        )
        .expect("ok");
        s
    }

    #[test]
    fn round_trip_is_exact_and_ordered_naturally() {
        let s = sample();
        let bytes = s.to_safetensors().expect("serialize");
        let back = ParamSet::from_safetensors(&bytes).expect("parse");
        assert_eq!(
            back.names().collect::<Vec<_>>(),
            ["layers.2.bias", "layers.10.weight"]
        );
        assert_eq!(back.get("layers.10.weight"), s.get("layers.10.weight"));
        assert_eq!(back.get("layers.2.bias"), s.get("layers.2.bias"));
        assert_eq!(back.passthrough(), s.passthrough());
    }

    #[test]
    fn half_precision_inputs_are_widened() {
        let values = [1.5f32, -0.25, 65504.0, 3.0e-5];
        let f16: Vec<u8> = values
            .iter()
            .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
            .collect();
        let bf16: Vec<u8> = values
            .iter()
            .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
            .collect();
        let mut tensors = HashMap::new();
        tensors.insert(
            "h".to_string(),
            TensorView::new(Dtype::F16, vec![4], &f16).expect("view"),
        );
        tensors.insert(
            "b".to_string(),
            TensorView::new(Dtype::BF16, vec![2, 2], &bf16).expect("view"),
        );
        let bytes = safetensors::serialize(tensors, None).expect("serialize");
        let s = ParamSet::from_safetensors(&bytes).expect("parse");
        let h = s.get("h").expect("h");
        for (&got, &want) in h.data().iter().zip(&values) {
            assert_eq!(got, half::f16::from_f32(want).to_f32());
        }
        assert!((h.data()[0] - 1.5).abs() < 1e-6);
        let b = s.get("b").expect("b");
        assert_eq!(b.shape(), &[2, 2]);
        for (&got, &want) in b.data().iter().zip(&values) {
            assert_eq!(got, half::bf16::from_f32(want).to_f32());
        }
        let info = describe_safetensors(&bytes).expect("describe");
        assert_eq!(info[0].dtype, "BF16");
        assert_eq!(info[1].dtype, "F16");
    }

    #[test]
    fn garbage_is_a_clear_error() {
        let err = ParamSet::from_safetensors(b"not a model").expect_err("garbage");
        assert!(
            err.to_string().starts_with("not a valid safetensors file"),
            "{err}"
        );
        let bytes = sample().to_safetensors().expect("ok");
        let err = ParamSet::from_safetensors(&bytes[..bytes.len() - 3]).expect_err("truncated");
        assert!(
            err.to_string().starts_with("not a valid safetensors file"),
            "{err}"
        );
    }
}
