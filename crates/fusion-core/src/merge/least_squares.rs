use super::MergeError;
use super::statistics::add_unpacked;
use crate::params::ParamSet;
use crate::spec::LinearLayer;

/// The normal equations of one linear layer, summed over clients in f64:
/// `A = Σ x̃x̃ᵀ` (`k × k`) and `B = Σ x̃yᵀ` (`k × out`), where `k` is the
/// layer's augmented input width. Solving `A X = B` gives the layer's
/// augmented weight `[W | b]ᵀ` that best maps the inputs to the targets
/// over everyone's data pooled, though the data never left the clients.
#[derive(Clone, Debug)]
pub(crate) struct LayerSystem {
    pub(crate) layer: LinearLayer,
    k: usize,
    a: Vec<f64>,
    b: Vec<f64>,
}

impl LayerSystem {
    pub(crate) fn new(layer: LinearLayer) -> Self {
        let k = layer.augmented_inputs();
        let out = layer.outputs;
        Self {
            layer,
            k,
            a: vec![0.0; k * k],
            b: vec![0.0; k * out],
        }
    }

    /// Adds a client's packed Gram matrix.
    pub(crate) fn add_gram(&mut self, packed: &[f64]) {
        add_unpacked(&mut self.a, packed, self.k, 1.0);
    }

    /// Adds a client's cross term `[k, out]`.
    pub(crate) fn add_cross(&mut self, cross: &[f64]) {
        for (b, &c) in self.b.iter_mut().zip(cross) {
            *b += c;
        }
    }

    /// RegMean's contribution of one client: its Gram matrix with the
    /// off-diagonal shrunk, `G' = αG + (1 − α)·diag(G)`, into `A`, and
    /// `G' [W | b]ᵀ` into `B`, from the client's own weights. Returns
    /// nothing to undo: the caller checks the update before calling.
    pub(crate) fn add_regmean(&mut self, packed: &[f64], params: &ParamSet, alpha: f64) {
        let k = self.k;
        let mut g = vec![0.0; k * k];
        add_unpacked(&mut g, packed, k, 1.0);
        for i in 0..k {
            for j in 0..k {
                if i != j {
                    g[i * k + j] *= alpha;
                }
            }
        }
        let w = augmented_transposed(&self.layer, params);
        let out = self.layer.outputs;
        for (ga, gv) in self.a.iter_mut().zip(&g) {
            *ga += gv;
        }
        for i in 0..k {
            let row = &g[i * k..(i + 1) * k];
            for (j, &gij) in row.iter().enumerate() {
                if gij == 0.0 {
                    continue;
                }
                let w_row = &w[j * out..(j + 1) * out];
                let b_row = &mut self.b[i * out..(i + 1) * out];
                for (b, &wv) in b_row.iter_mut().zip(w_row) {
                    *b += gij * wv;
                }
            }
        }
    }

    /// Solves `(A + λI) X = B + λ W̄ᵀ` with `λ = ridge · mean(diag A)` and
    /// writes `X` back into `merged` as the layer's weight and bias.
    ///
    /// The ridge pulls towards `prior` (the example-weighted FedAvg of the
    /// layer) rather than towards zero, so directions no client's data
    /// excites (dead units make `A` exactly singular) keep the average's
    /// weights, and clients identical in weights and data give exactly
    /// the average (to the f64 rounding of the solve). With
    /// `ridge = 0` a singular system is an error.
    pub(crate) fn solve_into(
        &self,
        ridge: f64,
        prior: &ParamSet,
        merged: &mut ParamSet,
    ) -> Result<(), MergeError> {
        let k = self.k;
        let out = self.layer.outputs;
        let mean_diag = (0..k).map(|i| self.a[i * k + i]).sum::<f64>() / k as f64;
        if mean_diag <= 0.0 && ridge > 0.0 {
            // No client's data reaches this layer at all (every input is
            // 0): nothing to fit, so it keeps the average.
            return Ok(());
        }
        let lambda = ridge * mean_diag;
        let mut a = self.a.clone();
        let mut b = self.b.clone();
        if lambda > 0.0 {
            let w = augmented_transposed(&self.layer, prior);
            for i in 0..k {
                a[i * k + i] += lambda;
            }
            for (bv, wv) in b.iter_mut().zip(&w) {
                *bv += lambda * wv;
            }
        }
        cholesky_solve(&mut a, k, &mut b, out).map_err(|pivot| MergeError::Singular {
            layer: self.layer.name.clone(),
            pivot,
        })?;
        write_augmented(&self.layer, &b, merged)
    }
}

/// `[W | b]ᵀ` of `layer` in `params`, `k × out` row-major, in f64.
fn augmented_transposed(layer: &LinearLayer, params: &ParamSet) -> Vec<f64> {
    let (out, inputs) = (layer.outputs, layer.inputs);
    let k = layer.augmented_inputs();
    let mut t = vec![0.0; k * out];
    if let Some(w) = params.get(&layer.weight) {
        let w = w.data();
        for o in 0..out {
            for i in 0..inputs {
                t[i * out + o] = f64::from(w[o * inputs + i]);
            }
        }
    }
    if let Some(b) = layer.bias.as_ref().and_then(|name| params.get(name)) {
        for (o, &v) in b.data().iter().enumerate() {
            t[inputs * out + o] = f64::from(v);
        }
    }
    t
}

