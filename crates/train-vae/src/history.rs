//! The run's per-epoch records (`metrics.jsonl`): what training appends and reports read.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::VaeError;

/// JSON has no NaN: serde_json writes it as `null`, which reads back as NaN here.
fn nan_from_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// One epoch's record (a line of `metrics.jsonl`; a NaN is written as `null`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// Epoch, from 1.
    pub epoch: usize,
    /// Mean training loss (`recon + β·kl`).
    #[serde(deserialize_with = "nan_from_null")]
    pub train_loss: f64,
    /// Mean training negative ELBO.
    #[serde(deserialize_with = "nan_from_null")]
    pub train_neg_elbo: f64,
    /// Mean training reconstruction term.
    #[serde(deserialize_with = "nan_from_null")]
    pub train_recon: f64,
    /// Mean training KL term.
    #[serde(deserialize_with = "nan_from_null")]
    pub train_kl: f64,
    /// Validation negative ELBO (one sample per image, β = 1).
    #[serde(deserialize_with = "nan_from_null")]
    pub valid_neg_elbo: f64,
    /// Validation reconstruction term.
    #[serde(deserialize_with = "nan_from_null")]
    pub valid_recon: f64,
    /// Validation KL term.
    #[serde(deserialize_with = "nan_from_null")]
    pub valid_kl: f64,
    /// Seconds of the training epoch.
    #[serde(deserialize_with = "nan_from_null")]
    pub train_seconds: f64,
    /// Training throughput, images per second.
    #[serde(deserialize_with = "nan_from_null")]
    pub images_per_second: f64,
}

impl EpochRecord {
    /// Whether the training loss and the validation −ELBO are finite.
    pub fn is_finite(&self) -> bool {
        self.train_loss.is_finite() && self.valid_neg_elbo.is_finite()
    }
}

/// Reads the records of a run (`metrics.jsonl`), skipping none: a bad line is an error.
/// A run without the file (none written yet) has no records; a file that exists but cannot
/// be read is an error, not an empty history.
pub fn read_history(run: &Path) -> Result<Vec<EpochRecord>, VaeError> {
    let path = run.join("metrics.jsonl");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(VaeError::Io { path, source }),
    };
    parse_history(&text, &path)
}

/// Parses the text of a `metrics.jsonl` file (`path` names it in errors): one record a
/// line, blank lines skipped; an error names the file's 1-based line.
pub fn parse_history(text: &str, path: &Path) -> Result<Vec<EpochRecord>, VaeError> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| {
                // Each line is parsed on its own, so serde_json's position is always
                // "line 1": report the file's line and only the column.
                let message = e.to_string();
                let suffix = format!(" at line {} column {}", e.line(), e.column());
                let message = message.strip_suffix(&suffix).unwrap_or(&message);
                VaeError::Checkpoint {
                    path: path.to_path_buf(),
                    reason: format!(
                        "bad metrics record on line {}, column {}: {message}",
                        i + 1,
                        e.column()
                    ),
                }
            })
        })
        .collect()
}

/// The best (lowest finite validation negative ELBO) record.
pub fn best(history: &[EpochRecord]) -> Option<&EpochRecord> {
    history
        .iter()
        .filter(|r| r.valid_neg_elbo.is_finite())
        .min_by(|a, b| a.valid_neg_elbo.total_cmp(&b.valid_neg_elbo))
}
