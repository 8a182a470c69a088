//! Split properties: disjoint, covering, deterministic, in the stated proportions.

use fusion_data::{ShardRef, Split};

/// 10 classes with uneven sizes (100..190 examples), interleaved.
fn labels() -> Vec<u8> {
    let mut out = Vec::new();
    for round in 0..190 {
        for class in 0..10u8 {
            if round < 100 + 10 * class as usize {
                out.push(class);
            }
        }
    }
    out
}

fn check_partition(shards: &[Vec<usize>], n: usize) {
    let mut seen = vec![0u8; n];
    for shard in shards {
        assert!(
            shard.windows(2).all(|w| w[0] < w[1]),
            "shard not sorted or has duplicates"
        );
        for &i in shard {
            seen[i] += 1;
        }
    }
    assert!(
        seen.iter().all(|&s| s == 1),
        "shards must be disjoint and cover every example"
    );
}

fn class_count(labels: &[u8], shard: &[usize], class: u8) -> usize {
    shard.iter().filter(|&&i| labels[i] == class).count()
}

#[test]
fn every_split_is_a_partition_and_deterministic() {
    let labels = labels();
    for text in [
        "iid",
        "dirichlet:0.3",
        "dirichlet:100",
        "classes:0-4/5-9",
        "biased:0.8",
    ] {
        let split: Split = text.parse().expect(text);
        for shards in [2, 3] {
            if text.starts_with("classes") && shards != 2 {
                continue;
            }
            let a = split.shards(&labels, 10, shards, 7).expect(text);
            check_partition(&a, labels.len());
            assert_eq!(
                a,
                split.shards(&labels, 10, shards, 7).expect(text),
                "{text}: same seed, same shards"
            );
            if text != "classes:0-4/5-9" {
                assert_ne!(
                    a,
                    split.shards(&labels, 10, shards, 8).expect(text),
                    "{text}: seed must matter"
                );
            }
        }
    }
}

#[test]
fn iid_shards_are_near_equal() {
    let labels = labels();
    let shards = Split::Iid.shards(&labels, 10, 3, 1).expect("iid");
    let sizes: Vec<usize> = shards.iter().map(Vec::len).collect();
    assert!(
        sizes.iter().max().expect("sizes") - sizes.iter().min().expect("sizes") <= 1,
        "{sizes:?}"
    );
}

#[test]
fn biased_split_gives_the_papers_proportions() {
    let labels = labels();
    let shards = Split::Biased(0.8)
        .shards(&labels, 10, 2, 3)
        .expect("biased");
    for class in 0..10u8 {
        let total = labels.iter().filter(|&&l| l == class).count() as f64;
        let in_a = class_count(&labels, &shards[0], class) as f64 / total;
        let want = if class < 5 { 0.8 } else { 0.2 };
        assert!(
            (in_a - want).abs() <= 1.0 / total,
            "class {class}: shard A holds {in_a:.3}, want {want}"
        );
    }
}

#[test]
fn class_split_gives_disjoint_label_sets() {
    let labels = labels();
    let shards = "classes:0-4/5-9"
        .parse::<Split>()
        .expect("parse")
        .shards(&labels, 10, 2, 0)
        .expect("split");
    assert!(shards[0].iter().all(|&i| labels[i] < 5));
    assert!(shards[1].iter().all(|&i| labels[i] >= 5));
    let odd = "classes:0,2,4,6,8/1,3,5,7,9"
        .parse::<Split>()
        .expect("parse");
    let shards = odd.shards(&labels, 10, 2, 0).expect("split");
    assert!(shards[1].iter().all(|&i| labels[i] % 2 == 1));
}

#[test]
fn dirichlet_alpha_controls_skew() {
    // Small alpha concentrates each class on few shards; large alpha spreads it.
    let labels = labels();
    let skew = |alpha: f64| {
        let shards = Split::Dirichlet(alpha)
            .shards(&labels, 10, 4, 11)
            .expect("dirichlet");
        let mut worst = 0.0f64;
        for class in 0..10u8 {
            let total = labels.iter().filter(|&&l| l == class).count() as f64;
            for shard in &shards {
                worst = worst.max(class_count(&labels, shard, class) as f64 / total);
            }
        }
        worst
    };
    assert!(
        skew(0.1) > 0.6,
        "alpha 0.1 should leave some class mostly on one shard"
    );
    assert!(
        skew(1000.0) < 0.35,
        "alpha 1000 should spread every class evenly"
    );
}

#[test]
fn bad_splits_and_shards_are_explained() {
    let labels = labels();
    for (text, needle) in [
        ("dirichlet", "needs a value"),
        ("dirichlet:-1", "must be in"),
        ("biased:1.5", "must be in"),
        ("classes:0-4", "at least two"),
        ("classes:4-0/5-9", "backwards"),
        ("round-robin", "expected"),
    ] {
        let err = text.parse::<Split>().expect_err(text);
        assert!(err.to_string().contains(needle), "{text}: {err}");
    }
    let gaps = "classes:0-3/5-9".parse::<Split>().expect("parse");
    let err = gaps
        .shards(&labels, 10, 2, 0)
        .expect_err("class 4 in no group");
    assert!(err.to_string().contains("class 4 is in no group"), "{err}");
    let overlap = "classes:0-5/5-9".parse::<Split>().expect("parse");
    assert!(overlap.shards(&labels, 10, 2, 0).is_err());
    let three = "classes:0-4/5-9".parse::<Split>().expect("parse");
    assert!(
        three
            .shards(&labels, 10, 3, 0)
            .expect_err("3 shards")
            .to_string()
            .contains("one group per shard")
    );

    assert_eq!(
        "1/3".parse::<ShardRef>().expect("shard"),
        ShardRef { index: 1, count: 3 }
    );
    for bad in ["3/3", "1", "a/3", "0/0"] {
        assert!(bad.parse::<ShardRef>().is_err(), "{bad}");
    }
}

#[test]
fn shards_from_a_file_are_checked_for_range_overlap_and_emptiness() {
    use fusion_data::check_shards;
    check_shards(&[vec![0, 2], vec![1]], 3).expect("disjoint, in range");
    // Leaving examples out is allowed: another implementation may hold
    // some back.
    check_shards(&[vec![0], vec![2]], 3).expect("a partial cover");
    let err = check_shards(&[vec![0, 3]], 3)
        .expect_err("out of range")
        .to_string();
    assert!(err.contains("shard 0 lists example 3"), "{err}");
    let err = check_shards(&[vec![0, 1], vec![2, 1]], 3)
        .expect_err("twice")
        .to_string();
    assert!(
        err.contains("example 1 is dealt twice: to shard 0 and to shard 1"),
        "{err}"
    );
    let err = check_shards(&[vec![0], vec![]], 3)
        .expect_err("empty")
        .to_string();
    assert!(err.contains("shard 1 is empty"), "{err}");
    let err = check_shards(&[], 3).expect_err("none").to_string();
    assert!(err.contains("no shards"), "{err}");
}
