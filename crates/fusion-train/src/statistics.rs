//! The statistics a data-aware strategy asks a client for (RegMean's Gram
//! matrices, layer-wise least squares' Gram matrices and cross terms),
//! computed by forward passes over the client's own data. They are second
//! moments of the client's layer inputs and activations: labels are never
//! read, and nothing is trained. [`requested_statistics`] routes an
//! exchange's names to these and to the norms' moments.

use std::collections::BTreeMap;

use burn::tensor::{Device, Tensor};
use fusion_core::{ParamSet, StatisticKind, StatisticRequest, StatisticTensor, pack_upper};
use fusion_data::Dataset;
use fusion_models::Mlp;

use crate::batch_norm::batch_norm_moments;
use crate::error::TrainError;
use crate::evaluate::EVAL_BATCH;
use crate::repair::norm_output_moments;
use crate::tensors::{host, inputs};

/// One requested statistic and its running sum. A cross term is summed as
/// the cross-Gram `H = Σ x̃ x_ownᵀ` (inputs of the layer in the reference
/// and in the client's own model, both with the 1 appended) and turned
/// into `Σ x̃ yᵀ = H [W | b]ᵀ` in f64 at the end: the pre-activations are
/// never rounded to f32, so a cross term is consistent with the Gram
/// matrix to f64 precision (where they coincide, identical clients give
/// exactly their model back instead of f32 noise amplified by the ridge).
struct Sum {
    request: StatisticKind,
    name: String,
    shape: Vec<usize>,
    layer: fusion_core::LinearLayer,
    index: usize,
    /// `k`, the layer's augmented inputs.
    rows: usize,
    values: Vec<f64>,
}

/// Every statistic of an exchange, whatever its kind: `moments:` of
/// BatchNorm inputs ([`batch_norm_moments`]) and `outputs:` of norm
/// outputs ([`norm_output_moments`]) in `reference` (the exchange's
/// model; `own` when `None`), `gram:` and `cross:` as
/// [`client_statistics`] defines them. What a built-in client computes
/// for any exchange, `batch` being its training batch size.
pub fn requested_statistics(
    own: &ParamSet,
    reference: Option<&ParamSet>,
    names: &[String],
    data: &Dataset,
    batch: usize,
    device: &Device,
) -> Result<BTreeMap<String, StatisticTensor>, TrainError> {
    let of = |prefix: &str| -> Vec<String> {
        names
            .iter()
            .filter(|n| n.split_once(':').is_some_and(|(p, _)| p == prefix))
            .cloned()
            .collect()
    };
    let (moments, outputs) = (of("moments"), of("outputs"));
    let linear: Vec<String> = names
        .iter()
        .filter(|n| !moments.contains(n) && !outputs.contains(n))
        .cloned()
        .collect();
    let model = reference.unwrap_or(own);
    let mut all = client_statistics(own, reference, &linear, data, device)?;
    if !moments.is_empty() {
        all.extend(batch_norm_moments(model, &moments, data, batch, device)?);
    }
    all.extend(norm_output_moments(model, &outputs, data, batch, device)?);
    Ok(all)
}

