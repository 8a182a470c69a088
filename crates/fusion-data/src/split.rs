//! Cutting a training set into client shards: `--split` and `--shard i/N`.
//!
//! Every split is a pure function of the labels, the shard count and a seed,
//! so every client computes the same partition on its own and takes its
//! part; shards are disjoint and together cover the data.

use std::fmt;
use std::str::FromStr;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand_distr::{Distribution, Gamma};

use crate::error::{DataError, Result};

/// How examples are dealt to shards.
#[derive(Debug, Clone, PartialEq)]
pub enum Split {
    /// Shuffle, then cut into near-equal parts: every shard sees every class
    /// in the same proportions.
    Iid,
    /// Per class, shard proportions drawn from Dirichlet(α, …, α): small α
    /// (0.1–0.5) gives the skewed label mixes federated papers use.
    Dirichlet(f64),
    /// Disjoint label sets, one per shard (`classes:0-4/5-9`).
    Classes(Vec<Vec<u8>>),
    /// The paper's split, generalised: classes fall into N contiguous groups;
    /// shard i takes fraction `p` of its own group's examples and an equal
    /// part of the rest of every other group. For two shards and `p = 0.8`,
    /// shard A gets 80 % of classes 0–4 and 20 % of 5–9, shard B the rest.
    Biased(f64),
}

impl FromStr for Split {
    type Err = DataError;

    fn from_str(s: &str) -> Result<Self> {
        let bad = |reason: String| DataError::BadSplit {
            given: s.into(),
            reason,
        };
        let (kind, arg) = match s.split_once(':') {
            Some((k, a)) => (k, Some(a)),
            None => (s, None),
        };
        let number = |what: &str, lo: f64, hi: f64| -> Result<f64> {
            let a = arg.ok_or_else(|| bad(format!("`{kind}` needs a value: `{kind}:{what}`")))?;
            let v: f64 = a
                .parse()
                .map_err(|_| bad(format!("`{a}` is not a number")))?;
            if !(v > lo && v <= hi && v.is_finite()) {
                return Err(bad(format!("{what} must be in ({lo}, {hi}], got {v}")));
            }
            Ok(v)
        };
        match kind {
            "iid" if arg.is_none() => Ok(Self::Iid),
            "dirichlet" => Ok(Self::Dirichlet(number("ALPHA", 0.0, f64::MAX)?)),
            "biased" => Ok(Self::Biased(number("P", 0.0, 1.0)?)),
            "classes" => {
                let a = arg
                    .ok_or_else(|| bad("`classes` needs label groups: `classes:0-4/5-9`".into()))?;
                let groups = a
                    .split('/')
                    .map(|g| parse_labels(g).map_err(&bad))
                    .collect::<Result<Vec<_>>>()?;
                if groups.len() < 2 {
                    return Err(bad("give at least two label groups separated by `/`".into()));
                }
                Ok(Self::Classes(groups))
            }
            _ => Err(bad(
                "expected `iid`, `dirichlet:ALPHA`, `classes:0-4/5-9` or `biased:P`".into(),
            )),
        }
    }
}

/// Parses `0-4` or `0,2,7-9` into sorted, distinct labels.
fn parse_labels(group: &str) -> std::result::Result<Vec<u8>, String> {
    let mut labels = Vec::new();
    for part in group.split(',') {
        let num = |t: &str| {
            t.trim()
                .parse::<u8>()
                .map_err(|_| format!("`{t}` is not a class label (0-255)"))
        };
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                if a > b {
                    return Err(format!("range `{part}` runs backwards"));
                }
                labels.extend(a..=b);
            }
            None => labels.push(num(part)?),
        }
    }
    labels.sort_unstable();
    labels.dedup();
    Ok(labels)
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Iid => write!(f, "iid"),
            Self::Dirichlet(a) => write!(f, "dirichlet:{a}"),
            Self::Biased(p) => write!(f, "biased:{p}"),
            Self::Classes(groups) => {
                let text: Vec<String> = groups
                    .iter()
                    .map(|g| {
                        g.iter()
                            .map(|l| l.to_string())
                            .collect::<Vec<_>>()
                            .join(",")
                    })
                    .collect();
                write!(f, "classes:{}", text.join("/"))
            }
        }
    }
}

