//! Datasets for Fusion.
//!
//! Readers for the IDX format (MNIST, Fashion-MNIST; raw or gzip) and
//! CIFAR-10's binary batches, the Fashion-MNIST sample compiled into the
//! binary so that everything runs with nothing installed, and the splits
//! that deal a training set to federated clients.
//!
//! ```
//! use fusion_data::{DataSource, Split};
//! let data: DataSource = "embedded".parse()?;
//! let data = data.load()?;
//! let shards = "biased:0.8".parse::<Split>()?.shards(data.train.labels(), 10, 2, 0)?;
//! assert_eq!(shards[0].len() + shards[1].len(), data.train.len());
//! # Ok::<(), fusion_data::DataError>(())
//! ```

mod cifar;
mod dataset;
mod error;
pub mod idx;
mod source;
mod split;

pub use cifar::{parse_cifar_batch, read_cifar10};
pub use dataset::{Dataset, TrainTest};
pub use error::{DataError, Result};
pub use source::{DataSource, FASHION_MNIST_DIR};
pub use split::{ShardRef, Split, check_shards};
