//! The program's errors.

use density::data::DataError;

/// Errors of the program: data, flow, figures, model files.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Flow(#[from] flow_core::FlowError),
    #[error(transparent)]
    Plot(#[from] flow_plots::PlotError),
    #[error("{0}")]
    Other(String),
}

/// The program's results.
pub(crate) type Result<T> = std::result::Result<T, Error>;

/// Any other failure, as its message.
pub(crate) fn other(e: impl std::fmt::Display) -> Error {
    Error::Other(e.to_string())
}
