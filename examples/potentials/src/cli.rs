//! The command line: which targets and flows, and how long to train.

use std::path::PathBuf;

use clap::Parser;
use flow_programs::args::{learning_rate, non_negative, positive};

use crate::targets::Target;

/// A flow family and its length K.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Spec {
    Planar(usize),
    Radial(usize),
    /// K affine coupling layers, each followed by a reversal of the two coordinates.
    RealNvp(usize),
}

impl Spec {
    pub fn family(self) -> &'static str {
        match self {
            Spec::Planar(_) => "planar",
            Spec::Radial(_) => "radial",
            Spec::RealNvp(_) => "realnvp",
        }
    }
    pub fn k(self) -> usize {
        match self {
            Spec::Planar(k) | Spec::Radial(k) | Spec::RealNvp(k) => k,
        }
    }
}

pub fn parse_spec(s: &str) -> Result<Spec, String> {
    let (family, k) = s
        .split_once(':')
        .ok_or_else(|| format!("flow spec `{s}` must look like planar:32"))?;
    let k: usize = k
        .parse()
        .map_err(|_| format!("flow spec `{s}`: K must be a whole number"))?;
    if k == 0 {
        return Err(format!(
            "flow spec `{s}`: K = 0 is the identity flow; use K ≥ 1"
        ));
    }
    match family {
        "planar" => Ok(Spec::Planar(k)),
        "radial" => Ok(Spec::Radial(k)),
        "realnvp" => Ok(Spec::RealNvp(k)),
        other => Err(format!("unknown flow `{other}` (planar, radial, realnvp)")),
    }
}

pub fn parse_target(s: &str) -> Result<Target, String> {
    s.trim()
        .parse()
        .ok()
        .and_then(Target::from_number)
        .ok_or_else(|| format!("unknown target `{s}`: use 1, 2, 3 or 4"))
}

/// The initial density q₀ of the flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BaseKind {
    /// Fixed N(0, I), as in Rezende & Mohamed (2015).
    Standard,
    /// Diagonal normal with learned mean and scale.
    Diagonal,
}

/// Fit flows to Rezende & Mohamed's four potentials and report KL / free energy.
#[derive(Parser, Debug)]
#[command(version, about)]
pub struct Args {
    /// Targets to fit (comma-separated, from 1..4).
    #[arg(long, value_delimiter = ',', default_value = "1,2,3,4", value_parser = parse_target)]
    pub targets: Vec<Target>,
    /// Flows to fit, as family:K (planar, radial, realnvp).
    #[arg(long, value_delimiter = ',', default_value = "planar:2,planar:8,planar:32,radial:32,realnvp:8", value_parser = parse_spec)]
    pub flows: Vec<Spec>,
    /// Soft wall at |z1| = L for U2–U4, which otherwise have infinite mass along z1 (0 = no
    /// wall: their free energy then has no lower bound and q spreads into a flat band).
    #[arg(long, default_value_t = 4.0, value_parser = non_negative)]
    pub confine: f64,
    /// Initial density q₀: fixed N(0, I) (the paper's) or a learned diagonal normal.
    #[arg(long, value_enum, default_value = "standard")]
    pub base: BaseKind,
    /// Adam steps per fit.
    #[arg(long, default_value_t = 20_000, value_parser = positive)]
    pub steps: usize,
    /// Samples per step.
    #[arg(long, default_value_t = 256, value_parser = positive)]
    pub batch: usize,
    /// Adam learning rate.
    #[arg(long, default_value_t = 1e-3, value_parser = learning_rate)]
    pub lr: f64,
    /// Samples for the final KL / free-energy estimate.
    #[arg(long, default_value_t = 100_000, value_parser = positive)]
    pub eval_samples: usize,
    /// Samples histogrammed for each flow's density panel.
    #[arg(long, default_value_t = 1_000_000, value_parser = positive)]
    pub plot_samples: usize,
    /// Pixels per side of each density panel.
    #[arg(long, default_value_t = 160, value_parser = positive)]
    pub resolution: usize,
    /// Seed of the backend's random generator and of the initial parameters.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Where the table, JSONL and PNG go.
    #[arg(long, default_value = "runs/potentials")]
    pub out_dir: PathBuf,
    /// Log the training loss every this many steps.
    #[arg(long, default_value_t = 2_000, value_parser = positive)]
    pub log_every: usize,
}

impl Args {
    /// The wall position for U2–U4, if any.
    pub fn wall(&self) -> Option<f64> {
        (self.confine > 0.0).then_some(self.confine)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_arguments_are_rejected() {
        let parse = |extra: &[&str]| {
            Args::try_parse_from(std::iter::once("potentials").chain(extra.iter().copied()))
        };
        assert!(parse(&[]).is_ok());
        for bad in [
            &["--flows", "planar:0"][..],
            &["--flows", "planar"],
            &["--flows", "iaf:4"],
            &["--targets", "5"],
            &["--lr", "-0.1"],
            &["--lr", "nan"],
            &["--steps", "0"],
            &["--batch", "0"],
            &["--confine", "-1"],
            &["--base", "uniform"],
        ] {
            let err = parse(bad).expect_err(&format!("{bad:?} must be rejected"));
            assert!(!err.to_string().is_empty());
        }
    }
}
