//! The base distributions beyond the standard normal: the Gaussian mixture (closed form,
//! normalization, sampling frequencies, stability, gradients) and the conditional diagonal
//! normal (closed form, conditional flows, context errors).

use crate::common;

use burn::tensor::Tensor;
use common::*;
use flow_core::{
    ConditionalDiagNormalConfig, Distribution, Elementwise, Flow, FlowError, GaussianMixtureConfig,
    MaskedAutoregressiveConfig, StandardNormal,
    testing::{randomize, standard_inputs},
};

const LN_2PI: f64 = 1.837_877_066_409_345_5;

/// Independent f64 evaluation of the mixture's density from its parameters.
fn mixture_log_prob(logits: &[f64], means: &[f64], log_scales: &[f64], x: &[f64]) -> f64 {
    let (k, d) = (logits.len(), x.len());
    let norm = logits.iter().map(|a| a.exp()).sum::<f64>();
    let p: f64 = (0..k)
        .map(|c| {
            let mut lp = (logits[c].exp() / norm).ln();
            for j in 0..d {
                let s = log_scales[c * d + j].exp();
                let z = (x[j] - means[c * d + j]) / s;
                lp += -0.5 * z * z - log_scales[c * d + j] - 0.5 * LN_2PI;
            }
            lp.exp()
        })
        .sum();
    p.ln()
}

fn mixture_matches_closed_form<B: AutodiffBackend>(device: &B::Device) {
    let mog = randomize(
        GaussianMixtureConfig::new(3, 4).init::<B>(device).unwrap(),
        0.5,
    );
    let (a, mu, ls) = (
        host(mog.logits.val()),
        host(mog.means.val()),
        host(mog.log_scales.val()),
    );
    let x = standard_inputs::<B>(6, 3, 5, device);
    let lp = host(mog.log_prob(x.clone(), None));
    for (row, got) in host(x).chunks_exact(3).zip(lp) {
        let expected = mixture_log_prob(&a, &mu, &ls, row);
        assert!((got - expected).abs() < 1e-4, "{got} vs {expected}");
    }
}

/// A 2-D mixture's density sums to one over a grid that holds its mass.
fn mixture_integrates_to_one<B: AutodiffBackend>(device: &B::Device) {
    let mog = randomize(
        GaussianMixtureConfig::new(2, 3).init::<B>(device).unwrap(),
        0.3,
    );
    let mass = grid_mass::<B>(-9.0, 9.0, 360, device, |x| host(mog.log_prob(x, None)));
    assert!((mass - 1.0).abs() < 2e-3, "mass {mass}");
}

/// Samples pick the components in proportion to the weights, and `sample_with_log_prob`'s
/// density is `log_prob` at the samples.
fn mixture_sampling<B: AutodiffBackend>(device: &B::Device) {
    let mut mog = GaussianMixtureConfig::new(1, 3)
        .with_spread(0.0)
        .init::<B>(device)
        .unwrap();
    // Components far apart (at −20, 0, 20) with weights 0.2, 0.3, 0.5.
    mog.means = mog
        .means
        .map(|_| Tensor::from_floats([[-20.0], [0.0], [20.0]], device));
    let w = [0.2f32, 0.3, 0.5];
    mog.logits = mog
        .logits
        .map(|_| Tensor::from_floats([[w[0].ln(), w[1].ln(), w[2].ln()]], device));
    let n = 20_000;
    let (x, log_q) = mog.sample_with_log_prob(n, None, device);
    let xs = host(x.clone());
    let counts = [
        xs.iter().filter(|v| **v < -10.0).count(),
        xs.iter().filter(|v| v.abs() < 10.0).count(),
        xs.iter().filter(|v| **v > 10.0).count(),
    ];
    for (c, w) in counts.iter().zip(w) {
        let f = *c as f64 / n as f64;
        let se = (w as f64 * (1.0 - w as f64) / n as f64).sqrt();
        assert!((f - w as f64).abs() < 5.0 * se, "{counts:?} vs {w}");
    }
    for (a, b) in host(log_q).iter().zip(host(mog.log_prob(x, None))) {
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }
}

