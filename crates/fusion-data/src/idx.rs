//! The IDX format of MNIST and Fashion-MNIST, raw or gzip-compressed.
//!
//! An IDX file is a 4-byte magic (`0x00 0x00 TYPE NDIM`), NDIM big-endian
//! `u32` dimensions, then the data. Only unsigned bytes (`TYPE = 0x08`), the
//! type both datasets use, are accepted; anything else is a clear error
//! rather than a silent reinterpretation.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::{DataError, Result};

/// The IDX type code of unsigned bytes.
const UBYTE: u8 = 0x08;

/// A decoded IDX array of unsigned bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxArray {
    /// Dimensions, outermost (item count) first.
    pub dims: Vec<usize>,
    /// Row-major data, `dims.iter().product()` bytes.
    pub data: Vec<u8>,
}

impl IdxArray {
    /// Number of items: the first dimension.
    pub fn len(&self) -> usize {
        self.dims.first().copied().unwrap_or(0)
    }

    /// Whether the array holds no items.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes per item: the product of the inner dimensions.
    pub fn item_size(&self) -> usize {
        self.dims.iter().skip(1).product()
    }
}

/// Whether `bytes` start with the gzip magic number.
pub fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0x1f, 0x8b])
}

/// Decompresses `bytes` if they are gzip, or returns them unchanged.
/// `path` only names the source in errors.
pub fn maybe_gunzip(bytes: Vec<u8>, path: &Path) -> Result<Vec<u8>> {
    if !is_gzip(&bytes) {
        return Ok(bytes);
    }
    let mut out = Vec::with_capacity(bytes.len() * 4);
    flate2::read::GzDecoder::new(bytes.as_slice())
        .read_to_end(&mut out)
        .map_err(|source| DataError::Gzip {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(out)
}

/// Parses IDX bytes (already decompressed). `path` names the source in errors.
pub fn parse_idx(bytes: &[u8], path: &Path) -> Result<IdxArray> {
    let header = |need: usize| -> Result<()> {
        if bytes.len() < need {
            return Err(DataError::Truncated {
                path: path.to_path_buf(),
                expected: need,
                actual: bytes.len(),
            });
        }
        Ok(())
    };
    header(4)?;
    let magic = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let (zero, kind, ndim) = (magic >> 16, bytes[2], bytes[3] as usize);
    if zero != 0 || kind != UBYTE || ndim == 0 {
        return Err(DataError::BadMagic {
            path: path.to_path_buf(),
            found: magic,
            expected: "an IDX file of unsigned bytes starts with 0x000008NN (NN = number of dimensions, 1 or more)".into(),
        });
    }
    let start = 4 + 4 * ndim;
    header(start)?;
    let dims: Vec<usize> = bytes[4..start]
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| DataError::BadHeader {
            path: path.to_path_buf(),
            reason: format!("dimensions {dims:?} overflow"),
        })?;
    let body = &bytes[start..];
    if body.len() < expected {
        return Err(DataError::Truncated {
            path: path.to_path_buf(),
            expected,
            actual: body.len(),
        });
    }
    if body.len() > expected {
        return Err(DataError::BadHeader {
            path: path.to_path_buf(),
            reason: format!(
                "{} bytes of data follow a header announcing {expected} ({dims:?}); not an IDX file, or a damaged one",
                body.len()
            ),
        });
    }
    Ok(IdxArray {
        dims,
        data: body.to_vec(),
    })
}

/// Reads an IDX file, raw or gzip. If `path` does not exist but `path.gz`
/// (or `path` without `.gz`) does, that one is read: datasets ship either way.
pub fn read_idx(path: &Path) -> Result<IdxArray> {
    let found = locate(path).ok_or_else(|| DataError::Missing {
        path: path.to_path_buf(),
        hint: String::new(),
    })?;
    let bytes = std::fs::read(&found).map_err(|source| DataError::Io {
        path: found.clone(),
        source,
    })?;
    let raw = maybe_gunzip(bytes, &found)?;
    parse_idx(&raw, &found)
}

/// The existing file among `path`, `path.gz`, and `path` minus `.gz`.
pub fn locate(path: &Path) -> Option<PathBuf> {
    if path.is_file() {
        return Some(path.to_path_buf());
    }
    let text = path.to_string_lossy();
    let other = match text.strip_suffix(".gz") {
        Some(stem) => PathBuf::from(stem),
        None => PathBuf::from(format!("{text}.gz")),
    };
    other.is_file().then_some(other)
}

/// Encodes an array as IDX bytes (uncompressed): the inverse of [`parse_idx`],
/// used to write test fixtures and cut samples.
pub fn encode_idx(array: &IdxArray) -> Vec<u8> {
    let mut out = vec![0, 0, UBYTE, array.dims.len() as u8];
    for &d in &array.dims {
        out.extend_from_slice(&(d as u32).to_be_bytes());
    }
    out.extend_from_slice(&array.data);
    out
}
