//! The spec file format: TOML (or the same structure as JSON).
//!
//! ```toml
//! [permutations]
//! P_0 = ["layers.0.weight:0", "layers.0.bias:0", "layers.1.weight:1"]
//! P_1 = [{ tensor = "layers.1.weight", axis = 0 }, "layers.1.bias:0", "layers.2.weight:1"]
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{AxisRef, PermDef, PermutationSpec, SpecError};
use crate::params::natural_cmp;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SpecFile {
    permutations: BTreeMap<String, Vec<EntryRepr>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum EntryRepr {
    Short(String),
    Long { tensor: String, axis: usize },
}

impl PermutationSpec {
    /// Parses a spec file. Text starting with `{` is read as JSON, anything
    /// else as TOML. Permutations are ordered by name (natural order).
    pub fn parse(text: &str) -> Result<Self, SpecError> {
        let file: SpecFile = if text.trim_start().starts_with('{') {
            serde_json::from_str(text).map_err(|e| SpecError::Parse {
                format: "JSON",
                message: e.to_string(),
            })?
        } else {
            toml::from_str(text).map_err(|e| SpecError::Parse {
                format: "TOML",
                message: e.to_string().trim_end().to_owned(),
            })?
        };
        let mut perms = file
            .permutations
            .into_iter()
            .map(|(name, entries)| {
                let axes = entries
                    .into_iter()
                    .map(|e| match e {
                        EntryRepr::Short(s) => AxisRef::parse(&name, &s),
                        EntryRepr::Long { tensor, axis } => Ok(AxisRef::new(tensor, axis)),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(PermDef { name, axes })
            })
            .collect::<Result<Vec<_>, SpecError>>()?;
        perms.sort_by(|a, b| natural_cmp(&a.name, &b.name));
        PermutationSpec::new(perms)
    }

    /// The spec as TOML in the file format above, so an inferred spec can
    /// be saved, edited and passed back with `--spec`.
    pub fn to_toml(&self) -> String {
        let mut out = String::from("[permutations]\n");
        for p in self.perms() {
            let entries: Vec<String> = p.axes.iter().map(|a| toml_string(&a.to_string())).collect();
            out.push_str(&format!(
                "{} = [{}]\n",
                toml_key(&p.name),
                entries.join(", ")
            ));
        }
        out
    }
}

/// A TOML basic string (JSON string escaping is valid TOML).
fn toml_string(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

/// A bare key where allowed, else a quoted one.
fn toml_key(s: &str) -> String {
    let bare = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare { s.to_owned() } else { toml_string(s) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_and_json_forms_agree() {
        let toml_text = r#"
            [permutations]
            P_10 = ["x:1"]
            P_2 = ["layers.0.weight:0", { tensor = "layers.0.bias", axis = 0 }]
        "#;
        let json_text = r#"{"permutations": {"P_2": ["layers.0.weight:0",
            {"tensor": "layers.0.bias", "axis": 0}], "P_10": ["x:1"]}}"#;
        let a = PermutationSpec::parse(toml_text).expect("toml");
        let b = PermutationSpec::parse(json_text).expect("json");
        assert_eq!(a, b);
        assert_eq!(a.perms()[0].name, "P_2");
        assert_eq!(a.perms()[0].axes[1], AxisRef::new("layers.0.bias", 0));
        assert_eq!(PermutationSpec::parse(&a.to_toml()).expect("round trip"), a);
    }

    #[test]
    fn malformed_files_are_reported() {
        let err = PermutationSpec::parse("[permutations]\nP = [\"w:x\"]").expect_err("bad axis");
        assert_eq!(
            err.to_string(),
            "permutation 'P': entry 'w:x' is not of the form \"tensor:axis\""
        );
        let err = PermutationSpec::parse("[permutations]\nP = []").expect_err("empty");
        assert_eq!(err.to_string(), "permutation 'P' lists no tensor axes");
        let err = PermutationSpec::parse("[permutations]\n").expect_err("none");
        assert_eq!(err.to_string(), "the spec defines no permutations");
        let err = PermutationSpec::parse("permutations = 3").expect_err("type");
        assert!(
            err.to_string().starts_with("cannot parse spec as TOML"),
            "{err}"
        );
        let err = PermutationSpec::parse("{\"perms\": {}}").expect_err("field");
        assert!(
            err.to_string().starts_with("cannot parse spec as JSON"),
            "{err}"
        );
    }
}
