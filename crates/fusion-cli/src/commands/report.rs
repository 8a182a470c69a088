//! Small formatting helpers shared by the commands' human output.

use fusion_core::PermMoved;

/// `P_0 512/512 (100%)` for each permutation, comma-separated.
pub fn moved_summary(moved: &[PermMoved]) -> String {
    moved
        .iter()
        .map(|m| {
            format!(
                "{} {}/{} ({:.0}%)",
                m.name,
                m.moved,
                m.size,
                100.0 * m.fraction()
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Prints a JSON value on stdout.
pub fn print_json(value: &serde_json::Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}
