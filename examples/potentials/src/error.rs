//! The program's errors.

use std::path::PathBuf;

/// Why a run stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Flow(#[from] flow_core::FlowError),
    #[error(transparent)]
    Plot(#[from] flow_plots::PlotError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("U{target} {flow}:{k} diverged at step {step}: loss is {loss}; try a smaller --lr")]
    Diverged {
        target: usize,
        flow: &'static str,
        k: usize,
        step: usize,
        loss: f64,
    },
    #[error("free energy is not finite ({own}, {trained})")]
    NotFinite { own: f64, trained: f64 },
}

/// The program's results.
pub type Result<T> = std::result::Result<T, Error>;
