//! Where a dataset comes from: the `--dataset` flag.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::dataset::{Dataset, TrainTest};
use crate::error::{DataError, Result};
use crate::idx::{maybe_gunzip, parse_idx, read_idx};

/// Where Debian's `dataset-fashion-mnist` package puts the full dataset.
pub const FASHION_MNIST_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// A dataset source, as named on the command line.
///
/// - `embedded`: the Fashion-MNIST sample compiled into the binary (12k/2k);
///   needs nothing installed.
/// - `fashion-mnist` or `fashion-mnist:DIR`: the full 60k/10k, by default
///   from Debian's package.
/// - `mnist:DIR`: MNIST files the user has (same IDX layout).
/// - `cifar10:DIR`: CIFAR-10 binary batches the user has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataSource {
    /// The sample compiled into the binary.
    Embedded,
    /// Fashion-MNIST in IDX files under a folder.
    FashionMnist(PathBuf),
    /// MNIST in IDX files under a folder.
    Mnist(PathBuf),
    /// CIFAR-10 binary batches under a folder.
    Cifar10(PathBuf),
}

impl DataSource {
    /// Loads the training and test parts.
    pub fn load(&self) -> Result<TrainTest> {
        match self {
            Self::Embedded => embedded(),
            Self::FashionMnist(dir) => read_mnist_layout(dir, "Fashion-MNIST", FASHION_HINT),
            Self::Mnist(dir) => read_mnist_layout(dir, "MNIST", ""),
            Self::Cifar10(dir) => crate::cifar::read_cifar10(dir),
        }
    }
}

/// How to get the full Fashion-MNIST when it is missing.
const FASHION_HINT: &str =
    " (install it with `apt-get install -y dataset-fashion-mnist`, or use --dataset embedded)";

impl FromStr for DataSource {
    type Err = DataError;

    fn from_str(s: &str) -> Result<Self> {
        let (kind, dir) = match s.split_once(':') {
            Some((k, d)) => (k, Some(d)),
            None => (s, None),
        };
        let need_dir = |d: Option<&str>| -> Result<PathBuf> {
            match d {
                Some(d) if !d.is_empty() => Ok(PathBuf::from(d)),
                _ => Err(DataError::BadSource {
                    given: s.into(),
                    reason: format!("`{kind}` needs a folder: `{kind}:DIR`"),
                }),
            }
        };
        match kind {
            "embedded" if dir.is_none() => Ok(Self::Embedded),
            "fashion-mnist" => Ok(Self::FashionMnist(match dir {
                Some(_) => need_dir(dir)?,
                None => PathBuf::from(FASHION_MNIST_DIR),
            })),
            "mnist" => Ok(Self::Mnist(need_dir(dir)?)),
            "cifar10" => Ok(Self::Cifar10(need_dir(dir)?)),
            _ => Err(DataError::BadSource {
                given: s.into(),
                reason: "expected `embedded`, `fashion-mnist[:DIR]`, `mnist:DIR` or `cifar10:DIR`"
                    .into(),
            }),
        }
    }
}

impl fmt::Display for DataSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Embedded => write!(f, "embedded"),
            Self::FashionMnist(d) => write!(f, "fashion-mnist:{}", d.display()),
            Self::Mnist(d) => write!(f, "mnist:{}", d.display()),
            Self::Cifar10(d) => write!(f, "cifar10:{}", d.display()),
        }
    }
}

/// The four files of the MNIST layout, train first.
const MNIST_FILES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

/// Reads MNIST-layout IDX files (each raw or `.gz`) from `dir`.
fn read_mnist_layout(dir: &Path, name: &str, hint: &str) -> Result<TrainTest> {
    let pair = |images: &str, labels: &str| -> Result<Dataset> {
        let (ip, lp) = (dir.join(images), dir.join(labels));
        let read = |p: &Path| {
            read_idx(p).map_err(|e| match e {
                DataError::Missing { path, .. } => DataError::Missing {
                    path: PathBuf::from(format!("{}[.gz]", path.display())),
                    hint: hint.into(),
                },
                other => other,
            })
        };
        Dataset::from_idx(read(&ip)?, &ip, read(&lp)?, &lp, 10)
    };
    Ok(TrainTest {
        name: format!("{name} ({})", dir.display()),
        train: pair(MNIST_FILES[0], MNIST_FILES[1])?,
        test: pair(MNIST_FILES[2], MNIST_FILES[3])?,
    })
}

/// The embedded sample: the first 12,000 training and 2,000 test images of
/// Fashion-MNIST, cut by `data/cut-sample.py` and compiled in.
fn embedded() -> Result<TrainTest> {
    macro_rules! sample {
        ($file:literal) => {
            (
                include_bytes!(concat!("../../../data/fashion-mnist-sample/", $file)).as_slice(),
                Path::new(concat!("<embedded>/", $file)),
            )
        };
    }
    let files = [
        sample!("train-images-idx3-ubyte.gz"),
        sample!("train-labels-idx1-ubyte.gz"),
        sample!("t10k-images-idx3-ubyte.gz"),
        sample!("t10k-labels-idx1-ubyte.gz"),
    ];
    let mut arrays = Vec::with_capacity(4);
    for (bytes, path) in files {
        arrays.push(parse_idx(&maybe_gunzip(bytes.to_vec(), path)?, path)?);
    }
    let mut it = arrays.into_iter().zip(files.iter().map(|f| f.1));
    let mut next = || {
        it.next().ok_or_else(|| DataError::BadSource {
            given: "embedded".into(),
            reason: "embedded sample is incomplete".into(),
        })
    };
    let (ti, tip) = next()?;
    let (tl, tlp) = next()?;
    let (si, sip) = next()?;
    let (sl, slp) = next()?;
    Ok(TrainTest {
        name: "embedded Fashion-MNIST sample".into(),
        train: Dataset::from_idx(ti, tip, tl, tlp, 10)?,
        test: Dataset::from_idx(si, sip, sl, slp, 10)?,
    })
}
