//! An in-memory labelled image dataset and its train/test pair.

use std::path::Path;

use crate::error::{DataError, Result};
use crate::idx::IdxArray;

/// Labelled images kept as bytes (0–255): 60k Fashion-MNIST images take
/// 47 MB this way instead of 188 MB as `f32`. Batches are scaled to [0, 1]
/// as they are drawn ([`Dataset::batch`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dataset {
    images: Vec<u8>,
    labels: Vec<u8>,
    /// Channels, height, width of one image.
    shape: [usize; 3],
    classes: usize,
}

impl Dataset {
    /// Builds a dataset, checking that sizes agree and labels are in range.
    /// Panics never: a mismatch is reported as a [`DataError::BadHeader`].
    pub fn new(
        images: Vec<u8>,
        labels: Vec<u8>,
        shape: [usize; 3],
        classes: usize,
    ) -> Result<Self> {
        let item: usize = shape.iter().product();
        if item == 0 || images.len() != labels.len() * item {
            return Err(DataError::BadHeader {
                path: "<dataset>".into(),
                reason: format!(
                    "{} image bytes do not make {} images of shape {shape:?}",
                    images.len(),
                    labels.len()
                ),
            });
        }
        if let Some((index, &label)) = labels
            .iter()
            .enumerate()
            .find(|(_, l)| **l as usize >= classes)
        {
            return Err(DataError::BadLabel {
                path: "<dataset>".into(),
                label,
                index,
                classes,
            });
        }
        Ok(Self {
            images,
            labels,
            shape,
            classes,
        })
    }

    /// Pairs an IDX image array with an IDX label array, naming both files
    /// in errors: count mismatch, wrong dimensions, labels out of range.
    pub fn from_idx(
        images: IdxArray,
        images_path: &Path,
        labels: IdxArray,
        labels_path: &Path,
        classes: usize,
    ) -> Result<Self> {
        if images.dims.len() != 3 {
            return Err(DataError::BadHeader {
                path: images_path.to_path_buf(),
                reason: format!(
                    "expected 3 dimensions (count, rows, columns), found {:?}",
                    images.dims
                ),
            });
        }
        if labels.dims.len() != 1 {
            return Err(DataError::BadHeader {
                path: labels_path.to_path_buf(),
                reason: format!("expected 1 dimension (count), found {:?}", labels.dims),
            });
        }
        if images.len() != labels.len() {
            return Err(DataError::CountMismatch {
                images: images_path.to_path_buf(),
                n_images: images.len(),
                labels: labels_path.to_path_buf(),
                n_labels: labels.len(),
            });
        }
        if let Some((index, &label)) = labels
            .data
            .iter()
            .enumerate()
            .find(|(_, l)| **l as usize >= classes)
        {
            return Err(DataError::BadLabel {
                path: labels_path.to_path_buf(),
                label,
                index,
                classes,
            });
        }
        let shape = [1, images.dims[1], images.dims[2]];
        Ok(Self {
            images: images.data,
            labels: labels.data,
            shape,
            classes,
        })
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the dataset holds no examples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Channels, height and width of one image.
    pub fn shape(&self) -> [usize; 3] {
        self.shape
    }

    /// Values per image: the input width of an MLP.
    pub fn features(&self) -> usize {
        self.shape.iter().product()
    }

    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// All labels, in order.
    pub fn labels(&self) -> &[u8] {
        &self.labels
    }

    /// Raw bytes of image `i` (channel-major).
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.features();
        &self.images[i * n..(i + 1) * n]
    }

    /// The examples at `indices`, in that order: a client's shard.
    /// Indices out of range are skipped never; callers pass indices from
    /// [`crate::split`], which only produces valid ones, and a bad index
    /// panics as a programming error would.
    pub fn subset(&self, indices: &[usize]) -> Self {
        let n = self.features();
        let mut images = Vec::with_capacity(indices.len() * n);
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            images.extend_from_slice(self.image(i));
            labels.push(self.labels[i]);
        }
        Self {
            images,
            labels,
            shape: self.shape,
            classes: self.classes,
        }
    }

    /// The first `n` examples (all of them if fewer): quick runs and tests.
    pub fn head(&self, n: usize) -> Self {
        let n = n.min(self.len());
        self.subset(&(0..n).collect::<Vec<_>>())
    }

    /// Images at `indices` as `f32` in [0, 1], row-major `[indices.len(), features]`,
    /// with their labels: one training or evaluation batch.
    pub fn batch(&self, indices: &[usize]) -> (Vec<f32>, Vec<u8>) {
        let n = self.features();
        let mut x = Vec::with_capacity(indices.len() * n);
        let mut y = Vec::with_capacity(indices.len());
        for &i in indices {
            x.extend(self.image(i).iter().map(|&b| f32::from(b) / 255.0));
            y.push(self.labels[i]);
        }
        (x, y)
    }

    /// How many examples each class has: split tests and reports.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes];
        for &l in &self.labels {
            counts[l as usize] += 1;
        }
        counts
    }
}

/// A dataset's training and test parts.
#[derive(Debug, Clone)]
pub struct TrainTest {
    /// Human-readable source, e.g. `embedded Fashion-MNIST sample`.
    pub name: String,
    /// Training examples (what clients split among themselves).
    pub train: Dataset,
    /// Held-out examples for evaluation.
    pub test: Dataset,
}
