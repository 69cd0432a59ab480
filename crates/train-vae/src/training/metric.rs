//! The metrics burn-train logs: one [`StatMetric`] per [`Stat`] of an epoch's [`Tally`].

use std::sync::Arc;

use burn_train::{
    Interrupter,
    metric::{
        Metric, MetricAttributes, MetricMetadata, MetricName, Numeric, NumericAttributes,
        NumericEntry, SerializedEntry,
        state::{FormatOptions, NumericMetricState},
    },
};

use super::step::{Stat, Tally, VaeStats};

/// A numeric burn-train metric following one [`Stat`]; with an interrupter, a non-finite
/// value stops training.
#[derive(Clone)]
pub struct StatMetric {
    stat: Stat,
    name: MetricName,
    state: NumericMetricState,
    stop_on_non_finite: Option<Interrupter>,
    tally: Option<(Tally, bool)>,
}

impl StatMetric {
    /// A metric for `stat`.
    pub fn new(stat: Stat) -> Self {
        Self {
            stat,
            name: Arc::new(stat.name().to_string()),
            state: NumericMetricState::default(),
            stop_on_non_finite: None,
            tally: None,
        }
    }

    /// Adds every step report to `tally` (under `train` or validation).
    pub fn tallying(mut self, tally: Tally, train: bool) -> Self {
        self.tally = Some((tally, train));
        self
    }

    /// Stops training through `interrupter` when a value is NaN or infinite.
    pub fn stopping(mut self, interrupter: Interrupter) -> Self {
        self.stop_on_non_finite = Some(interrupter);
        self
    }
}

/// Message the interrupter carries when the loss is not finite.
pub const DIVERGED: &str = "non-finite loss";

impl Metric for StatMetric {
    type Input = VaeStats;

    fn name(&self) -> MetricName {
        self.name.clone()
    }

    fn update(&mut self, item: &VaeStats, meta: &MetricMetadata) -> SerializedEntry {
        if let Some((tally, train)) = &self.tally {
            tally.add(*train, meta.global_progress.items_processed, item);
        }
        let v = self.stat.of(item);
        if !v.is_finite()
            && let Some(i) = &self.stop_on_non_finite
        {
            i.stop(Some(DIVERGED));
        }
        self.state
            .update(v, item.n, FormatOptions::new(self.name()).precision(2))
    }

    fn clear(&mut self) {
        self.state.reset()
    }

    fn attributes(&self) -> MetricAttributes {
        NumericAttributes {
            unit: Some("nats".into()),
            higher_is_better: false,
        }
        .into()
    }
}

impl Numeric for StatMetric {
    fn value(&self) -> NumericEntry {
        self.state.current_value()
    }

    fn running_value(&self) -> NumericEntry {
        self.state.running_value()
    }
}

/// burn-train's metric logger, told nothing is kept: the run's records are
/// `metrics.jsonl`/`metrics.csv`, written by [`EpochLog`](super::EpochLog), and nothing
/// reads burn-train's store back (the early-stopping and checkpointing strategies are
/// ours). Its file logger would write every step's values to disk and panic when the
/// disk is full; its in-memory one would grow with every step.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoMetricLog;

impl burn_train::logger::MetricLogger for NoMetricLog {
    fn log(
        &mut self,
        _: burn_train::metric::store::MetricsUpdate,
        _: usize,
        _: &burn_train::metric::store::Split,
    ) {
    }

    fn read_numeric(
        &mut self,
        _: &str,
        _: usize,
        _: &burn_train::metric::store::Split,
    ) -> Result<Vec<burn_train::metric::NumericEntry>, String> {
        Ok(Vec::new())
    }

    fn log_metric_definition(&mut self, _: burn_train::metric::MetricDefinition) {}

    fn log_epoch_summary(&mut self, _: burn_train::metric::store::EpochSummary) {}
}
