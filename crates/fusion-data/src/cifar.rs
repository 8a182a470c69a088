//! CIFAR-10's binary format: records of one label byte and 3×32×32 pixel
//! bytes (red, green, blue planes), in `data_batch_{1..5}.bin` and
//! `test_batch.bin`.

use std::path::Path;

use crate::dataset::{Dataset, TrainTest};
use crate::error::{DataError, Result};

/// Bytes of one CIFAR-10 image.
const IMAGE: usize = 3 * 32 * 32;
/// Bytes of one record: label then image.
const RECORD: usize = 1 + IMAGE;
/// CIFAR-10's classes.
const CLASSES: usize = 10;

/// Parses the bytes of one CIFAR-10 batch file. `path` names it in errors.
pub fn parse_cifar_batch(bytes: &[u8], path: &Path) -> Result<Dataset> {
    if bytes.is_empty() || !bytes.len().is_multiple_of(RECORD) {
        return Err(DataError::Truncated {
            path: path.to_path_buf(),
            expected: bytes.len().div_ceil(RECORD).max(1) * RECORD,
            actual: bytes.len(),
        });
    }
    let count = bytes.len() / RECORD;
    let mut images = Vec::with_capacity(count * IMAGE);
    let mut labels = Vec::with_capacity(count);
    for (index, record) in bytes.chunks_exact(RECORD).enumerate() {
        let label = record[0];
        if label as usize >= CLASSES {
            return Err(DataError::BadLabel {
                path: path.to_path_buf(),
                label,
                index,
                classes: CLASSES,
            });
        }
        labels.push(label);
        images.extend_from_slice(&record[1..]);
    }
    Dataset::new(images, labels, [3, 32, 32], CLASSES)
}

/// Reads CIFAR-10 from `dir`, which holds the five training batches and the
/// test batch (the `cifar-10-batches-bin` folder of the official archive).
pub fn read_cifar10(dir: &Path) -> Result<TrainTest> {
    let read = |name: &str| -> Result<Dataset> {
        let path = dir.join(name);
        let bytes = std::fs::read(&path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => DataError::Missing {
                path: path.clone(),
                hint:
                    " (expected the `cifar-10-batches-bin` folder of the binary CIFAR-10 archive)"
                        .into(),
            },
            _ => DataError::Io {
                path: path.clone(),
                source,
            },
        })?;
        parse_cifar_batch(&bytes, &path)
    };
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for i in 1..=5 {
        let part = read(&format!("data_batch_{i}.bin"))?;
        for j in 0..part.len() {
            images.extend_from_slice(part.image(j));
        }
        labels.extend_from_slice(part.labels());
    }
    let train = Dataset::new(images, labels, [3, 32, 32], CLASSES)?;
    let test = read("test_batch.bin")?;
    Ok(TrainTest {
        name: format!("CIFAR-10 ({})", dir.display()),
        train,
        test,
    })
}
