//! One AFL++ harness for every target of `fusion-fuzz`: the target is
//! named by `FUSION_FUZZ_TARGET` (see `fuzz/run.sh`).

fn main() {
    let name = std::env::var("FUSION_FUZZ_TARGET").unwrap_or_default();
    let Some((_, target)) = fusion_fuzz::TARGETS.iter().find(|(n, _)| *n == name) else {
        let names: Vec<&str> = fusion_fuzz::TARGETS.iter().map(|(n, _)| *n).collect();
        eprintln!("set FUSION_FUZZ_TARGET to one of: {}", names.join(", "));
        std::process::exit(2);
    };
    afl::fuzz!(|data: &[u8]| {
        target(data);
    });
}