/// Far from every component (where each density underflows f32) the log-density is still
/// finite and right, and likelihood gradients reach weights, means and scales.
fn mixture_is_stable_and_trainable<B: AutodiffBackend>(device: &B::Device) {
    let mog = randomize(
        GaussianMixtureConfig::new(2, 3).init::<B>(device).unwrap(),
        0.3,
    );
    let x = Tensor::<B, 2>::from_floats([[300.0, -250.0], [1e4, 1e4], [0.1, 0.2]], device);
    let (a, mu, ls) = (
        host(mog.logits.val()),
        host(mog.means.val()),
        host(mog.log_scales.val()),
    );
    let lp = mog.log_prob(x.clone(), None);
    let got = host(lp.clone());
    assert!(got.iter().all(|v| v.is_finite()), "{got:?}");
    // Closed form in log space (the f64 helper's exp underflows there too).
    let xs = host(x);
    let row = &xs[0..2];
    let terms: Vec<f64> = (0..3)
        .map(|c| {
            let norm = a.iter().map(|v| v.exp()).sum::<f64>();
            let mut t = (a[c].exp() / norm).ln();
            for j in 0..2 {
                let z = (row[j] - mu[c * 2 + j]) / ls[c * 2 + j].exp();
                t += -0.5 * z * z - ls[c * 2 + j] - 0.5 * LN_2PI;
            }
            t
        })
        .collect();
    let m = terms.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let expected = m + terms.iter().map(|t| (t - m).exp()).sum::<f64>().ln();
    assert!(
        (got[0] - expected).abs() < 1e-3 * expected.abs(),
        "{} vs {expected}",
        got[0]
    );
    let grads = lp.sum().backward();
    for p in [&mog.logits, &mog.means, &mog.log_scales] {
        let g = host(p.val().grad(&grads).expect("gradient"));
        assert!(g.iter().all(|v| v.is_finite()) && g.iter().any(|v| *v != 0.0));
    }
}

/// The conditional normal's density is the diagonal normal at its network's output, and a
/// conditional flow (conditional base + conditional MAF) samples what it evaluates.
fn conditional_flow_is_consistent<B: AutodiffBackend>(device: &B::Device) {
    let base = randomize(
        ConditionalDiagNormalConfig::new(2, 3)
            .with_hidden(8)
            .init::<B>(device)
            .unwrap(),
        0.4,
    );
    let c = standard_inputs::<B>(5, 3, 11, device);
    let x = standard_inputs::<B>(5, 2, 12, device);
    let (loc, ls) = base.parameters(&c);
    let (loc, ls, xs) = (host(loc), host(ls), host(x.clone()));
    for (i, got) in host(base.log_prob(x, Some(&c))).iter().enumerate() {
        let expected: f64 = (0..2)
            .map(|j| {
                let z = (xs[i * 2 + j] - loc[i * 2 + j]) / ls[i * 2 + j].exp();
                -0.5 * z * z - ls[i * 2 + j] - 0.5 * LN_2PI
            })
            .sum();
        // f32: relative beyond 1 (randomized networks give log-densities in the hundreds).
        assert!(
            (got - expected).abs() < 1e-4 * expected.abs().max(1.0),
            "{got} vs {expected}"
        );
    }
    let maf = randomize(
        MaskedAutoregressiveConfig::new(2, Elementwise::affine())
            .with_hidden(8)
            .with_context_dim(3)
            .init::<B>(device)
            .unwrap(),
        0.3,
    );
    let flow = Flow::new(base, vec![maf]).unwrap();
    assert_eq!(flow.context_dim(), 3);
    let (x, log_q) = flow.sample_with_log_prob(5, Some(&c), device).unwrap();
    let log_p = flow.log_prob(x, Some(&c)).unwrap();
    for (a, b) in host(log_q).iter().zip(host(log_p.clone())) {
        assert!((a - b).abs() < 1e-3 * a.abs().max(1.0), "{a} vs {b}");
    }
    let grads = log_p.sum().backward();
    let mut reached = 0;
    burn::module::Module::<B>::map(flow.base.net.clone(), &mut GradCheck(&grads, &mut reached));
    assert!(reached > 0, "no gradient reached the base's network");
}

/// Counts the base network's parameters with a finite, non-zero gradient.
struct GradCheck<'a, B: AutodiffBackend>(&'a B::Gradients, &'a mut usize);

impl<B: AutodiffBackend> burn::module::ModuleMapper<B> for GradCheck<'_, B> {
    fn map_float<const D: usize>(
        &mut self,
        param: burn::module::Param<Tensor<B, D>>,
    ) -> burn::module::Param<Tensor<B, D>> {
        if let Some(g) = param.val().grad(self.0) {
            let g = host(g);
            if g.iter().all(|v| v.is_finite()) && g.iter().any(|v| *v != 0.0) {
                *self.1 += 1;
            }
        }
        param
    }
}

