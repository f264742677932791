//! The fuzz targets on the stable toolchain: every input of the committed
//! corpus (`fuzz/corpus/<target>/`, minimized with `cargo fuzz cmin`) and
//! every crash ever found (`fuzz/regressions/<target>/`), then a few
//! hundred seeded pseudo-random inputs, through the same functions the
//! libFuzzer targets call (`livepool::fuzzing`). A target panics on a
//! finding, so a regression fails here without cargo-fuzz or nightly.

use std::fs;
use std::path::{Path, PathBuf};

/// Every file under `fuzz/<dir>/<target>/`, sorted (so failures repeat).
fn inputs(dir: &str, target: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join(dir)
        .join(target);
    let Ok(entries) = fs::read_dir(&root) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Runs `target` on every stored input and `random` seeded ones; returns
/// how many stored inputs there were.
fn run(name: &str, target: fn(&[u8]), random: u64) -> usize {
    let mut stored = inputs("corpus", name);
    stored.extend(inputs("regressions", name));
    for path in &stored {
        let data = fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        // The path is in the panic message of a failing run (printed first).
        println!("{name}: {}", path.display());
        target(&data);
    }
    let mut rng = fastrand::Rng::with_seed(0x5eed_0000 + random);
    for n in 0..random {
        let len = rng.usize(..256);
        let data: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
        println!("{name}: random input {n} {data:02x?}");
        target(&data);
    }
    stored.len()
}

#[test]
fn codec_corpus_and_regressions() {
    let stored = run("codec", livepool::fuzzing::codec, 2_000);
    assert!(
        stored > 0,
        "no committed codec corpus under fuzz/corpus/codec"
    );
}

#[test]
fn client_corpus_and_regressions() {
    let stored = run("client", livepool::fuzzing::client, 200);
    assert!(
        stored > 0,
        "no committed client corpus under fuzz/corpus/client"
    );
}

#[test]
fn pooled_corpus_and_regressions() {
    let stored = run("pooled", livepool::fuzzing::pooled, 200);
    assert!(
        stored > 0,
        "no committed pooled corpus under fuzz/corpus/pooled"
    );
}
