//! What a run writes: the markdown table, the JSONL lines and the figure.

use std::fmt::Write as _;

use flow_plots::Panel;
use flow_programs as backend;
use serde::Serialize;
use tracing::info;

use crate::{
    cli::{Args, Spec},
    error::{Error, Result},
    grid::neg_energy_grid,
    targets::Target,
};

/// What one fit produced.
pub struct Outcome {
    pub target: Target,
    pub spec: Spec,
    /// `E_q[ln q + U]` in nats, with the target's own `U` (no wall).
    pub free_energy: f64,
    /// `KL(q‖p)` in nats against the density trained on, when it is normalizable.
    pub kl: Option<f64>,
    pub seconds: f64,
    pub histogram: Vec<f64>,
}

/// One line of `results.jsonl`.
#[derive(Serialize)]
struct Line<'a> {
    target: u8,
    flow: &'a str,
    k: usize,
    free_energy: f64,
    kl: Option<f64>,
    wall: Option<f64>,
    steps: usize,
    seconds: f64,
    backend: &'a str,
}

fn spec_label(spec: Spec) -> String {
    format!("{} K={}", spec.family(), spec.k())
}

pub fn write_reports(args: &Args, outcomes: &[Outcome], log_zs: &[(Target, f64)]) -> Result<()> {
    std::fs::create_dir_all(&args.out_dir).map_err(|source| Error::Io {
        path: args.out_dir.clone(),
        source,
    })?;
    let mut md = String::new();
    let wall = match args.wall() {
        Some(l) => format!(
            "U2–U4 do not decay along z1: exp(−U) has infinite mass and the free energy E_q[ln q + U] \
             has no lower bound (q lowers it without limit by spreading along z1 into a flat band). They \
             are trained with a soft wall ½((|z1| − {l})₊/0.2)² added to U, which leaves U unchanged in \
             the box |z1| ≤ {l} and makes it a proper density: KL is against that density. The free \
             energy column always uses the target's own U (for U2–U4 it ranks how far q spread, not fit)."
        ),
        None => "U2–U4 do not decay along z1: exp(−U) has infinite mass, so only the free energy \
                 E_q[ln q + U] is reported; it has no lower bound (q lowers it by spreading along z1)."
            .to_string(),
    };
    let _ = writeln!(
        md,
        "# Rezende & Mohamed (2015) potentials: variational inference results\n\n\
         Backend `{}`; base q0 {:?}; {} Adam steps (lr {}), batch {}, annealing β_t = min(1, 0.01 + t/10⁴), \
         seed {}; metrics from {} fresh samples. KL(q‖p) is absolute, in nats: E_q[ln q + U] + ln Z with \
         ln Z by the midpoint rule on a 2001² grid over [−8, 8]².\n\n{wall}\n",
        backend::NAME,
        args.base,
        args.steps,
        args.lr,
        args.batch,
        args.seed,
        args.eval_samples
    );
    for (t, lz) in log_zs {
        let _ = writeln!(md, "ln Z(U{}, as trained) = {lz:.5}\n", t.number());
    }
    let _ = writeln!(
        md,
        "| target | flow | K | KL(q‖p) (nats) | free energy E_q[ln q + U] (nats) | train time (s) |\n\
         |---|---|---|---|---|---|"
    );
    let mut jsonl = String::new();
    for o in outcomes {
        let kl = o.kl.map_or("–".to_string(), |v| format!("{v:.4}"));
        let _ = writeln!(
            md,
            "| U{} | {} | {} | {kl} | {:.4} | {:.1} |",
            o.target.number(),
            o.spec.family(),
            o.spec.k(),
            o.free_energy,
            o.seconds
        );
        let line = Line {
            target: o.target.number(),
            flow: o.spec.family(),
            k: o.spec.k(),
            free_energy: o.free_energy,
            kl: o.kl,
            wall: args.wall(),
            steps: args.steps,
            seconds: (o.seconds * 100.0).round() / 100.0,
            backend: backend::NAME,
        };
        let _ = writeln!(
            jsonl,
            "{}",
            serde_json::to_string(&line).expect("plain numbers and strings serialize")
        );
    }
    let write = |name: &str, text: &str| {
        let path = args.out_dir.join(name);
        std::fs::write(&path, text).map_err(|source| Error::Io { path, source })
    };
    write("results.md", &md)?;
    write("results.jsonl", &jsonl)?;

    let res = args.resolution;
    let rows: Vec<(String, Vec<Panel>)> = args
        .targets
        .iter()
        .map(|&t| {
            let mut panels = vec![Panel {
                values: neg_energy_grid(t, -4.0, 4.0, res)
                    .into_iter()
                    .map(f64::exp)
                    .collect(),
                title: "exp(-U)".into(),
            }];
            panels.extend(outcomes.iter().filter(|o| o.target == t).map(|o| Panel {
                values: o.histogram.clone(),
                title: spec_label(o.spec),
            }));
            (format!("U{}", t.number()), panels)
        })
        .collect();
    flow_plots::write_grid(&args.out_dir.join("potentials.png"), res, &rows)?;
    info!(dir = %args.out_dir.display(), "wrote results.md, results.jsonl, potentials.png");
    print!("{md}");
    Ok(())
}
