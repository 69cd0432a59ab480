//! Grey-level images in memory, and their binarizations.

use rand::{Rng, SeedableRng, rngs::StdRng};

use super::error::DataError;

/// Grey-level images, `n × pixels` bytes row-major (0 = white, 255 = black ink).
#[derive(Debug, Clone, PartialEq)]
pub struct Images {
    /// Rows of one image.
    pub rows: usize,
    /// Columns of one image.
    pub cols: usize,
    /// `len() · rows · cols` grey levels.
    pub pixels: Vec<u8>,
}

impl Images {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.pixels.len() / self.dim().max(1)
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.pixels.is_empty()
    }

    /// Pixels per image.
    pub fn dim(&self) -> usize {
        self.rows * self.cols
    }

    /// Images `range` as a new set.
    pub fn slice(&self, range: std::ops::Range<usize>) -> Images {
        let d = self.dim();
        Images {
            rows: self.rows,
            cols: self.cols,
            pixels: self.pixels[range.start * d..range.end * d].to_vec(),
        }
    }

    /// Grey levels scaled to `[0, 1]`, `len() · dim()` values: the Bernoulli means used by
    /// dynamic binarization.
    pub fn intensities(&self) -> Vec<f32> {
        self.pixels.iter().map(|&p| f32::from(p) / 255.0).collect()
    }

    /// One fixed binarization, `x ~ Bernoulli(grey / 255)` drawn from `seed`: the
    /// evaluation protocol (the same seed gives the same bits).
    pub fn binarize(&self, seed: u64) -> Vec<f32> {
        let rows: Vec<usize> = (0..self.len()).collect();
        let mut rng = StdRng::seed_from_u64(seed);
        binarize_rows(&self.intensities(), self.dim(), &rows, &mut rng)
    }

    /// Checks that every image has `expected` pixels.
    pub fn expect_dim(&self, expected: usize, what: &str) -> Result<(), DataError> {
        if self.dim() == expected {
            Ok(())
        } else {
            Err(DataError::PixelCount {
                what: what.to_string(),
                got: self.dim(),
                expected,
            })
        }
    }
}

/// Dynamic binarization: the images `rows` of the Bernoulli means `p: [n, d]` (see
/// [`Images::intensities`]), one after the other, each entry `x ~ Bernoulli(p)` from one
/// uniform draw of `rng` (`x = 1` iff `u < p`). Training draws a fresh one for every batch.
///
/// ```
/// use rand::{SeedableRng, rngs::StdRng};
/// use train_vae::data::binarize_rows;
///
/// let p = [0.0, 1.0, 0.5, 0.5];
/// let x = binarize_rows(&p, 2, &[1, 0], &mut StdRng::seed_from_u64(0));
/// assert_eq!(x.len(), 4);
/// assert_eq!(&x[2..], &[0.0, 1.0]);
/// ```
pub fn binarize_rows(p: &[f32], d: usize, rows: &[usize], rng: &mut impl Rng) -> Vec<f32> {
    let mut x = Vec::with_capacity(rows.len() * d);
    for &r in rows {
        x.extend(p[r * d..(r + 1) * d].iter().map(|&q| {
            let u: f32 = rng.random();
            if u < q { 1.0 } else { 0.0 }
        }));
    }
    x
}
