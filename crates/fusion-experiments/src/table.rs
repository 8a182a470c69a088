//! Plain-text tables and CSV for the terminal and for `docs/experiments.md`.

use std::fmt::Write;

use crate::interpolate::Interpolation;
use crate::plot::{Figure, Series};
use crate::split_merge::SplitMergeReport;

/// The per-method summary of an interpolation: barrier, midpoint, ends.
pub fn interpolation_table(result: &Interpolation) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "model A: test loss {:.4}, accuracy {:.2}%   model B: test loss {:.4}, accuracy {:.2}%",
        result.a.loss,
        result.a.accuracy * 100.0,
        result.b.loss,
        result.b.accuracy * 100.0
    );
    let _ = writeln!(
        out,
        "{:<11} {:>13} {:>14} {:>13} {:>12} {:>10}",
        "method", "loss barrier", "midpoint loss", "midpoint acc", "units moved", "align (s)"
    );
    for c in &result.curves {
        let _ = writeln!(
            out,
            "{:<11} {:>13.4} {:>14.4} {:>12.2}% {:>11.1}% {:>10.2}",
            c.method.to_string(),
            c.barrier,
            c.midpoint.loss,
            c.midpoint.accuracy * 100.0,
            c.moved * 100.0,
            c.align_seconds
        );
    }
    out
}

/// The curves as CSV: `method,lambda,test_loss,test_accuracy`.
pub fn interpolation_csv(result: &Interpolation) -> String {
    let mut out = String::from("method,lambda,test_loss,test_accuracy\n");
    for c in &result.curves {
        for (l, m) in c.lambdas.iter().zip(&c.test) {
            let _ = writeln!(out, "{},{l},{},{}", c.method, m.loss, m.accuracy);
        }
    }
    out
}

/// The figure of an interpolation: one line per method against λ.
pub fn interpolation_figure(result: &Interpolation, title: &str) -> Figure {
    Figure {
        title: title.into(),
        x_label: "λ (0 = model A, 1 = model B)".into(),
        integer_x: false,
        series: result
            .curves
            .iter()
            .map(|c| Series {
                label: match c.method {
                    crate::Method::Naive => "naive".into(),
                    crate::Method::Weight => "weight matching".into(),
                    crate::Method::Activation => "activation matching".into(),
                    crate::Method::Ste => "STE matching".into(),
                },
                x: c.lambdas.clone(),
                loss: c.test.iter().map(|m| m.loss).collect(),
                accuracy: c.test.iter().map(|m| m.accuracy).collect(),
            })
            .collect(),
    }
}

/// The split-merge result table, with the paper's claim stated plainly.
pub fn split_merge_table(report: &SplitMergeReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} | split {} | {} | shards A {} / B {} examples",
        report.dataset, report.split, report.model, report.shard_sizes[0], report.shard_sizes[1]
    );
    let _ = writeln!(
        out,
        "{:<26} {:>10} {:>14}",
        "model (full test set)", "test loss", "test accuracy"
    );
    for row in &report.rows {
        let _ = writeln!(
            out,
            "{:<26} {:>10.4} {:>13.2}%",
            row.name,
            row.test.loss,
            row.test.accuracy * 100.0
        );
    }
    let yes = |b: bool| if b { "yes" } else { "no" };
    let (lambda, loss, best) = report.best_weight_matched;
    let _ = writeln!(
        out,
        "weight-matched merge (λ = 0.5) has lower test loss than both A and B: {}",
        yes(report.merged_beats_both)
    );
    let _ = writeln!(
        out,
        "best point of the weight-matched line: λ = {lambda:.2}, test loss {loss:.4}, lower than both: {}",
        yes(best)
    );
    out
}

/// The split-merge table as CSV: `model,test_loss,test_accuracy`.
pub fn split_merge_csv(report: &SplitMergeReport) -> String {
    let mut out = String::from("model,test_loss,test_accuracy\n");
    for row in &report.rows {
        let _ = writeln!(out, "{},{},{}", row.name, row.test.loss, row.test.accuracy);
    }
    out
}
