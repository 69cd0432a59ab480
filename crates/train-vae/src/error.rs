//! Everything that can go wrong in train-vae, as one typed error with a one-line message.

use std::path::PathBuf;

use crate::data::DataError;

/// A train-vae failure. `Display` is the one line the binary prints before exiting non-zero.
#[derive(Debug, thiserror::Error)]
pub enum VaeError {
    /// Reading or parsing a data file failed.
    #[error(transparent)]
    Data(#[from] DataError),
    /// A setting is impossible.
    #[error("invalid setting --{field}: {reason}")]
    Config {
        /// The flag (and TOML key, with `-` as `_`).
        field: String,
        /// Why it is rejected.
        reason: String,
    },
    /// A config file could not be read or parsed.
    #[error("config file {path}: {reason}")]
    ConfigFile {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// A checkpoint is missing, unreadable or corrupt.
    #[error("checkpoint {path}: {reason}")]
    Checkpoint {
        /// The file or run directory.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// A checkpoint holds a model of another shape than the one configured.
    #[error(
        "checkpoint {path} does not fit the configured model: parameter {param} has shape {found:?}, the model expects {expected:?}"
    )]
    ShapeMismatch {
        /// The checkpoint file.
        path: PathBuf,
        /// Parameter path in the module tree.
        param: String,
        /// Shape in the checkpoint.
        found: Vec<usize>,
        /// Shape the configured model has.
        expected: Vec<usize>,
    },
    /// Training produced a non-finite loss.
    #[error(
        "training diverged in epoch {epoch} (non-finite loss); the last good checkpoint is {last_good}"
    )]
    Diverged {
        /// Epoch in which the loss stopped being finite.
        epoch: usize,
        /// The checkpoint kept from before the divergence.
        last_good: String,
    },
    /// A file could not be written or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Drawing a picture failed.
    #[error("plot {path}: {reason}")]
    Plot {
        /// The picture.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
}

impl VaeError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> VaeError {
        let path = path.into();
        move |source| VaeError::Io { path, source }
    }
}