on_backends! {
    mixture_density_is_the_closed_form => mixture_matches_closed_form;
    mixture_density_integrates_to_one => mixture_integrates_to_one;
    mixture_samples_follow_the_weights => mixture_sampling;
    mixture_is_stable_far_away_and_trainable => mixture_is_stable_and_trainable;
    conditional_base_and_flow_agree => conditional_flow_is_consistent;
}

/// Started at a regression, the conditional normal is `N(c W + b, I)`.
#[test]
fn conditional_base_starts_at_a_linear_regression() {
    let _rng = seeded_ndarray();
    let device = Default::default();
    let (w, b) = ([0.5, -1.0, 2.0, 0.25, 0.0, 1.5], [0.3, -0.2]);
    let base = ConditionalDiagNormalConfig::new(2, 3)
        .init_linear::<NdAd>(&w, &b, &device)
        .unwrap();
    let c = standard_inputs::<NdAd>(4, 3, 31, &device);
    let x = standard_inputs::<NdAd>(4, 2, 32, &device);
    let (cs, xs) = (host(c.clone()), host(x.clone()));
    for (i, got) in host(base.log_prob(x, Some(&c))).iter().enumerate() {
        let expected: f64 = (0..2)
            .map(|j| {
                let mean = (0..3).map(|k| cs[i * 3 + k] * w[k * 2 + j]).sum::<f64>() + b[j];
                -0.5 * (xs[i * 2 + j] - mean).powi(2) - 0.5 * LN_2PI
            })
            .sum();
        assert!((got - expected).abs() < 1e-4, "{got} vs {expected}");
    }
    let config = ConditionalDiagNormalConfig::new(2, 3);
    assert!(config.init_linear::<NdAd>(&w[..5], &b, &device).is_err());
    assert!(
        config
            .init_linear::<NdAd>(&w, &[f64::NAN, 0.0], &device)
            .is_err()
    );
}

#[test]
fn context_errors_are_typed() {
    let _rng = seeded_ndarray();
    let device = Default::default();
    type B = NdAd;
    let base = ConditionalDiagNormalConfig::new(2, 3)
        .init::<B>(&device)
        .unwrap();
    let flow = Flow::new(
        base,
        vec![flow_core::Permutation::<B>::reverse(2, &device).unwrap()],
    )
    .unwrap();
    let x = Tensor::<B, 2>::zeros([4, 2], &device);
    assert_eq!(
        flow.log_prob(x.clone(), None).unwrap_err(),
        FlowError::ContextMismatch {
            expected: 3,
            got: 0
        }
    );
    let narrow = Tensor::<B, 2>::zeros([4, 2], &device);
    assert_eq!(
        flow.log_prob(x, Some(&narrow)).unwrap_err(),
        FlowError::ContextMismatch {
            expected: 3,
            got: 2
        }
    );
    assert!(matches!(
        flow.sample(3, None, &device).unwrap_err(),
        FlowError::ContextMismatch { .. }
    ));
    // A base and a transform conditioned on different contexts cannot pair.
    let base = ConditionalDiagNormalConfig::new(2, 3)
        .init::<B>(&device)
        .unwrap();
    let maf = MaskedAutoregressiveConfig::new(2, Elementwise::affine())
        .with_context_dim(1)
        .init::<B>(&device)
        .unwrap();
    assert_eq!(
        Flow::new(base, vec![maf]).unwrap_err(),
        FlowError::BaseContextMismatch {
            base: 3,
            transform: 1
        }
    );
    // Impossible configurations.
    assert!(GaussianMixtureConfig::new(2, 0).init::<B>(&device).is_err());
    assert!(GaussianMixtureConfig::new(0, 2).init::<B>(&device).is_err());
    assert!(
        GaussianMixtureConfig::new(2, 2)
            .with_spread(f64::NAN)
            .init::<B>(&device)
            .is_err()
    );
    assert!(
        ConditionalDiagNormalConfig::new(2, 0)
            .init::<B>(&device)
            .is_err()
    );
    // An unconditional base in a flow of one: no context needed.
    let flow = Flow::new(
        StandardNormal::new(2).unwrap(),
        vec![flow_core::Permutation::<B>::reverse(2, &device).unwrap()],
    )
    .unwrap();
    assert_eq!(flow.context_dim(), 0);
}