/// Computes the statistics named in `names` (`gram:layers.0`,
/// `cross:layers.2`, …) over all of `data`, as defined by
/// [`StatisticKind`]: `x̃` is each layer's input in `reference` (the
/// exchange's model; the client's own model `own` when `None`) with a 1
/// appended for the bias, and `y` the pre-activation in `own`.
///
/// Batches run in f32 on `device` and are summed in f64, so a large shard
/// loses no precision to the sum; the statistics are sent in f64 too. Errors name a statistic that does not
/// fit the model.
pub fn client_statistics(
    own: &ParamSet,
    reference: Option<&ParamSet>,
    names: &[String],
    data: &Dataset,
    device: &Device,
) -> Result<BTreeMap<String, StatisticTensor>, TrainError> {
    if names.is_empty() {
        return Ok(BTreeMap::new());
    }
    if data.is_empty() {
        return Err(TrainError::EmptyData("the statistics' data"));
    }
    let own_model = Mlp::from_params(own, device)?;
    own_model.check_data(data.features(), data.classes())?;
    let reference_model = match reference {
        Some(r) => Some(Mlp::from_params(r, device)?),
        None => None,
    };
    let mut sums = Vec::with_capacity(names.len());
    for name in names {
        let (request, layer) =
            StatisticRequest::parse(name, own).map_err(|e| TrainError::BadSetting {
                name: "statistic",
                value: name.clone(),
                reason: e.to_string(),
            })?;
        let index = usize::try_from(layer.index).unwrap_or(usize::MAX);
        if layer.name != format!("layers.{index}") || index >= own_model.layers.len() {
            return Err(TrainError::BadSetting {
                name: "statistic",
                value: name.clone(),
                reason: "the built-in MLP names its layers `layers.{i}`".into(),
            });
        }
        let rows = layer.augmented_inputs();
        sums.push(Sum {
            request: request.kind,
            name: request.name(),
            shape: request.shape.clone(),
            layer,
            index,
            rows,
            values: vec![0.0; rows * rows],
        });
    }
    let deepest = sums.iter().map(|s| s.index).max().unwrap_or(0);
    let indices: Vec<usize> = (0..data.len()).collect();
    for chunk in indices.chunks(EVAL_BATCH) {
        let (x, _) = data.batch(chunk);
        let x = inputs(x, chunk.len(), data.features(), device);
        let own_inputs = layer_inputs(&own_model, x.clone(), deepest);
        let reference_inputs = match &reference_model {
            Some(m) => layer_inputs(m, x, deepest),
            None => own_inputs.clone(),
        };
        // Each layer's x̃ᵀx̃ once per batch: a Gram matrix and, without a
        // reference (the two inputs are one tensor), the cross-Gram too.
        let mut grams: Vec<Option<Vec<f32>>> = vec![None; deepest + 1];
        for sum in &mut sums {
            let bias = sum.layer.bias.is_some();
            let xt = || augmented(reference_inputs[sum.index].clone(), bias, device);
            let product = match sum.request {
                StatisticKind::Cross if reference_model.is_some() => {
                    let own = augmented(own_inputs[sum.index].clone(), bias, device);
                    &host(xt().transpose().matmul(own))
                }
                _ => &*grams[sum.index].get_or_insert_with(|| {
                    let x = xt();
                    host(x.clone().transpose().matmul(x))
                }),
            };
            for (acc, v) in sum.values.iter_mut().zip(product) {
                *acc += f64::from(*v);
            }
        }
    }
    let mut out = BTreeMap::new();
    for sum in sums {
        let values = match sum.request {
            StatisticKind::Gram => pack_upper(&sum.values, sum.rows),
            StatisticKind::Cross => times_augmented_weight(&sum.values, &sum.layer, own)?,
            // `StatisticRequest::parse` refuses a norm's moments, which
            // `requested_statistics` routes elsewhere.
            StatisticKind::Moments | StatisticKind::Outputs => {
                return Err(TrainError::BadSetting {
                    name: "statistic",
                    value: sum.name,
                    reason: "a norm's moments come from requested_statistics".into(),
                });
            }
        };
        let name = sum.name;
        let tensor =
            StatisticTensor::new(&name, sum.shape, values).map_err(|e| TrainError::BadSetting {
                name: "statistic",
                value: name.clone(),
                reason: e.to_string(),
            })?;
        out.insert(name, tensor);
    }
    Ok(out)
}

/// `H [W | b]ᵀ` in f64: the cross-Gram `H` (`k × k`) times the layer's
/// augmented weight in `params`, `k × out`.
fn times_augmented_weight(
    h: &[f64],
    layer: &fusion_core::LinearLayer,
    params: &ParamSet,
) -> Result<Vec<f64>, TrainError> {
    let (out, inputs, k) = (layer.outputs, layer.inputs, layer.augmented_inputs());
    let missing = |name: &str| TrainError::BadSetting {
        name: "statistic",
        value: name.to_owned(),
        reason: "the model has no such tensor".into(),
    };
    let w = params
        .get(&layer.weight)
        .ok_or_else(|| missing(&layer.weight))?
        .data();
    let bias = match &layer.bias {
        Some(b) => Some(params.get(b).ok_or_else(|| missing(b))?.data()),
        None => None,
    };
    // Row j of [W | b]ᵀ: input j's weight into every output.
    let mut wt = vec![0.0f64; k * out];
    for o in 0..out {
        for j in 0..inputs {
            wt[j * out + o] = f64::from(w[o * inputs + j]);
        }
        if let Some(b) = bias {
            wt[inputs * out + o] = f64::from(b[o]);
        }
    }
    let mut c = vec![0.0f64; k * out];
    for a in 0..k {
        let row = &mut c[a * out..(a + 1) * out];
        for (j, &hv) in h[a * k..(a + 1) * k].iter().enumerate() {
            if hv == 0.0 {
                continue;
            }
            for (cv, &wv) in row.iter_mut().zip(&wt[j * out..(j + 1) * out]) {
                *cv += hv * wv;
            }
        }
    }
    Ok(c)
}

