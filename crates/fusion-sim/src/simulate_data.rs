//! What `fusion simulate` deals out before any server starts: the clients'
//! shards (by a split rule or from a file), the server's unlabeled proxy
//! holdout, and the distillation proxy set.

use std::path::Path;

use anyhow::{Context, Result, bail};
use fusion_data::{DataSource, Dataset, check_shards};

use fusion_cli::cli::SimulateArgs;

/// The training data as `fusion simulate` hands it out.
#[derive(Debug)]
pub struct Dealt {
    /// Each client's shard.
    pub shards: Vec<Dataset>,
    /// Examples held back for the server, labels unused (--proxy-holdout).
    pub holdout: Option<Dataset>,
    /// How the shards were made, for the report: the split rule or the file.
    pub split: String,
}

/// Cuts `train` as the flags say: `--limit`, then `--proxy-holdout` (the
/// last N examples), then `--split-file` or `--split` over the rest.
pub fn deal(args: &SimulateArgs, train: &Dataset) -> Result<Dealt> {
    let train = match args.limit {
        Some(n) => train.head(n),
        None => train.clone(),
    };
    let (train, holdout) = match args.proxy_holdout {
        None => (train, None),
        Some(n) if n == 0 || n >= train.len() => bail!(
            "--proxy-holdout {n}: must be between 1 and {} (the training examples, less at least one for the clients)",
            train.len().saturating_sub(1)
        ),
        Some(n) => {
            let keep = train.len() - n;
            let rest: Vec<usize> = (keep..train.len()).collect();
            (train.head(keep), Some(train.subset(&rest)))
        }
    };
    let (indices, split) = match &args.split_file {
        Some(path) => {
            let shards = read_split_file(path, train.len())?;
            if let Some(c) = args.clients
                && c != shards.len() as u64
            {
                bail!(
                    "--clients {c} but {} lists {} shards; drop --clients or fix the file",
                    path.display(),
                    shards.len()
                );
            }
            (shards, format!("file:{}", path.display()))
        }
        None => {
            let clients =
                usize::try_from(args.clients.unwrap_or(4)).context("--clients is too large")?;
            let shards = args
                .split
                .shards(train.labels(), train.classes(), clients, args.seed)
                .with_context(|| format!("cannot split the data with `{}`", args.split))?;
            if let Some(i) = shards.iter().position(|s| s.is_empty()) {
                bail!(
                    "client {i} gets no examples under `{}`; use fewer clients or a milder split",
                    args.split
                );
            }
            (shards, args.split.to_string())
        }
    };
    Ok(Dealt {
        shards: indices.iter().map(|s| train.subset(s)).collect(),
        holdout,
        split,
    })
}

/// Reads a split file: a JSON array of arrays of training-set indices,
/// checked against `examples` (in range, disjoint, none empty).
pub fn read_split_file(path: &Path, examples: usize) -> Result<Vec<Vec<usize>>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the split file '{}'", path.display()))?;
    let shards: Vec<Vec<usize>> = serde_json::from_str(&text).with_context(|| {
        format!(
            "{}: expected a JSON array of arrays of example indices, one array per client",
            path.display()
        )
    })?;
    check_shards(&shards, examples).with_context(|| format!("{}", path.display()))?;
    Ok(shards)
}

/// The distillation proxy set `--distill-data` names, checked to fit the
/// test data's images and classes; `None` without distillation.
pub fn distill_proxy(
    args: &SimulateArgs,
    holdout: Option<&Dataset>,
    test: &Dataset,
) -> Result<Option<Dataset>> {
    let proxy = match args.distill_data.as_deref() {
        None => return Ok(None),
        Some("holdout") => holdout
            .cloned()
            .context("--distill-data holdout needs --proxy-holdout N")?,
        Some(other) => {
            let source: DataSource = other
                .parse()
                .with_context(|| format!("--distill-data `{other}`"))?;
            source
                .load()
                .with_context(|| format!("cannot load the distillation data `{source}`"))?
                .train
        }
    };
    if (proxy.features(), proxy.classes()) != (test.features(), test.classes()) {
        bail!(
            "--distill-data has {} features and {} classes, the test data {} and {}",
            proxy.features(),
            proxy.classes(),
            test.features(),
            test.classes()
        );
    }
    Ok(Some(proxy))
}
