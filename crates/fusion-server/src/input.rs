//! Checks on the strings clients send, made before any of them is used,
//! stored, logged or echoed in an error: a hostile client could otherwise
//! forge log lines (a newline in an id), flood the log (a 4 MB spec hash
//! logged whole), or make the server echo megabytes back.

use tonic::Status;

/// Longest client id, in bytes (UTF-8).
pub const MAX_CLIENT_ID_BYTES: usize = 128;

/// Checks a client id: 1 to [`MAX_CLIENT_ID_BYTES`] bytes of UTF-8 with no
/// control characters (newlines, escapes, NUL), so that it can be logged,
/// stored and shown as it is.
pub fn check_client_id(id: &str) -> Result<(), Status> {
    if id.is_empty() || id.len() > MAX_CLIENT_ID_BYTES {
        return Err(Status::invalid_argument(format!(
            "client_id must be 1 to {MAX_CLIENT_ID_BYTES} bytes of UTF-8, got {} bytes",
            id.len()
        )));
    }
    if let Some((at, c)) = id.char_indices().find(|(_, c)| fusion_net::is_hidden(*c)) {
        return Err(Status::invalid_argument(format!(
            "client_id must not contain control characters or invisible ones that reorder \
             or hide text; byte {at} is {}",
            c.escape_unicode()
        )));
    }
    Ok(())
}

/// Checks a model spec hash: SHA-256 as 64 lowercase hex digits, as
/// `fusion_net::manifest_hash` writes it. Only then is it compared or
/// echoed.
pub fn check_spec_hash(hash: &str) -> Result<(), Status> {
    if !fusion_net::is_sha256_hex(hash) {
        return Err(Status::invalid_argument(format!(
            "spec_hash must be a SHA-256 as 64 lowercase hex digits, got {} bytes",
            hash.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_bounded_in_bytes_and_free_of_control_characters() {
        assert!(check_client_id("client-1").is_ok());
        assert!(check_client_id(&"é".repeat(64)).is_ok()); // 128 bytes
        let long = check_client_id(&"é".repeat(65)).expect_err("130 bytes");
        assert!(long.message().contains("got 130 bytes"), "{long:?}");
        assert!(check_client_id("").is_err());
        let forged = check_client_id("a\n2026-12-04T00:00:00Z INFO forged").expect_err("newline");
        assert!(forged.message().contains("byte 1 is \\u{a}"), "{forged:?}");
        assert!(check_client_id("a\u{1b}[31m").is_err());
        // Shown as "client-0" (reversed tail) or identical to another id.
        assert!(check_client_id("0-tneilc\u{202e}").is_err());
        assert!(check_client_id("client\u{200b}-0").is_err());
    }

    #[test]
    fn spec_hashes_are_sha256_hex() {
        assert!(check_spec_hash(&"ab".repeat(32)).is_ok());
        let huge = check_spec_hash(&"a".repeat(4 << 20)).expect_err("4 MB");
        assert!(huge.message().len() < 200, "the hash is not echoed");
        assert!(check_spec_hash(&"AB".repeat(32)).is_err());
        assert!(check_spec_hash(&"zz".repeat(32)).is_err());
    }
}
