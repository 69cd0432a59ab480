//! The rational-quadratic spline kernel against an independent scalar implementation, in
//! f64 (in the `in_f64` test binary: see its `main.rs` on why f64 needs one).

use burn::backend::NdArray;
use burn::tensor::{Distribution, Tensor};
use flow_core::{RqSpline, rq_spline, rq_spline_inverse};

type B = NdArray<f64>;

fn host<const D: usize>(t: Tensor<B, D>) -> Vec<f64> {
    t.into_data().into_vec().unwrap()
}

fn params(n: usize, d: usize, k: usize, scale: f64) -> [Tensor<B, 3>; 3] {
    let device = Default::default();
    let dist = Distribution::Normal(0.0, scale);
    [
        Tensor::random([n, d, k], dist, &device),
        Tensor::random([n, d, k], dist, &device),
        Tensor::random([n, d, k - 1], dist, &device),
    ]
}

#[test]
fn zero_parameters_give_the_identity() {
    let spec = RqSpline::new(5, 3.0);
    let device = Default::default();
    let x = Tensor::<B, 2>::from_floats([[-4.0, -3.0, -1.2], [0.0, 2.9, 3.0]], &device);
    let z = |k| Tensor::<B, 3>::zeros([1, 3, k], &device);
    let (y, ladj) = rq_spline(x.clone(), z(5), z(5), z(4), &spec);
    for (a, b) in host(y).iter().zip(host(x)) {
        assert!((a - b).abs() < 1e-12, "{a} vs {b}");
    }
    assert!(host(ladj).iter().all(|l| l.abs() < 1e-12));
}

/// The spline against an independent scalar implementation on the host, including
/// the knots themselves and inputs outside the interval.
#[test]
fn matches_a_scalar_reference_and_inverts() {
    let spec = RqSpline::new(4, 2.0);
    let device = Default::default();
    let [w, h, dv] = params(1, 1, 4, 1.0);
    let (wv, hv, dvv) = (host(w.clone()), host(h.clone()), host(dv.clone()));
    // Scalar reference: knots, then the bin formula.
    let norm = |u: &[f64], min: f64| {
        let m = u.iter().cloned().fold(f64::MIN, f64::max);
        let e: Vec<f64> = u.iter().map(|v| (v - m).exp()).collect();
        let s: f64 = e.iter().sum();
        let mut k = vec![-2.0];
        let mut acc = 0.0;
        for v in &e {
            acc += min + (1.0 - 4.0 * min) * v / s;
            k.push(acc * 4.0 - 2.0);
        }
        k[4] = 2.0;
        k
    };
    let (xk, yk) = (norm(&wv, 1e-3), norm(&hv, 1e-3));
    let c = ((1.0f64 - 1e-3).exp() - 1.0).ln();
    let mut dk = vec![1.0];
    dk.extend(dvv.iter().map(|v| 1e-3 + (v + c).exp().ln_1p()));
    dk.push(1.0);
    let reference = |x: f64| -> (f64, f64) {
        if !(-2.0..=2.0).contains(&x) {
            return (x, 0.0);
        }
        let k = (1..4).filter(|&i| xk[i] <= x).count();
        let (wk, hk) = (xk[k + 1] - xk[k], yk[k + 1] - yk[k]);
        let s = hk / wk;
        let xi = (x - xk[k]) / wk;
        let t = xi * (1.0 - xi);
        let den = s + (dk[k + 1] + dk[k] - 2.0 * s) * t;
        let y = yk[k] + hk * (s * xi * xi + dk[k] * t) / den;
        let dydx =
            s * s * (dk[k + 1] * xi * xi + 2.0 * s * t + dk[k] * (1.0 - xi).powi(2)) / (den * den);
        (y, dydx.ln())
    };
    let mut xs: Vec<f64> = xk.clone();
    xs.extend([
        -7.0, -2.0000001, 1.9999999, 5.0, 1e30, -1e30, 0.3, -0.77, 1.5,
    ]);
    let n = xs.len();
    let x = Tensor::<B, 2>::from_data(burn::tensor::TensorData::new(xs.clone(), [n, 1]), &device);
    let (y, ladj) = rq_spline(x.clone(), w.clone(), h.clone(), dv.clone(), &spec);
    let (yv, lv) = (host(y.clone()), host(ladj.clone()));
    for i in 0..n {
        let (ry, rl) = reference(xs[i]);
        assert!(
            (yv[i] - ry).abs() <= 1e-9 * ry.abs().max(1.0),
            "y({}) = {} vs {ry}",
            xs[i],
            yv[i]
        );
        assert!(
            (lv[i] - rl).abs() < 1e-9,
            "ladj({}) = {} vs {rl}",
            xs[i],
            lv[i]
        );
    }
    let (back, ladj_inv) = rq_spline_inverse(y, w, h, dv, &spec);
    for ((b, x), (li, l)) in host(back)
        .iter()
        .zip(&xs)
        .zip(host(ladj_inv).iter().zip(&lv))
    {
        assert!(
            (b - x).abs() <= 1e-9 * x.abs().max(1.0),
            "inverse: {b} vs {x}"
        );
        assert!((li + l).abs() < 1e-9, "inverse ladj {li} vs {l}");
    }
}

/// The log-derivative against central differences of the spline itself, in f64: the
/// scalar reference above shares the paper's formulas, this does not.
#[test]
fn ladj_matches_central_differences() {
    let spec = RqSpline::new(6, 2.5);
    let device = Default::default();
    let (n, d) = (64, 3);
    let x: Tensor<B, 2> = Tensor::random([n, d], Distribution::Normal(0.0, 1.5), &device);
    let dist = Distribution::Normal(0.0, 1.0);
    let w = Tensor::<B, 3>::random([n, d, 6], dist, &device);
    let h = Tensor::<B, 3>::random([n, d, 6], dist, &device);
    let dv = Tensor::<B, 3>::random([n, d, 5], dist, &device);
    let (_, ladj) = rq_spline(x.clone(), w.clone(), h.clone(), dv.clone(), &spec);
    let eps = 1e-6;
    let mut fd = vec![0.0; n];
    for j in 0..d {
        let bump = Tensor::<B, 2>::zeros([n, d], &device)
            .slice_assign([0..n, j..j + 1], Tensor::full([n, 1], eps, &device));
        let up = host(
            rq_spline(
                x.clone() + bump.clone(),
                w.clone(),
                h.clone(),
                dv.clone(),
                &spec,
            )
            .0,
        );
        let down = host(rq_spline(x.clone() - bump, w.clone(), h.clone(), dv.clone(), &spec).0);
        for i in 0..n {
            fd[i] += ((up[i * d + j] - down[i * d + j]) / (2.0 * eps)).ln();
        }
    }
    for (a, b) in host(ladj).iter().zip(&fd) {
        assert!((a - b).abs() < 1e-5, "ladj {a} vs central differences {b}");
    }
}
