//! The IDX reader against small files built here, and each malformed-file error.

use std::io::Write;
use std::path::{Path, PathBuf};

use fusion_data::idx::{IdxArray, encode_idx, read_idx};
use fusion_data::{DataError, DataSource};

/// A fresh temporary folder per test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fusion-data-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).expect("gzip");
    enc.finish().expect("gzip")
}

fn images(n: usize) -> IdxArray {
    IdxArray {
        dims: vec![n, 2, 3],
        data: (0..n * 6).map(|i| (i * 7 % 256) as u8).collect(),
    }
}

fn labels(n: usize) -> IdxArray {
    IdxArray {
        dims: vec![n],
        data: (0..n).map(|i| (i % 10) as u8).collect(),
    }
}

/// Writes the four MNIST-layout files into `dir`, gzip-compressed or raw.
fn write_mnist(dir: &Path, train: usize, test: usize, gz: bool) {
    let files = [
        ("train-images-idx3-ubyte", encode_idx(&images(train))),
        ("train-labels-idx1-ubyte", encode_idx(&labels(train))),
        ("t10k-images-idx3-ubyte", encode_idx(&images(test))),
        ("t10k-labels-idx1-ubyte", encode_idx(&labels(test))),
    ];
    for (name, bytes) in files {
        if gz {
            std::fs::write(dir.join(format!("{name}.gz")), gzip(&bytes)).expect("write");
        } else {
            std::fs::write(dir.join(name), bytes).expect("write");
        }
    }
}

#[test]
fn raw_and_gzip_files_read_back_exactly() {
    let dir = scratch("roundtrip");
    let want = images(5);
    std::fs::write(dir.join("a"), encode_idx(&want)).expect("write");
    std::fs::write(dir.join("b.gz"), gzip(&encode_idx(&want))).expect("write");
    assert_eq!(read_idx(&dir.join("a")).expect("raw"), want);
    assert_eq!(read_idx(&dir.join("b.gz")).expect("gz"), want);
    // Asking for `b` finds `b.gz`: datasets ship either way.
    assert_eq!(read_idx(&dir.join("b")).expect("gz by stem"), want);
}

#[test]
fn mnist_layout_loads_as_datasets() {
    for gz in [false, true] {
        let dir = scratch(if gz { "mnist-gz" } else { "mnist-raw" });
        write_mnist(&dir, 20, 7, gz);
        let data: DataSource = format!("mnist:{}", dir.display()).parse().expect("source");
        let data = data.load().expect("load");
        assert_eq!((data.train.len(), data.test.len()), (20, 7));
        assert_eq!(data.train.shape(), [1, 2, 3]);
        assert_eq!(data.train.image(3), &images(20).data[18..24]);
        assert_eq!(data.train.labels()[13], 3);
        let (x, y) = data.train.batch(&[1]);
        assert_eq!(y, vec![1]);
        assert!((x[0] - f32::from(images(20).data[6]) / 255.0).abs() < 1e-7);
    }
}

fn expect_err(path: &Path) -> DataError {
    read_idx(path).expect_err("malformed file must be refused")
}

#[test]
fn missing_file_is_named() {
    let dir = scratch("missing");
    let err = expect_err(&dir.join("nothing-here"));
    assert!(matches!(err, DataError::Missing { .. }), "{err}");
    assert!(err.to_string().contains("nothing-here"), "{err}");

    let err = DataSource::FashionMnist(dir.clone())
        .load()
        .expect_err("empty folder");
    let text = err.to_string();
    assert!(
        text.contains("train-images-idx3-ubyte") && text.contains("apt-get install"),
        "{text}"
    );
}

#[test]
fn bad_magic_is_refused() {
    let dir = scratch("magic");
    let mut bytes = encode_idx(&images(2));
    bytes[2] = 0x0D; // float data: not what MNIST holds
    std::fs::write(dir.join("f"), &bytes).expect("write");
    let err = expect_err(&dir.join("f"));
    assert!(
        matches!(
            err,
            DataError::BadMagic {
                found: 0x0000_0D03,
                ..
            }
        ),
        "{err}"
    );
    std::fs::write(dir.join("png"), b"\x89PNG\r\n\x1a\n....").expect("write");
    assert!(matches!(
        expect_err(&dir.join("png")),
        DataError::BadMagic { .. }
    ));
}

