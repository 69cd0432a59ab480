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
    /// Saved weights that do not fit the model: a tensor missing, unexpected or of another
    /// shape, or an unreadable file.
    #[error("weights: {0}")]
    Weights(String),
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
    #[error("layer dimension mismatch: layer {} has dimension {got}, the flow has {expected}", path_string(.path))]
    LayerDimMismatch {
        /// Where the offending layer sits: indices from the outermost composition inwards
        /// (`[2, 0]` is the first element of the third element).
        path: Vec<usize>,
        /// The flow's dimension.
        expected: usize,
        /// The layer's dimension.
        got: usize,
    },
    /// A conditional base and a conditional transform expect contexts of different widths.
    #[error(
        "context width mismatch: the base distribution takes a context of width {base}, the transform {transform}"
    )]
    BaseContextMismatch {
        /// The base's context width.
        base: usize,
        /// The transform's context width.
        transform: usize,
    },
    /// Layers of a composition expect contexts of different widths.
    #[error("context width mismatch: layer {} takes a context of width {got}, another takes {expected}", path_string(.path))]
    LayerContextMismatch {
        /// Where the offending layer sits (as in `LayerDimMismatch`).
        path: Vec<usize>,
        /// The width the rest of the flow takes.
        expected: usize,
        /// The layer's width.
        got: usize,
    },
    /// Fewer rows than an operation needs (for example data-dependent initialisation,
    /// which estimates a standard deviation).
    #[error("{what} needs at least {needed} rows, got {got}")]
    TooFewRows {
        /// The operation.
        what: &'static str,
        /// Rows needed.
        needed: usize,
        /// Rows given.
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

fn path_string(path: &[usize]) -> String {
    if path.is_empty() {
        return "(top)".into();
    }
    path.iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(".")
}

impl FlowError {
    /// Prefixes the layer path of a composition error with `index` (used by compositions
    /// to say where a nested layer sits).
    pub(crate) fn within_layer(self, index: usize) -> FlowError {
        match self {
            FlowError::LayerDimMismatch {
                mut path,
                expected,
                got,
            } => {
                path.insert(0, index);
                FlowError::LayerDimMismatch {
                    path,
                    expected,
                    got,
                }
            }
            FlowError::LayerContextMismatch {
                mut path,
                expected,
                got,
            } => {
                path.insert(0, index);
                FlowError::LayerContextMismatch {
                    path,
                    expected,
                    got,
                }
            }
            other => other,
        }
    }
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

/// Rejects a non-positive or non-finite initialisation scale for the layer family `what`.
pub(crate) fn check_init_std(what: &str, std: f64) -> Result<()> {
    if std.is_finite() && std > 0.0 {
        Ok(())
    } else {
        Err(FlowError::InvalidConfig(format!(
            "{what} init_std must be finite and > 0 (at 0 the layer's gradients vanish), got {std}"
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
