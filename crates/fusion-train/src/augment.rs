//! The standard CIFAR training augmentation: each image padded by 4 zero
//! pixels, cropped back at a random offset, and mirrored left-right half of
//! the time (He et al. 2016), drawn afresh for every batch.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// Pixels of zero padding around an image before the random crop.
pub const PAD: isize = 4;

/// Augments a batch in place: `x` holds `n` images of `shape`
/// (`[c, h, w]`, channel-major), each shifted by a random offset in
/// ±[`PAD`] on both axes (uncovered pixels 0) and mirrored with
/// probability ½.
pub fn crop_flip(x: &mut [f32], n: usize, shape: [usize; 3], rng: &mut StdRng) {
    let size: usize = shape.iter().product();
    for image in x.chunks_exact_mut(size).take(n) {
        let dy = rng.random_range(0..=2 * PAD as u32) as isize - PAD;
        let dx = rng.random_range(0..=2 * PAD as u32) as isize - PAD;
        let flip = rng.random_bool(0.5);
        let out = shifted(image, shape, dy, dx, flip);
        image.copy_from_slice(&out);
    }
}

/// One image mirrored (if `flip`) then shifted: output pixel (i, j) is
/// input pixel (i + dy, j + dx) of the mirrored image, or 0 outside it.
pub fn shifted(image: &[f32], [c, h, w]: [usize; 3], dy: isize, dx: isize, flip: bool) -> Vec<f32> {
    let mut out = vec![0.0; image.len()];
    for ch in 0..c {
        for i in 0..h {
            let Some(si) = i.checked_add_signed(dy).filter(|&si| si < h) else {
                continue;
            };
            for j in 0..w {
                let Some(sj) = j.checked_add_signed(dx).filter(|&sj| sj < w) else {
                    continue;
                };
                let sj = if flip { w - 1 - sj } else { sj };
                out[(ch * h + i) * w + j] = image[(ch * h + si) * w + sj];
            }
        }
    }
    out
}

/// The augmentation RNG of one epoch of a run seeded by `seed`.
pub(crate) fn epoch_rng(seed: u64, epoch: usize) -> StdRng {
    StdRng::seed_from_u64(seed ^ 0xA11C_E5ED ^ (epoch as u64).wrapping_mul(0x9E37_79B9))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shift_and_mirror_move_pixels_where_they_should() {
        // One channel, 2x3: [[1, 2, 3], [4, 5, 6]].
        let image = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let shape = [1, 2, 3];
        assert_eq!(shifted(&image, shape, 0, 0, false), image);
        assert_eq!(
            shifted(&image, shape, 0, 0, true),
            [3.0, 2.0, 1.0, 6.0, 5.0, 4.0]
        );
        // Down one row: the top row comes from row 1, the bottom is padding.
        assert_eq!(
            shifted(&image, shape, 1, 0, false),
            [4.0, 5.0, 6.0, 0.0, 0.0, 0.0]
        );
        // Right by one column of the source: pixel (i, j) = (i, j - 1).
        assert_eq!(
            shifted(&image, shape, 0, -1, false),
            [0.0, 1.0, 2.0, 0.0, 4.0, 5.0]
        );
        assert_eq!(
            shifted(&image, shape, 0, -1, true),
            [0.0, 3.0, 2.0, 0.0, 6.0, 5.0]
        );
    }

    #[test]
    fn a_batch_is_augmented_image_by_image_and_reproducibly() {
        let shape = [3, 4, 4];
        let batch: Vec<f32> = (0..2 * 48).map(|v| v as f32 + 1.0).collect();
        let (mut a, mut b) = (batch.clone(), batch.clone());
        crop_flip(&mut a, 2, shape, &mut epoch_rng(1, 1));
        crop_flip(&mut b, 2, shape, &mut epoch_rng(1, 1));
        assert_eq!(a, b, "same seed and epoch, same batch");
        assert_ne!(a, batch, "something moved");
        // The second image's pixels come from the second image only.
        assert!(a[48..].iter().all(|&v| v == 0.0 || v > 48.0));
    }
}
