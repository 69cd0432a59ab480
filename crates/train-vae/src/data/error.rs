//! What can be wrong with a data file.

use std::path::PathBuf;

/// Everything that can be wrong with a data file. Each message names the file.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file starts like gzip but does not decompress.
    #[error("{what}: corrupt gzip data: {source}")]
    Gzip {
        /// The file.
        what: String,
        /// Why.
        source: std::io::Error,
    },
    /// The IDX magic number is not the one for this kind of file.
    #[error("{what}: not an IDX {kind} file (magic number {got:#010x}, expected {expected:#010x})")]
    BadMagic {
        /// The file.
        what: String,
        /// "images" or "labels".
        kind: &'static str,
        /// Magic number found.
        got: u32,
        /// Magic number expected.
        expected: u32,
    },
    /// Fewer bytes than the header promises (or than a header needs).
    #[error("{what}: truncated: expected {expected} bytes, found {got}")]
    Truncated {
        /// The file.
        what: String,
        /// Bytes the header promises: `u128`, because three 32-bit IDX dimensions can
        /// promise more than a `usize` holds.
        expected: u128,
        /// Bytes present.
        got: usize,
    },
    /// More bytes than the header promises.
    #[error("{what}: {extra} bytes after the {expected} bytes the header promises")]
    TrailingBytes {
        /// The file.
        what: String,
        /// Bytes the header promises.
        expected: usize,
        /// Bytes beyond them.
        extra: usize,
    },
    /// A `.amat` line with the wrong number of values.
    #[error("{what}: line {line} has {got} values, expected {expected}")]
    AmatLineLength {
        /// The file.
        what: String,
        /// 1-based line number.
        line: usize,
        /// Values found.
        got: usize,
        /// Values expected.
        expected: usize,
    },
    /// A `.amat` value that is not a number in [0, 1].
    #[error("{what}: line {line}: `{value}` is not a number in [0, 1]")]
    AmatValue {
        /// The file.
        what: String,
        /// 1-based line number.
        line: usize,
        /// The offending text.
        value: String,
    },
    /// A file with no images.
    #[error("{what}: holds no images")]
    Empty {
        /// The file.
        what: String,
    },
    /// Images of a size the model does not take.
    #[error("{what}: images have {got} pixels, the model expects {expected}")]
    PixelCount {
        /// The file.
        what: String,
        /// Pixels per image in the file.
        got: usize,
        /// Pixels per image the model takes.
        expected: usize,
    },
    /// Labels and images do not pair up.
    #[error("{what}: {labels} labels for {images} images")]
    LabelCount {
        /// The label file.
        what: String,
        /// Number of labels.
        labels: usize,
        /// Number of images.
        images: usize,
    },
    /// A directory without the standard MNIST file names.
    #[error("{dir}: no {name} (or {name}.gz) in this directory")]
    MissingInDir {
        /// The directory.
        dir: PathBuf,
        /// The standard file name looked for.
        name: &'static str,
    },
}
