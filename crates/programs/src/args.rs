//! Parsers of the command line's values, shared by the programs' clap flags
//! (`#[arg(long, value_parser = flow_programs::args::positive)]`): each takes the flag's
//! text and says in one line what it must be.
//!
//! ```
//! use flow_programs::args::{learning_rate, positive};
//!
//! assert_eq!(positive("16"), Ok(16));
//! assert!(positive("0").is_err());
//! assert!(learning_rate("NaN").is_err());
//! ```

/// A positive integer.
pub fn positive(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(v) if v > 0 => Ok(v),
        _ => Err(format!("{s:?} is not a positive integer")),
    }
}

/// A finite, positive learning rate.
pub fn learning_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("{s:?} is not a positive learning rate")),
    }
}

/// A fraction strictly between 0 and 1.
pub fn fraction(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v < 1.0 => Ok(v),
        _ => Err(format!("{s:?} is not a fraction between 0 and 1")),
    }
}

/// A finite number ≥ 0.
pub fn non_negative(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("{s:?} is not a finite number ≥ 0")),
    }
}

/// A dropout probability in `[0, 1)`.
pub fn dropout(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..1.0).contains(&v) => Ok(v),
        _ => Err(format!("{s:?} is not a dropout probability in [0, 1)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_parser_takes_its_range_and_nothing_else() {
        assert_eq!(positive("3"), Ok(3));
        for bad in ["0", "-1", "1.5", "", "x"] {
            assert!(positive(bad).is_err(), "{bad}");
        }
        assert_eq!(learning_rate("1e-3"), Ok(1e-3));
        for bad in ["0", "-1e-3", "inf", "NaN"] {
            assert!(learning_rate(bad).is_err(), "{bad}");
        }
        assert_eq!(fraction("0.25"), Ok(0.25));
        for bad in ["0", "1", "NaN"] {
            assert!(fraction(bad).is_err(), "{bad}");
        }
        assert_eq!(non_negative("0"), Ok(0.0));
        for bad in ["-0.1", "inf", "NaN"] {
            assert!(non_negative(bad).is_err(), "{bad}");
        }
        assert_eq!(dropout("0"), Ok(0.0));
        for bad in ["1", "-0.1", "NaN"] {
            assert!(dropout(bad).is_err(), "{bad}");
        }
        assert_eq!(
            positive("0").unwrap_err(),
            "\"0\" is not a positive integer"
        );
    }
}