impl Split {
    /// Deals the examples with these `labels` (classes `0..classes`) into
    /// `shards` disjoint index lists that together cover every example.
    /// Each list is sorted. Deterministic for a given `seed`.
    pub fn shards(
        &self,
        labels: &[u8],
        classes: usize,
        shards: usize,
        seed: u64,
    ) -> Result<Vec<Vec<usize>>> {
        let bad = |reason: String| DataError::BadSplit {
            given: self.to_string(),
            reason,
        };
        if shards == 0 {
            return Err(bad("the number of shards must be at least 1".into()));
        }
        let mut rng = StdRng::seed_from_u64(seed);
        let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); classes];
        for (i, &l) in labels.iter().enumerate() {
            by_class
                .get_mut(l as usize)
                .ok_or_else(|| bad(format!("label {l} at index {i} is outside 0..{classes}")))?
                .push(i);
        }
        for members in &mut by_class {
            members.shuffle(&mut rng);
        }
        let mut out = vec![Vec::new(); shards];
        match self {
            Self::Iid => {
                let mut all: Vec<usize> = (0..labels.len()).collect();
                all.shuffle(&mut rng);
                let counts = apportion(all.len(), &vec![1.0; shards]);
                deal(&all, &counts, &mut out);
            }
            Self::Dirichlet(alpha) => {
                let gamma =
                    Gamma::new(*alpha, 1.0).map_err(|e| bad(format!("alpha {alpha}: {e}")))?;
                for members in &by_class {
                    let weights: Vec<f64> = (0..shards).map(|_| gamma.sample(&mut rng)).collect();
                    let weights = if weights.iter().sum::<f64>() > 0.0 {
                        weights
                    } else {
                        vec![1.0; shards]
                    };
                    deal(members, &apportion(members.len(), &weights), &mut out);
                }
            }
            Self::Classes(groups) => {
                if groups.len() != shards {
                    return Err(bad(format!(
                        "{} label groups for {shards} shards; give one group per shard",
                        groups.len()
                    )));
                }
                let mut owner = vec![None; classes];
                for (s, group) in groups.iter().enumerate() {
                    for &l in group {
                        let slot = owner
                            .get_mut(l as usize)
                            .ok_or_else(|| bad(format!("label {l} is outside 0..{classes}")))?;
                        if slot.is_some() {
                            return Err(bad(format!("label {l} is in more than one group")));
                        }
                        *slot = Some(s);
                    }
                }
                for (class, members) in by_class.iter().enumerate() {
                    match owner[class] {
                        Some(s) => out[s].extend_from_slice(members),
                        None if members.is_empty() => {}
                        None => {
                            return Err(bad(format!(
                                "class {class} is in no group, so its {} examples would be dropped",
                                members.len()
                            )));
                        }
                    }
                }
            }
            Self::Biased(p) => {
                for (class, members) in by_class.iter().enumerate() {
                    let home = class * shards / classes.max(1);
                    let rest = if shards > 1 {
                        (1.0 - p) / (shards - 1) as f64
                    } else {
                        0.0
                    };
                    let weights: Vec<f64> = (0..shards)
                        .map(|s| if s == home { *p } else { rest })
                        .collect();
                    deal(members, &apportion(members.len(), &weights), &mut out);
                }
            }
        }
        for shard in &mut out {
            shard.sort_unstable();
        }
        Ok(out)
    }
}

/// Splits `n` items in proportion to `weights` with whole counts that sum
/// to exactly `n` (largest remainder), so no example is lost to rounding.
fn apportion(n: usize, weights: &[f64]) -> Vec<usize> {
    let total: f64 = weights.iter().sum();
    let exact: Vec<f64> = weights.iter().map(|w| n as f64 * w / total).collect();
    let mut counts: Vec<usize> = exact.iter().map(|e| e.floor() as usize).collect();
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by(|&a, &b| {
        (exact[b] - exact[b].floor())
            .total_cmp(&(exact[a] - exact[a].floor()))
            .then(a.cmp(&b))
    });
    let short = n - counts.iter().sum::<usize>();
    for &i in order.iter().cycle().take(short) {
        counts[i] += 1;
    }
    counts
}

/// Appends consecutive runs of `items`, of the given `counts`, to the shards.
fn deal(items: &[usize], counts: &[usize], out: &mut [Vec<usize>]) {
    let mut start = 0;
    for (shard, &c) in out.iter_mut().zip(counts) {
        shard.extend_from_slice(&items[start..start + c]);
        start += c;
    }
}

/// Checks shards that came from elsewhere (`fusion simulate --split-file`,
/// another implementation's split): each index names one of `examples`,
/// no example is dealt twice, and no shard is empty. Names the first
/// offending shard and index, counting both from 0.
pub fn check_shards(shards: &[Vec<usize>], examples: usize) -> Result<()> {
    let bad = |reason: String| DataError::BadSplit {
        given: "split file".into(),
        reason,
    };
    if shards.is_empty() {
        return Err(bad("it lists no shards".into()));
    }
    let mut owner: Vec<Option<usize>> = vec![None; examples];
    for (s, shard) in shards.iter().enumerate() {
        if shard.is_empty() {
            return Err(bad(format!("shard {s} is empty")));
        }
        for &i in shard {
            let slot = owner.get_mut(i).ok_or_else(|| {
                bad(format!(
                    "shard {s} lists example {i}, but the clients' training set has {examples} (0..{examples})"
                ))
            })?;
            if let Some(first) = slot.replace(s) {
                return Err(bad(format!(
                    "example {i} is dealt twice: to shard {first} and to shard {s}"
                )));
            }
        }
    }
    Ok(())
}

/// One client's part: shard `index` of `count` (`--shard i/N`, 0-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardRef {
    /// This client's shard, `0..count`.
    pub index: usize,
    /// How many shards the data is cut into.
    pub count: usize,
}

impl FromStr for ShardRef {
    type Err = DataError;

    fn from_str(s: &str) -> Result<Self> {
        let bad = |reason: &str| DataError::BadSplit {
            given: s.into(),
            reason: reason.into(),
        };
        let (i, n) = s
            .split_once('/')
            .ok_or_else(|| bad("expected `i/N`, e.g. `0/3`"))?;
        let index: usize = i
            .trim()
            .parse()
            .map_err(|_| bad("shard index is not a whole number"))?;
        let count: usize = n
            .trim()
            .parse()
            .map_err(|_| bad("shard count is not a whole number"))?;
        if count == 0 || index >= count {
            return Err(bad("need 0 <= i < N (shards are numbered from 0)"));
        }
        Ok(Self { index, count })
    }
}

impl fmt::Display for ShardRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}
