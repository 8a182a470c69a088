//! `fusion interpolate`: loss and accuracy along the line from model A to
//! model B, without alignment and after each alignment method.

use anyhow::{Context, Result};
use fusion_experiments::{
    Correction, Method, interpolate, interpolation_csv, interpolation_figure, interpolation_table,
};

use super::outputs::{list, write_outputs};
use super::report::print_json;
use crate::cli::InterpolateArgs;
use crate::files::read_model;
use crate::options::load_data;

/// Runs `fusion interpolate`.
pub fn run(args: InterpolateArgs) -> Result<()> {
    let methods = Method::parse_list(&args.method)?;
    let correction = args.correction.correction();
    let a = read_model(&args.a)?;
    let b = read_model(&args.b)?;
    let data = load_data(&args.data.dataset)?;
    let device = args.backend.device()?;
    let result = interpolate(
        &a, &b, &data, &methods, args.steps, &device, args.seed, correction,
    )
    .with_context(|| {
        format!(
            "interpolating '{}' → '{}'",
            args.a.display(),
            args.b.display()
        )
    })?;
    let json = serde_json::to_string_pretty(&result)?;
    let corrected = match correction {
        Correction::None => String::new(),
        Correction::ResetBatchNorm { batches } => {
            format!("; BatchNorm statistics re-estimated on {batches} batches")
        }
        Correction::Repair { batches } => format!("; REPAIR on {batches} batches"),
    };
    let title = format!(
        "Interpolation on {} ({} test examples{corrected})",
        data.name,
        data.test.len()
    );
    let written = write_outputs(
        &args.out,
        &[
            ("curves.json", json),
            ("curves.csv", interpolation_csv(&result)),
        ],
        &interpolation_figure(&result, &title),
        "interpolation",
    )?;
    if args.json {
        return print_json(&serde_json::to_value(&result)?);
    }
    println!("{title}");
    print!("{}", interpolation_table(&result));
    println!("wrote {}", list(&written));
    Ok(())
}
