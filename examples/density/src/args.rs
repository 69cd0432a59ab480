//! Parsers of the command line's values.

/// A positive integer.
pub(crate) fn positive(s: &str) -> std::result::Result<usize, String> {
    match s.parse::<usize>() {
        Ok(v) if v > 0 => Ok(v),
        _ => Err(format!("{s:?} is not a positive integer")),
    }
}

/// A finite, positive learning rate.
pub(crate) fn learning_rate(s: &str) -> std::result::Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("{s:?} is not a positive learning rate")),
    }
}

/// A fraction strictly between 0 and 1.
pub(crate) fn fraction(s: &str) -> std::result::Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v < 1.0 => Ok(v),
        _ => Err(format!("{s:?} is not a fraction between 0 and 1")),
    }
}

/// A finite number ≥ 0.
pub(crate) fn non_negative(s: &str) -> std::result::Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("{s:?} is not a finite number ≥ 0")),
    }
}

/// A dropout probability in `[0, 1)`.
pub(crate) fn dropout(s: &str) -> std::result::Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..1.0).contains(&v) => Ok(v),
        _ => Err(format!("{s:?} is not a dropout probability in [0, 1)")),
    }
}