/// Writes a solved `k × out` `[W | b]ᵀ` into `params`, over the layer's
/// tensors (which the caller's model, a copy of the average, holds).
fn write_augmented(
    layer: &LinearLayer,
    solved: &[f64],
    params: &mut ParamSet,
) -> Result<(), MergeError> {
    let (out, inputs) = (layer.outputs, layer.inputs);
    let w = tensor_mut(params, &layer.weight)?;
    for o in 0..out {
        for i in 0..inputs {
            w[o * inputs + i] = solved[i * out + o] as f32;
        }
    }
    if let Some(bias) = &layer.bias {
        let b = tensor_mut(params, bias)?;
        for (o, v) in b.iter_mut().enumerate() {
            *v = solved[inputs * out + o] as f32;
        }
    }
    Ok(())
}

/// The values of tensor `name` of `params`, to overwrite.
fn tensor_mut<'p>(params: &'p mut ParamSet, name: &str) -> Result<&'p mut [f32], MergeError> {
    let position = params
        .position(name)
        .ok_or_else(|| MergeError::BadUpdate(format!("the merged model has no tensor `{name}`")))?;
    Ok(params.at_mut(position).data_mut())
}

/// Solves `A X = B` in place for symmetric positive definite `A` (`n × n`,
/// row-major, overwritten by its Cholesky factor) and `m` right-hand sides
/// (`B`, `n × m`, overwritten by `X`). Errors with the pivot index when
/// `A` is not positive definite (to working precision).
pub(crate) fn cholesky_solve(
    a: &mut [f64],
    n: usize,
    b: &mut [f64],
    m: usize,
) -> Result<(), usize> {
    // A = L Lᵀ, L stored in the lower triangle of `a`.
    let scale = (0..n).map(|i| a[i * n + i].abs()).fold(0.0, f64::max);
    let tiny = scale * 1e-13;
    for j in 0..n {
        let row_j: Vec<f64> = a[j * n..j * n + j].to_vec();
        let d = a[j * n + j] - row_j.iter().map(|v| v * v).sum::<f64>();
        if d.is_nan() || d <= tiny {
            return Err(j);
        }
        let ljj = d.sqrt();
        a[j * n + j] = ljj;
        for i in j + 1..n {
            let row_i = &mut a[i * n..(i + 1) * n];
            let dot: f64 = row_i[..j].iter().zip(&row_j).map(|(x, y)| x * y).sum();
            row_i[j] = (row_i[j] - dot) / ljj;
        }
    }
    // Forward: L Y = B.
    for i in 0..n {
        for p in 0..i {
            let l = a[i * n + p];
            if l == 0.0 {
                continue;
            }
            let (head, tail) = b.split_at_mut(i * m);
            let src = &head[p * m..(p + 1) * m];
            for (t, &s) in tail[..m].iter_mut().zip(src) {
                *t -= l * s;
            }
        }
        let d = a[i * n + i];
        for t in &mut b[i * m..(i + 1) * m] {
            *t /= d;
        }
    }
    // Backward: Lᵀ X = Y.
    for i in (0..n).rev() {
        for p in i + 1..n {
            let l = a[p * n + i];
            if l == 0.0 {
                continue;
            }
            let (head, tail) = b.split_at_mut(p * m);
            let dst = &mut head[i * m..(i + 1) * m];
            for (t, &s) in dst.iter_mut().zip(&tail[..m]) {
                *t -= l * s;
            }
        }
        let d = a[i * n + i];
        for t in &mut b[i * m..(i + 1) * m] {
            *t /= d;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cholesky_matches_a_known_solution() {
        // A = M Mᵀ + I is SPD; pick X, form B = A X, solve back.
        let n = 6;
        let m = 3;
        let mm: Vec<f64> = (0..n * n).map(|i| ((i * 7 % 11) as f64) - 5.0).collect();
        let mut a = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                a[i * n + j] = (0..n).map(|p| mm[i * n + p] * mm[j * n + p]).sum::<f64>()
                    + if i == j { 1.0 } else { 0.0 };
            }
        }
        let x: Vec<f64> = (0..n * m).map(|i| (i as f64) * 0.25 - 1.0).collect();
        let mut b = vec![0.0; n * m];
        for i in 0..n {
            for c in 0..m {
                b[i * m + c] = (0..n).map(|p| a[i * n + p] * x[p * m + c]).sum();
            }
        }
        let mut factor = a.clone();
        cholesky_solve(&mut factor, n, &mut b, m).expect("SPD");
        for (got, want) in b.iter().zip(&x) {
            assert!((got - want).abs() < 1e-9, "{got} vs {want}");
        }
    }

    #[test]
    fn a_singular_matrix_names_its_pivot() {
        // Rank 1: the second pivot vanishes.
        let mut a = vec![1.0, 2.0, 2.0, 4.0];
        let mut b = vec![1.0, 2.0];
        assert_eq!(cholesky_solve(&mut a, 2, &mut b, 1), Err(1));
    }
}
