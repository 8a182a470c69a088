//! The run's first global model and its permutation spec: the user's own
//! model file (`init_model`, any architecture a spec describes) or the
//! built-in MLP. Everything is checked before a port is bound.

use std::path::Path;

use fusion_core::{ParamSet, PermutationSpec, SpecSource};

use crate::config::ServerConfig;
use crate::error::ServerError;

/// The model a run starts from, the spec its strategy aligns with, and a
/// phrase naming where it came from (for errors and logs).
pub struct InitialModel {
    /// The first global model.
    pub params: ParamSet,
    /// How its hidden units permute.
    pub spec: SpecSource,
    /// `the model file init.safetensors`, `the built-in mlp (784 inputs,
    /// 10 classes)`: a file's name only, since clients are shown it.
    pub origin: String,
}

impl InitialModel {
    /// Builds and checks the first model of `config`.
    pub fn from_config(config: &ServerConfig) -> Result<Self, ServerError> {
        let spec = read_spec(&config.spec)?;
        let (params, origin) = match &config.init_model {
            Some(path) => (
                read_model(path)?,
                format!(
                    "the model file {}",
                    path.file_name()
                        .unwrap_or(path.as_os_str())
                        .to_string_lossy()
                ),
            ),
            None => {
                let widths = config.architecture()?.widths(config.inputs, config.classes);
                (
                    fusion_core::synthetic::random_mlp(&widths, config.seed),
                    format!(
                        "the built-in {} ({} inputs, {} classes)",
                        config.model, config.inputs, config.classes
                    ),
                )
            }
        };
        spec.resolve(&params).map_err(|e| {
            ServerError::Config(format!("spec `{}` does not fit {origin}: {e}", config.spec))
        })?;
        Ok(Self {
            params,
            spec,
            origin,
        })
    }
}

impl InitialModel {
    /// A built-in network the caller built (a CNN, with the model code
    /// this library does not link), whose own layout is `layout`
    /// (`resnet`, `vgg`). `config.spec` left at its default (`mlp`, which
    /// cannot describe a CNN) becomes `layout`; any other setting is the
    /// user's and is kept, and checked against the weights at start.
    pub fn built_in(
        config: &mut ServerConfig,
        params: ParamSet,
        layout: &str,
        origin: String,
    ) -> Result<Self, ServerError> {
        if config.spec == ServerConfig::default().spec {
            config.spec = layout.to_owned();
        }
        Ok(Self {
            params,
            spec: read_spec(&config.spec)?,
            origin,
        })
    }
}

/// A built-in layout (`mlp`, `resnet`, `vgg`, `auto`; inferred from the
/// model's names) or a spec file.
fn read_spec(arg: &str) -> Result<SpecSource, ServerError> {
    if let Some(builtin) = SpecSource::builtin(arg) {
        return Ok(builtin);
    }
    let text = std::fs::read_to_string(arg).map_err(|source| ServerError::Io {
        what: "spec file",
        path: arg.into(),
        source,
    })?;
    let spec = PermutationSpec::parse(&text)
        .map_err(|e| ServerError::Config(format!("spec file `{arg}`: {e}")))?;
    Ok(SpecSource::Given(spec))
}

/// Reads the user's model, which must hold only finite values.
fn read_model(path: &Path) -> Result<ParamSet, ServerError> {
    let bytes = std::fs::read(path).map_err(|source| ServerError::Io {
        what: "init_model",
        path: path.to_owned(),
        source,
    })?;
    let bad = |e: String| ServerError::Config(format!("init_model `{}`: {e}", path.display()));
    let params = ParamSet::from_safetensors(&bytes).map_err(|e| bad(e.to_string()))?;
    params.check_finite().map_err(|e| bad(e.to_string()))?;
    Ok(params)
}
