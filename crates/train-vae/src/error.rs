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
    /// A resumed run was asked to change what identifies it (its model, data or seeds).
    #[error(
        "--{flag} cannot change when resuming {run}: the run has {kept}, the flag asks for {asked} (start a new run with --out-dir to change it)"
    )]
    ResumeChanges {
        /// The flag (TOML key with `-` as `_`).
        flag: String,
        /// The run directory.
        run: PathBuf,
        /// The run's value.
        kept: String,
        /// The flag's value.
        asked: String,
    },
    /// Another process holds the run directory.
    #[error("{run} is in use by another train-vae process (its lock {lock} is held)")]
    RunInUse {
        /// The run directory.
        run: PathBuf,
        /// The lock file.
        lock: PathBuf,
    },
    /// Training stopped because a file of the run could not be written, or on SIGINT.
    #[error("training stopped: {reason}; the last complete checkpoint is {last_good}")]
    Stopped {
        /// Why (the file and the OS error, or the signal).
        reason: String,
        /// The last complete checkpoint kept, or `none`.
        last_good: String,
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

/// The first failure of the run's background writers (checkpoint recorder, metrics log),
/// shared between the threads burn-train runs them on; the training loop reports it when
/// it ends.
#[derive(Debug, Clone, Default)]
pub struct FirstFailure(std::sync::Arc<std::sync::Mutex<Option<String>>>);

impl FirstFailure {
    /// Records `reason` unless an earlier failure is already recorded.
    pub fn set(&self, reason: String) {
        if let Ok(mut slot) = self.0.lock() {
            slot.get_or_insert(reason);
        }
    }

    /// The recorded failure, if any.
    pub fn get(&self) -> Option<String> {
        self.0.lock().ok().and_then(|s| s.clone())
    }
}

impl VaeError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> VaeError {
        let path = path.into();
        move |source| VaeError::Io { path, source }
    }
}
