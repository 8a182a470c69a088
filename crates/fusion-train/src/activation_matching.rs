//! Activation matching (Ainsworth et al., §3.1): align B's hidden units to
//! A's by how their post-ReLU activations correlate over data, one linear
//! assignment per hidden layer.
//!
//! Unlike weight matching this needs data and forward passes, so it lives
//! here and not in the pure engine; the assignment itself is the engine's
//! exact solver.

use burn::tensor::{Device, Tensor};
use fusion_core::{LapSolver, PermError, Permutation, Sense, ValidatedSpec};
use fusion_data::Dataset;
use fusion_models::{Mlp, Network};

use crate::error::TrainError;
use crate::evaluate::EVAL_BATCH;
use crate::tensors::{host, images, inputs};

/// Images per batch when matching CNN activations: every position of a
/// map is a row, so a batch of 100 28×28 images is 78,400 rows per layer.
const CONV_BATCH: usize = 100;

/// Permutations aligning `b` to `a`, one per permutation of `spec` (which
/// must be the MLP's spec, validated against `a`'s parameters), from the
/// Pearson correlation of the two models' activations over `data`.
///
/// For hidden layer `k`, entry (i, j) of the correlation matrix pairs A's
/// unit i with B's unit j; the assignment maximising total correlation
/// gives slot i of B' = unit j of B.
pub fn activation_matching(
    spec: &ValidatedSpec,
    a: &Mlp,
    b: &Mlp,
    data: &Dataset,
    device: &Device,
) -> Result<Vec<Permutation>, TrainError> {
    if data.is_empty() {
        return Err(TrainError::EmptyData("activation data"));
    }
    a.check_data(data.features(), data.classes())?;
    let widths = a.widths();
    let hidden = &widths[1..widths.len() - 1];
    let mut stats: Vec<LayerSums> = hidden.iter().map(|&n| LayerSums::new(n, device)).collect();
    let indices: Vec<usize> = (0..data.len()).collect();
    for chunk in indices.chunks(EVAL_BATCH) {
        let (x, _) = data.batch(chunk);
        let x = inputs(x, chunk.len(), data.features(), device);
        let acts_a = a.hidden_activations(x.clone());
        let acts_b = b.hidden_activations(x);
        for ((s, ha), hb) in stats.iter_mut().zip(acts_a).zip(acts_b) {
            s.add(ha, hb);
        }
    }
    let mut solver = LapSolver::new();
    let mut by_layer = Vec::with_capacity(hidden.len());
    for s in stats {
        let corr = s.correlation();
        let n = s.width;
        let assignment = solver.solve(&corr, n, Sense::Maximize)?;
        by_layer.push(assignment.row_to_col);
    }
    // Each layer's permutation goes where the spec reorders that layer's
    // weight rows, so this does not depend on how the spec names or orders them.
    let mut slots: Vec<Option<Vec<usize>>> = vec![None; spec.len()];
    for (k, order) in by_layer.into_iter().enumerate() {
        let tensor = format!("layers.{k}.weight");
        let p = spec
            .acting_on(&tensor, 0)
            .ok_or(PermError::MissingTensor(tensor))?;
        slots[p] = Some(order);
    }
    let mut perms = Vec::with_capacity(spec.len());
    for (name, slot) in spec.names().iter().zip(slots) {
        let order = slot.ok_or_else(|| {
            PermError::MissingTensor(format!("{name} acts on no hidden layer's weight rows"))
        })?;
        perms.push(Permutation::from_vec(name, order)?);
    }
    Ok(perms)
}

/// Activation matching for any built-in network: the MLP as
/// [`activation_matching`]; a CNN by the Pearson correlation of each
/// channel over batch × height × width (every position of every image is
/// one observation), with `spec` the network's built-in spec. A residual
/// stream is observed after every block that adds into it; its
/// correlation matrices are summed before the one assignment.
pub fn activation_matching_network(
    spec: &ValidatedSpec,
    a: &Network,
    b: &Network,
    data: &Dataset,
    device: &Device,
) -> Result<Vec<Permutation>, TrainError> {
    if let (Network::Mlp(a), Network::Mlp(b)) = (a, b) {
        return activation_matching(spec, a, b, data, device);
    }
    if data.is_empty() {
        return Err(TrainError::EmptyData("activation data"));
    }
    a.check_data(data.shape(), data.classes())?;
    b.check_data(data.shape(), data.classes())?;
    let mut taps: Vec<(String, LayerSums)> = Vec::new();
    let indices: Vec<usize> = (0..data.len()).collect();
    for chunk in indices.chunks(CONV_BATCH) {
        let (x, _) = data.batch(chunk);
        let x = images(x, chunk.len(), data.shape(), device);
        let (acts_a, acts_b) = (a.matching_activations(x.clone()), b.matching_activations(x));
        if taps.is_empty() {
            taps = acts_a
                .iter()
                .map(|(name, t)| (name.clone(), LayerSums::new(t.dims()[1], device)))
                .collect();
        }
        for ((_, sums), ((_, ha), (_, hb))) in taps.iter_mut().zip(acts_a.into_iter().zip(acts_b)) {
            sums.add(ha, hb);
        }
    }
    let mut solver = LapSolver::new();
    let mut perms = Vec::with_capacity(spec.len());
    for (name, &size) in spec.names().iter().zip(spec.sizes()) {
        let mut total = vec![0.0; size * size];
        let mut seen = 0;
        for (_, sums) in taps.iter().filter(|(tap, _)| tap == name) {
            if sums.width != size {
                return Err(PermError::MissingTensor(format!(
                    "{name}: activations have {} channels, the spec {size}",
                    sums.width
                ))
                .into());
            }
            for (t, c) in total.iter_mut().zip(sums.correlation()) {
                *t += c;
            }
            seen += 1;
        }
        if seen == 0 {
            return Err(PermError::MissingTensor(format!(
                "{name}: the network reports no activations for this permutation"
            ))
            .into());
        }
        let assignment = solver.solve(&total, size, Sense::Maximize)?;
        perms.push(Permutation::from_vec(name, assignment.row_to_col)?);
    }
    Ok(perms)
}

