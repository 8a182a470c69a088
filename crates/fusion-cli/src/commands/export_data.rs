//! `fusion export-data`: one silo's shard of a dataset as NumPy `.npy`
//! files, so a user's own trainer (`fusion-client --trainer-cmd`) can
//! train on exactly the shard a built-in client would, and the examples
//! run on the embedded data with nothing downloaded.

use std::path::Path;

use anyhow::{Context, Result};
use fusion_data::Dataset;
use serde_json::json;

use super::report::print_json;
use crate::cli::ExportDataArgs;
use crate::files::write_atomic;
use crate::options::load_data;

/// Runs `fusion export-data`.
pub fn run(args: ExportDataArgs) -> Result<()> {
    let data = load_data(&args.data.dataset)?;
    let (train, _) = args.shard.select(&data.train)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create '{}'", args.out.display()))?;
    write_part(&args.out, "train", &train)?;
    write_part(&args.out, "test", &data.test)?;
    let summary = json!({
        "out": args.out,
        "train_examples": train.len(),
        "test_examples": data.test.len(),
        "image_shape": data.test.shape(),
        "classes": data.test.classes(),
    });
    if args.json {
        return print_json(&summary);
    }
    println!(
        "wrote {} training and {} test images ({:?}, {} classes) to {}",
        train.len(),
        data.test.len(),
        data.test.shape(),
        data.test.classes(),
        args.out.display()
    );
    Ok(())
}

/// `{part}-images.npy` (uint8, `[n, channels, height, width]`, 0–255) and
/// `{part}-labels.npy` (uint8, `[n]`).
fn write_part(dir: &Path, part: &str, data: &Dataset) -> Result<()> {
    let [c, h, w] = data.shape();
    let mut images = Vec::with_capacity(data.len() * data.features());
    for i in 0..data.len() {
        images.extend_from_slice(data.image(i));
    }
    write_atomic(
        &dir.join(format!("{part}-images.npy")),
        &npy_u8(&[data.len(), c, h, w], &images),
    )?;
    write_atomic(
        &dir.join(format!("{part}-labels.npy")),
        &npy_u8(&[data.len()], data.labels()),
    )
}

/// A NumPy `.npy` file (format 1.0) of unsigned bytes.
fn npy_u8(shape: &[usize], values: &[u8]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    let shape_text = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header = format!("{{'descr': '|u1', 'fortran_order': False, 'shape': {shape_text}, }}");
    // Magic (6) + version (2) + length (2) + header + '\n', to a multiple of 64.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + values.len());
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(values);
    out
}

#[cfg(test)]
mod tests {
    use super::npy_u8;

    #[test]
    fn npy_headers_are_aligned_and_describe_the_array() {
        let file = npy_u8(&[2, 1, 2, 2], &[0, 1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(&file[..8], b"\x93NUMPY\x01\x00");
        let len = u16::from_le_bytes([file[8], file[9]]) as usize;
        assert_eq!((10 + len) % 64, 0);
        let header = std::str::from_utf8(&file[10..10 + len]).expect("ascii");
        assert!(header.contains("'shape': (2, 1, 2, 2)"), "{header}");
        assert!(header.ends_with('\n'));
        assert_eq!(&file[10 + len..], &[0, 1, 2, 3, 4, 5, 6, 7]);
        let vector = npy_u8(&[3], &[9, 9, 9]);
        assert!(String::from_utf8_lossy(&vector).contains("'shape': (3,)"));
    }
}