/// The inputs of layers `0..=deepest`: the data, then each hidden layer's
/// post-ReLU activation.
fn layer_inputs(model: &Mlp, x: Tensor<2>, deepest: usize) -> Vec<Tensor<2>> {
    let mut out = Vec::with_capacity(deepest + 1);
    let mut h = x;
    for layer in model.layers.iter().take(deepest) {
        out.push(h.clone());
        h = burn::tensor::activation::relu(layer.forward(h));
    }
    out.push(h);
    out
}

/// `x` with a column of ones appended (the bias's input) when the layer
/// has a bias, else `x`.
fn augmented(x: Tensor<2>, bias: bool, device: &Device) -> Tensor<2> {
    if !bias {
        return x;
    }
    let [n, _] = x.dims();
    Tensor::cat(vec![x, Tensor::<2>::ones([n, 1], device)], 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fusion_core::ComputeBackend;

    /// Layer `l`'s augmented input and pre-activation, in plain f64.
    fn io(params: &ParamSet, x: &[f32], l: usize) -> (Vec<f64>, Vec<f64>) {
        let mut h: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
        for i in 0..=l {
            let w = params.get(&format!("layers.{i}.weight")).expect("w");
            let b = params.get(&format!("layers.{i}.bias")).expect("b");
            let (out, inp) = (w.shape()[0], w.shape()[1]);
            let y: Vec<f64> = (0..out)
                .map(|o| {
                    f64::from(b.data()[o])
                        + (0..inp)
                            .map(|j| f64::from(w.data()[o * inp + j]) * h[j])
                            .sum::<f64>()
                })
                .collect();
            if i == l {
                h.push(1.0);
                return (h, y);
            }
            h = y.into_iter().map(|v| v.max(0.0)).collect();
        }
        unreachable!("the loop returns at i == l")
    }

    #[test]
    fn statistics_match_a_plain_computation() {
        let device = ComputeBackend::Flex.device().expect("flex");
        let data = fusion_data::DataSource::Embedded
            .load()
            .expect("sample")
            .train
            .head(300);
        let widths = [data.features(), 16, 12, data.classes()];
        let own = fusion_core::synthetic::random_mlp(&widths, 1);
        let merged = fusion_core::synthetic::random_mlp(&widths, 2);
        let names = vec!["gram:layers.1".to_owned(), "cross:layers.1".to_owned()];
        let got = client_statistics(&own, Some(&merged), &names, &data, &device).expect("stats");
        let k = 17;
        let mut gram = vec![0.0; k * k];
        let mut cross = vec![0.0; k * 12];
        for i in 0..data.len() {
            let (x, _) = data.batch(&[i]);
            let (xt, _) = io(&merged, &x, 1);
            let (_, y) = io(&own, &x, 1);
            for a in 0..k {
                for b in 0..k {
                    gram[a * k + b] += xt[a] * xt[b];
                }
                for o in 0..12 {
                    cross[a * 12 + o] += xt[a] * y[o];
                }
            }
        }
        let close = |got: &[f64], want: &[f64]| {
            assert_eq!(got.len(), want.len());
            for (g, w) in got.iter().zip(want) {
                assert!((g - w).abs() <= 1e-4 * w.abs().max(1.0), "{g} vs {w}");
            }
        };
        close(got["gram:layers.1"].data(), &pack_upper(&gram, k));
        close(got["cross:layers.1"].data(), &cross);
        assert_eq!(got["gram:layers.1"].shape(), &[k * (k + 1) / 2]);
        assert_eq!(got["cross:layers.1"].shape(), &[k, 12]);
        // Without a reference, x̃ comes from the client's own model.
        let own_only = client_statistics(&own, None, &names[..1], &data, &device).expect("stats");
        let mut own_gram = vec![0.0; k * k];
        for i in 0..data.len() {
            let (x, _) = data.batch(&[i]);
            let (xt, _) = io(&own, &x, 1);
            for a in 0..k {
                for b in 0..k {
                    own_gram[a * k + b] += xt[a] * xt[b];
                }
            }
        }
        close(own_only["gram:layers.1"].data(), &pack_upper(&own_gram, k));
        let err = client_statistics(&own, None, &["gram:layers.9".into()], &data, &device)
            .expect_err("no such layer");
        assert!(err.to_string().contains("names no linear layer"), "{err}");
    }
}