/// Running sums for one hidden layer's correlation, kept on the device.
///
/// Sums are of activations minus a per-unit shift (the first batch's mean):
/// covariance is unchanged by a shift, and without it `E[x²] − E[x]²` in
/// f32 cancels catastrophically for units whose mean is large against
/// their spread, which scrambles the matching of those units.
struct LayerSums {
    width: usize,
    /// Rows (observations) added so far.
    rows: usize,
    shift: Option<(Tensor<1>, Tensor<1>)>,
    sum_a: Tensor<1>,
    sum_b: Tensor<1>,
    sq_a: Tensor<1>,
    sq_b: Tensor<1>,
    cross: Tensor<2>,
}

impl LayerSums {
    fn new(width: usize, device: &Device) -> Self {
        Self {
            width,
            rows: 0,
            shift: None,
            sum_a: Tensor::zeros([width], device),
            sum_b: Tensor::zeros([width], device),
            sq_a: Tensor::zeros([width], device),
            sq_b: Tensor::zeros([width], device),
            cross: Tensor::zeros([width, width], device),
        }
    }

    /// Adds a batch of activations `[n, width]` of both models.
    fn add(&mut self, a: Tensor<2>, b: Tensor<2>) {
        self.rows += a.dims()[0];
        let (shift_a, shift_b) = self
            .shift
            .get_or_insert_with(|| {
                (
                    a.clone().mean_dim(0).squeeze_dim(0),
                    b.clone().mean_dim(0).squeeze_dim(0),
                )
            })
            .clone();
        let a = a - shift_a.unsqueeze_dim(0);
        let b = b - shift_b.unsqueeze_dim(0);
        self.sum_a = self.sum_a.clone() + a.clone().sum_dim(0).squeeze_dim(0);
        self.sum_b = self.sum_b.clone() + b.clone().sum_dim(0).squeeze_dim(0);
        self.sq_a = self.sq_a.clone() + a.clone().powf_scalar(2.0).sum_dim(0).squeeze_dim(0);
        self.sq_b = self.sq_b.clone() + b.clone().powf_scalar(2.0).sum_dim(0).squeeze_dim(0);
        self.cross = self.cross.clone() + a.transpose().matmul(b);
    }

    /// Pearson correlation matrix (row-major, A's units by B's), computed in
    /// f64 from the sums. A unit that never varies (a dead ReLU) gets
    /// correlation 0 with everything rather than NaN.
    fn correlation(&self) -> Vec<f64> {
        let n = self.rows.max(1) as f64;
        let to64 = |t: &Tensor<1>| {
            host(t.clone())
                .into_iter()
                .map(f64::from)
                .collect::<Vec<_>>()
        };
        let (sa, sb, qa, qb) = (
            to64(&self.sum_a),
            to64(&self.sum_b),
            to64(&self.sq_a),
            to64(&self.sq_b),
        );
        let cross = host(self.cross.clone());
        let std = |s: f64, q: f64| ((q / n - (s / n).powi(2)).max(0.0)).sqrt();
        let sd_a: Vec<f64> = sa.iter().zip(&qa).map(|(&s, &q)| std(s, q)).collect();
        let sd_b: Vec<f64> = sb.iter().zip(&qb).map(|(&s, &q)| std(s, q)).collect();
        let w = self.width;
        let mut corr = vec![0.0; w * w];
        for i in 0..w {
            for j in 0..w {
                let cov = f64::from(cross[i * w + j]) / n - sa[i] / n * sb[j] / n;
                let denom = sd_a[i] * sd_b[j];
                corr[i * w + j] = if denom > 1e-12 { cov / denom } else { 0.0 };
            }
        }
        corr
    }
}
