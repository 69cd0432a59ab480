//! Plain progress lines for burn-train's renderer interface.

use std::io::IsTerminal;

use burn_train::{
    LearnerSummary,
    metric::MetricDefinition,
    renderer::{
        EvaluationName, EvaluationProgress, MetricState, MetricsRenderer,
        MetricsRendererEvaluation, MetricsRendererTraining, ProgressType, TrainingProgress,
    },
};

/// Progress: an indicatif bar on a terminal, a plain `tracing` line every quarter epoch
/// otherwise.
pub struct LineRenderer {
    names: std::collections::HashMap<String, String>,
    latest: std::collections::BTreeMap<String, String>,
    bar: Option<indicatif::ProgressBar>,
    last_quarter: (usize, usize),
}

impl LineRenderer {
    /// A renderer choosing bar or lines by whether stderr is a terminal.
    pub fn new() -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = indicatif::ProgressBar::new(0);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{prefix} [{bar:30}] {pos}/{len} {per_sec} {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            b
        });
        Self {
            names: Default::default(),
            latest: Default::default(),
            bar,
            last_quarter: (0, 0),
        }
    }

    fn note(&mut self, state: MetricState) {
        if let MetricState::Numeric(entry, value) = state {
            let id = format!("{:?}", entry.metric_id);
            let name = self.names.get(&id).cloned().unwrap_or(id);
            self.latest.insert(name, format!("{:.2}", value.current()));
        }
    }

    fn show(&mut self, split: &str, item: &TrainingProgress) {
        let Some(p) = &item.progress else { return };
        let epoch = item.global_progress.items_processed;
        let metrics = self
            .latest
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join("  ");
        if let Some(bar) = &self.bar {
            bar.set_length(p.items_total as u64);
            bar.set_position(p.items_processed as u64);
            bar.set_prefix(format!("epoch {epoch} {split}"));
            bar.set_message(metrics);
        } else if split == "train" && p.items_total > 0 {
            let quarter = 4 * p.items_processed / p.items_total;
            if quarter > 0 && quarter < 4 && (epoch, quarter) != self.last_quarter {
                self.last_quarter = (epoch, quarter);
                tracing::info!(
                    "epoch {epoch}: {}/{} images  {metrics}",
                    p.items_processed,
                    p.items_total
                );
            }
        }
    }
}

impl Default for LineRenderer {
    fn default() -> Self {
        Self::new()
    }
}

impl MetricsRendererTraining for LineRenderer {
    fn update_train(&mut self, state: MetricState) {
        self.note(state);
    }
    fn update_valid(&mut self, state: MetricState) {
        self.note(state);
    }
    fn render_train(&mut self, item: TrainingProgress, _: Vec<ProgressType>) {
        self.show("train", &item);
    }
    fn render_valid(&mut self, item: TrainingProgress, _: Vec<ProgressType>) {
        self.show("valid", &item);
    }
    fn on_train_end(
        &mut self,
        _: Option<LearnerSummary>,
    ) -> Result<(), Box<dyn core::error::Error>> {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        Ok(())
    }
}

impl MetricsRendererEvaluation for LineRenderer {
    fn update_test(&mut self, _: EvaluationName, state: MetricState) {
        self.note(state);
    }
    fn render_test(&mut self, _: EvaluationProgress, _: Vec<ProgressType>) {}
}

impl MetricsRenderer for LineRenderer {
    fn manual_close(&mut self) {}
    fn register_metric(&mut self, definition: MetricDefinition) {
        self.names
            .insert(format!("{:?}", definition.metric_id), definition.name);
    }
}