#[test]
fn truncated_data_and_header_are_refused() {
    let dir = scratch("truncated");
    let bytes = encode_idx(&images(4));
    std::fs::write(dir.join("short"), &bytes[..bytes.len() - 5]).expect("write");
    let err = expect_err(&dir.join("short"));
    assert!(
        matches!(
            err,
            DataError::Truncated {
                expected: 24,
                actual: 19,
                ..
            }
        ),
        "{err}"
    );
    std::fs::write(dir.join("header"), &bytes[..9]).expect("write");
    assert!(matches!(
        expect_err(&dir.join("header")),
        DataError::Truncated { .. }
    ));
    // A gzip stream cut short is reported as such, not as garbage data.
    let gz = gzip(&bytes);
    std::fs::write(dir.join("cut.gz"), &gz[..gz.len() / 2]).expect("write");
    assert!(matches!(
        expect_err(&dir.join("cut.gz")),
        DataError::Gzip { .. }
    ));
}

#[test]
fn image_and_label_count_mismatch_is_refused() {
    let dir = scratch("count");
    write_mnist(&dir, 10, 3, false);
    std::fs::write(dir.join("train-labels-idx1-ubyte"), encode_idx(&labels(9))).expect("write");
    let err = DataSource::Mnist(dir).load().expect_err("mismatch");
    assert!(
        matches!(
            err,
            DataError::CountMismatch {
                n_images: 10,
                n_labels: 9,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("train-labels-idx1-ubyte"), "{err}");
}

#[test]
fn labels_outside_the_classes_are_refused() {
    let dir = scratch("label");
    write_mnist(&dir, 10, 3, false);
    let mut bad = labels(3);
    bad.data[2] = 12;
    std::fs::write(dir.join("t10k-labels-idx1-ubyte"), encode_idx(&bad)).expect("write");
    let err = DataSource::Mnist(dir).load().expect_err("label 12");
    assert!(
        matches!(
            err,
            DataError::BadLabel {
                label: 12,
                index: 2,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn cifar_batches_parse_and_truncation_is_refused() {
    let dir = scratch("cifar");
    let record = |label: u8| {
        let mut r = vec![label];
        r.extend((0..3072).map(|i| (i % 251) as u8));
        r
    };
    for i in 1..=5 {
        std::fs::write(
            dir.join(format!("data_batch_{i}.bin")),
            [record(i), record(9)].concat(),
        )
        .expect("write");
    }
    std::fs::write(dir.join("test_batch.bin"), record(0)).expect("write");
    let data = DataSource::Cifar10(dir.clone()).load().expect("cifar");
    assert_eq!((data.train.len(), data.test.len()), (10, 1));
    assert_eq!(data.train.shape(), [3, 32, 32]);
    assert_eq!(data.train.labels(), &[1, 9, 2, 9, 3, 9, 4, 9, 5, 9]);

    std::fs::write(dir.join("test_batch.bin"), &record(0)[..100]).expect("write");
    let err = DataSource::Cifar10(dir).load().expect_err("truncated");
    assert!(
        matches!(err, DataError::Truncated { .. }) && err.to_string().contains("test_batch.bin"),
        "{err}"
    );
}

#[test]
fn embedded_sample_is_the_documented_cut() {
    let data = DataSource::Embedded.load().expect("embedded");
    assert_eq!((data.train.len(), data.test.len()), (12_000, 2_000));
    assert_eq!(data.train.shape(), [1, 28, 28]);
    // Fashion-MNIST's first training label is 9 (ankle boot), first test label 9 too.
    assert_eq!(data.train.labels()[0], 9);
    assert_eq!(data.test.labels()[0], 9);
    assert!(data.train.class_counts().iter().all(|&c| c > 1000));
}

#[test]
fn bad_dataset_names_are_explained() {
    for (given, needle) in [
        ("mnist", "needs a folder"),
        ("imagenet", "expected `embedded`"),
        ("embedded:x", "expected"),
    ] {
        let err = given.parse::<DataSource>().expect_err(given);
        assert!(err.to_string().contains(needle), "{given}: {err}");
    }
}
