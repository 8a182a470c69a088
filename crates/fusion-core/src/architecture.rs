//! The built-in MLP's shape as the `--model` flag writes it. It lives in
//! the core, beside `synthetic::random_mlp` and the inferred MLP spec,
//! because a server builds the built-in model's first weights from it
//! without any model code (fusion-models re-exports it).

use std::fmt;
use std::str::FromStr;

/// A `--model` value that names no MLP.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("model `{given}`: {reason}")]
pub struct ArchitectureError {
    /// The text given.
    pub given: String,
    /// What is wrong and what is accepted.
    pub reason: String,
}

/// A multilayer perceptron's hidden widths, as written on the command line:
/// `mlp` (the paper's 512x3), `mlp:512x3` (three layers of 512) or
/// `mlp:1024,512,256`. Input and output widths come from the data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MlpArchitecture {
    /// Hidden layer widths, input side first.
    pub hidden: Vec<usize>,
}

impl Default for MlpArchitecture {
    /// The paper's MLP: three hidden layers of 512 units.
    fn default() -> Self {
        Self {
            hidden: vec![512; 3],
        }
    }
}

impl MlpArchitecture {
    /// All layer widths for data with `input` features and `classes` classes.
    pub fn widths(&self, input: usize, classes: usize) -> Vec<usize> {
        let mut w = Vec::with_capacity(self.hidden.len() + 2);
        w.push(input);
        w.extend_from_slice(&self.hidden);
        w.push(classes);
        w
    }
}

impl FromStr for MlpArchitecture {
    type Err = ArchitectureError;

    fn from_str(s: &str) -> Result<Self, ArchitectureError> {
        let bad = |reason: &str| ArchitectureError {
            given: s.into(),
            reason: reason.into(),
        };
        let Some(rest) = s.strip_prefix("mlp") else {
            return Err(bad(
                "expected `mlp`, `mlp:WIDTHxDEPTH` (e.g. mlp:512x3) or `mlp:W1,W2,...`",
            ));
        };
        let Some(arg) = rest.strip_prefix(':') else {
            return if rest.is_empty() {
                Ok(Self::default())
            } else {
                Err(bad("expected `mlp` or `mlp:...`"))
            };
        };
        let number = |t: &str| -> Result<usize, ArchitectureError> {
            match t.trim().parse::<usize>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(bad(&format!("`{t}` is not a positive width"))),
            }
        };
        let hidden = match arg.split_once('x') {
            Some((width, depth)) => {
                let (width, depth) = (number(width)?, number(depth)?);
                vec![width; depth]
            }
            None => arg.split(',').map(number).collect::<Result<_, _>>()?,
        };
        if hidden.len() > 64 {
            return Err(bad("more than 64 hidden layers"));
        }
        Ok(Self { hidden })
    }
}

impl fmt::Display for MlpArchitecture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let all_same = self.hidden.windows(2).all(|w| w[0] == w[1]);
        match (all_same, self.hidden.first()) {
            (true, Some(w)) if self.hidden.len() > 1 => write!(f, "mlp:{w}x{}", self.hidden.len()),
            _ => {
                let text: Vec<String> = self.hidden.iter().map(usize::to_string).collect();
                write!(f, "mlp:{}", text.join(","))
            }
        }
    }
}
