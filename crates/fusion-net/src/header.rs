//! Checks on a payload header's strings before anything compares, logs or
//! echoes them: tensor names and dtypes appear in refusal messages (and so
//! in the receiver's log), and a hostile sender could otherwise fill them
//! with megabytes or with newlines that forge log lines.

use crate::error::WireError;
use crate::payload::is_sha256_hex;
use crate::pb;

/// Longest tensor name in a manifest, in bytes. PyTorch state-dict keys
/// are far shorter; statistics are named `gram:LAYER` or `cross:LAYER`.
pub const MAX_TENSOR_NAME_BYTES: usize = 256;

/// Checks every name and dtype in the header's two manifest sections (at
/// most [`MAX_TENSOR_NAME_BYTES`] bytes, no control characters; dtypes at
/// most 8 bytes) and the payload hash (64 lowercase hex digits). The
/// error names the entry by position, never by its content.
pub fn check_header_text(header: &pb::Header) -> Result<(), WireError> {
    for (section, metas) in [
        ("manifest", &header.manifest),
        ("statistics", &header.statistics),
    ] {
        for (i, meta) in metas.iter().enumerate() {
            if meta.name.is_empty()
                || meta.name.len() > MAX_TENSOR_NAME_BYTES
                || meta.name.chars().any(crate::is_hidden)
            {
                return Err(WireError::Manifest(format!(
                    "{section} entry {i}: a tensor name must be 1 to {MAX_TENSOR_NAME_BYTES} bytes without control characters (got {} bytes)",
                    meta.name.len()
                )));
            }
            if meta.dtype.len() > 8 || meta.dtype.chars().any(|c| !c.is_ascii_alphanumeric()) {
                return Err(WireError::Manifest(format!(
                    "{section} entry {i} (`{}`): the dtype is not a dtype name ({} bytes)",
                    meta.name,
                    meta.dtype.len()
                )));
            }
        }
    }
    if !is_sha256_hex(&header.sha256) {
        return Err(WireError::Manifest(format!(
            "sha256 must be 64 lowercase hex digits, got {} bytes",
            header.sha256.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Payload;

    fn header() -> pb::Header {
        let model = fusion_core::synthetic::random_mlp(&[3, 4, 2], 0);
        Payload::from_params(&model)
            .expect("payload")
            .header(1, "c", 5)
    }

    #[test]
    fn honest_headers_pass_and_hostile_strings_are_refused_unechoed() {
        assert!(check_header_text(&header()).is_ok());
        let mut forged = header();
        forged.manifest[1].name = "layers.0.bias\nERROR forged".into();
        let err = check_header_text(&forged).expect_err("newline").to_string();
        assert!(
            err.contains("manifest entry 1") && !err.contains("forged"),
            "{err}"
        );
        let mut huge = header();
        huge.manifest[0].name = "w".repeat(4 << 20);
        let err = check_header_text(&huge).expect_err("4 MB").to_string();
        assert!(err.len() < 300, "the name is echoed: {} bytes", err.len());
        let mut dtype = header();
        dtype.manifest[0].dtype = "F32\n".repeat(1000);
        assert!(check_header_text(&dtype).is_err());
        let mut hash = header();
        hash.sha256 = "0".repeat(1 << 20);
        let err = check_header_text(&hash).expect_err("hash").to_string();
        assert!(err.contains("got 1048576 bytes"), "{err}");
    }
}
