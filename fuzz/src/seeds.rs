//! Well-formed inputs for each target, from which the fuzzer mutates: an
//! honest upload, a model file, a spec file and a server configuration.

use fusion_core::ParamSet;
use fusion_net::Payload;

/// The seed inputs of `target` (a name in [`crate::TARGETS`]).
pub fn seeds(target: &str) -> Vec<Vec<u8>> {
    let model = fusion_core::synthetic::random_mlp(&[4, 3, 3, 2], 0);
    match target {
        "upload" => {
            let payload = Payload::from_params(&model).expect("payload");
            let mut header = payload.header(1, "client-0", 10);
            header.session = "0123456789abcdef0123456789abcdef".into();
            let chunks: Vec<_> = payload.chunks(header, 64).collect();
            vec![crate::encode_upload(&chunks)]
        }
        "safetensors" => vec![
            model.to_safetensors().expect("safetensors"),
            ParamSet::new().to_safetensors().expect("empty safetensors"),
        ],
        "spec" => {
            let spec = fusion_core::infer_mlp_spec(&model).expect("mlp spec");
            vec![spec.to_toml().into_bytes()]
        }
        "server_config" => vec![
            include_bytes!("../../deploy/server.toml").to_vec(),
            b"\0client-0 0123456789abcdef0123\nclient-1 fedcba98765432100123\n".to_vec(),
        ],
        other => panic!("no target named `{other}`"),
    }
}
