//! The typed errors of flow-core.

/// Everything that can go wrong when a flow is built or given data.
///
/// Shape and configuration problems are detected from tensor metadata only (no device
/// round trip). Non-finite *values* are only detected by the explicitly checked entry
/// points (for example [`crate::Flow::log_prob_checked`]), because finding them needs a
/// read back to the host.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FlowError {
    /// The input's feature dimension does not match the flow's.
    #[error(
        "dimension mismatch: the flow has dimension {expected}, the input has shape [{batch}, {got}]"
    )]
    DimMismatch {
        /// The dimension the flow was built for.
        expected: usize,
        /// The dimension of the input.
        got: usize,
        /// The batch size of the input.
        batch: usize,
    },
    /// A batch with no rows, or a request for zero samples.
    #[error("empty batch: {0} needs at least one row")]
    EmptyBatch(&'static str),
    /// The context is missing, not expected, or of the wrong width.
    #[error("context mismatch: the flow expects a context of width {expected}, got {got}")]
    ContextMismatch {
        /// The context width the transform was built for (0 = no context).
        expected: usize,
        /// What was given (0 = no context).
        got: usize,
    },
    /// The context and the input have a different number of rows.
    #[error("context has {context} rows but the input has {input}")]
    ContextBatchMismatch {
        /// Rows of the input.
        input: usize,
        /// Rows of the context.
        context: usize,
    },
    /// Layers of a composition do not agree on their dimension.
    #[error("layer dimension mismatch: layer {layer} has dimension {got}, the flow has {expected}")]
    LayerDimMismatch {
        /// Index of the offending layer.
        layer: usize,
        /// The flow's dimension.
        expected: usize,
        /// The layer's dimension.
        got: usize,
    },
    /// The input holds NaN or ±Inf.
    #[error("non-finite input: row {row} holds NaN or Inf")]
    NonFinite {
        /// First offending row.
        row: usize,
    },
    /// A configuration that cannot describe a valid flow.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
}

/// Shorthand for `Result<T, FlowError>`.
pub type Result<T> = std::result::Result<T, FlowError>;

/// Rejects a dimension of 0 for the layer family `what`.
pub(crate) fn check_dim(what: &str, dim: usize) -> Result<()> {
    if dim == 0 {
        Err(FlowError::InvalidConfig(format!("{what} needs dim ≥ 1")))
    } else {
        Ok(())
    }
}

/// Rejects a negative or non-finite initialisation scale for the layer family `what`.
pub(crate) fn check_init_std(what: &str, std: f64) -> Result<()> {
    if std.is_finite() && std >= 0.0 {
        Ok(())
    } else {
        Err(FlowError::InvalidConfig(format!(
            "{what} init_std must be finite and ≥ 0, got {std}"
        )))
    }
}

/// Builds `k ≥ 1` layers of the family `what` with `init`; `k = 0` would be the identity.
pub(crate) fn init_stack<T>(
    what: &str,
    k: usize,
    init: impl FnMut() -> Result<T>,
) -> Result<Vec<T>> {
    if k == 0 {
        return Err(FlowError::InvalidConfig(format!(
            "a {what} flow of length K = 0 is the identity; use K ≥ 1"
        )));
    }
    let mut init = init;
    (0..k).map(|_| init()).collect()
}
