//! # fusion-fuzz
//!
//! Fuzz targets: every reader of bytes that come from outside the process,
//! each a function that must return (never panic, hang or allocate without
//! bound) whatever its input. `fuzz/afl` runs them under AFL++
//! (`cargo afl`, stable Rust); `tests/corpus.rs` replays the corpus they
//! found and a burst of random inputs on every test run.
//!
//! - [`upload`]: a stream of gRPC `Chunk` messages, through the assembler
//!   and the payload decoder, as the server receives an upload.
//! - [`safetensors`]: a model file, as `fusion` commands and a resumed
//!   server read it.
//! - [`spec`]: a permutation spec file (TOML or JSON), validated against a
//!   small model.
//! - [`server_config`]: a server TOML file, and a per-client token file.

#![deny(missing_docs)]

mod seeds;

pub use seeds::seeds;

use fusion_core::{ParamSet, PermutationSpec};
use fusion_net::{Assembler, DecodingAssembler, pb};
use prost::Message;

/// The largest payload [`upload`] lets the assembler accept: small, so a
/// header announcing more is refused as the server refuses one above its
/// `max_update_bytes`.
pub const MAX_UPLOAD_BYTES: u64 = 1 << 20;

/// A fuzz target: takes any bytes, and must return.
pub type Target = fn(&[u8]);

/// The targets by name, for the AFL binaries and the replay test.
pub const TARGETS: [(&str, Target); 4] = [
    ("upload", upload),
    ("safetensors", safetensors),
    ("spec", spec),
    ("server_config", server_config),
];

/// `data` as a sequence of messages: each a 2-byte little-endian length
/// and that many bytes (the last one takes what is left), decoded as
/// `Chunk`s and fed, like an upload stream, both to the server's
/// [`DecodingAssembler`] (which decodes as chunks arrive) and to an
/// [`Assembler`] whose complete payload is decoded at the end. The two
/// must agree: the same update from both, or a refusal from both.
pub fn upload(data: &[u8]) {
    let mut rest = data;
    let mut bytes: Option<Assembler> = None;
    // `None` once the streaming side refused (a non-finite value or a
    // duplicate name is refused on arrival; the bytes side refuses it
    // when it decodes at the end).
    let mut streaming: Option<DecodingAssembler> = None;
    while !rest.is_empty() {
        let (message, tail) = split_message(rest);
        rest = tail;
        let Ok(chunk) = pb::Chunk::decode(message) else {
            return;
        };
        match bytes.as_mut() {
            None => {
                if let Some(pb::chunk::Part::Header(header)) = &chunk.part
                    && fusion_net::check_header_text(header).is_err()
                {
                    return;
                }
                streaming = DecodingAssembler::start(chunk.clone(), MAX_UPLOAD_BYTES).ok();
                match Assembler::start(chunk, MAX_UPLOAD_BYTES) {
                    Ok(a) => bytes = Some(a),
                    Err(_) => {
                        assert!(
                            streaming.is_none(),
                            "only the streaming side took the header"
                        );
                        return;
                    }
                }
            }
            Some(a) => {
                if let Some(d) = streaming.as_mut()
                    && d.push(chunk.clone()).is_err()
                {
                    streaming = None;
                }
                if a.push(chunk).is_err() {
                    return;
                }
            }
        }
    }
    let Some(a) = bytes else {
        return;
    };
    let at_end = a.finish().and_then(|received| received.payload.to_update());
    match (at_end, streaming.and_then(|d| d.finish().ok())) {
        (Ok((params, statistics)), Some(update)) => {
            assert!(
                params == update.params && statistics == update.statistics,
                "the assemblers decoded different updates"
            );
        }
        (Err(_), None) => {}
        (at_end, streamed) => panic!(
            "the assemblers disagree: bytes then decode {:?}, streaming {}",
            at_end.map(|_| ()),
            if streamed.is_some() {
                "accepted"
            } else {
                "refused"
            }
        ),
    }
}

/// `data` as a safetensors file: its metadata, its tensors, and (when it
/// reads) a round trip that must give the same bytes back.
pub fn safetensors(data: &[u8]) {
    let _ = fusion_core::safetensors_metadata(data);
    if let Ok(params) = ParamSet::from_safetensors(data) {
        let bytes = params.to_safetensors().expect("a read model writes");
        let again = ParamSet::from_safetensors(&bytes).expect("a written model reads");
        // Bit for bit (a file may hold NaN, which `==` never matches).
        let rewritten = again.to_safetensors().expect("a read model writes");
        assert!(
            rewritten == bytes,
            "safetensors round trip changed the model"
        );
    }
}

/// `data` as a spec file, validated against a small MLP (and, when it
/// validates, applied with identity permutations, which must change
/// nothing).
pub fn spec(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(spec) = PermutationSpec::parse(text) else {
        return;
    };
    let model = fusion_core::synthetic::random_mlp(&[4, 3, 3, 2], 0);
    if let Ok(valid) = spec.validate(&model) {
        let same = valid
            .apply(&model, &valid.identity())
            .expect("identity applies");
        assert_eq!(same, model, "identity permutations change nothing");
    }
}

/// `data` as a server configuration file (TOML, then validated) or, when
/// its first byte is 0, the rest as a per-client token file.
pub fn server_config(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let bytes = if first == 0 { rest } else { data };
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    if first == 0 {
        if let Ok(clients) = fusion_net::parse_token_file(text) {
            let _ = fusion_net::TokenTable::new(None, &clients);
        }
        return;
    }
    if let Ok(config) = toml::from_str::<fusion_server::ServerConfig>(text) {
        let _ = config.validate();
    }
}

/// The next message of `data` and what follows it.
fn split_message(data: &[u8]) -> (&[u8], &[u8]) {
    if data.len() < 2 {
        return (data, &[]);
    }
    let len = usize::from(u16::from_le_bytes([data[0], data[1]]));
    let body = &data[2..];
    body.split_at(len.min(body.len()))
}

/// Encodes `chunks` the way [`upload`] reads them: for seeding a corpus.
pub fn encode_upload(chunks: &[pb::Chunk]) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in chunks {
        let bytes = chunk.encode_to_vec();
        let len = u16::try_from(bytes.len()).expect("seed chunks under 64 KiB");
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&bytes);
    }
    out
}
