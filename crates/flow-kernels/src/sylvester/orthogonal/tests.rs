use burn::tensor::{Tensor, TensorData};
use flow_core::reference::orthogonalize as reference;

use super::*;
use crate::host::check::{assert_agree, uniforms, values_of};

type B = burn::backend::Autodiff<burn::backend::NdArray>;
/// The reference in `f64`: its gradient through 20-odd f32 iterations of a square matrix
/// is itself off by ~1e-3.
type B64 = burn::backend::Autodiff<burn::backend::NdArray<f64>>;

/// The kernel against flow-core's tensor-op iteration in `f64`: the orthonormal matrices
/// and the gradient of the raw ones, for tall and square matrices (the reference iterates the batch
/// together, the kernel each matrix until it has converged: both stop within the tolerance,
/// where further iterations change neither the value nor the gradient beyond it).
#[test]
fn orthogonalize_matches_reference() {
    let device = Default::default();
    let mut uniform = uniforms(0x2545_F491_4F6C_DD1D);
    for (n, d, m) in [(7, 5, 3), (5, 8, 8), (9, 32, 16), (3, 1, 1)] {
        let mut values = |len: usize| -> Vec<f32> { (0..len).map(|_| uniform() as f32).collect() };
        let q = Tensor::<B, 2>::from_data(TensorData::new(values(n * d * m), [n, d * m]), &device)
            .require_grad();
        let g = Tensor::<B, 2>::from_data(TensorData::new(values(n * d * m), [n, d * m]), &device);
        let run = |fused: bool| -> Vec<Vec<f64>> {
            let out = if fused {
                let (out, unconverged) =
                    orthogonalize(&q, d, m, 1e-5, 100).expect("ndarray has the CPU kernel");
                assert_eq!(unconverged, 0);
                out
            } else {
                let to64 = |t: &Tensor<B, 2>| {
                    let v: Vec<f64> = values_of(t.clone().inner());
                    Tensor::<B64, 2>::from_data(TensorData::new(v, [n, d * m]), &device)
                };
                let (q64, g64) = (to64(&q).require_grad(), to64(&g));
                let out = reference(q64.clone().reshape([n, d, m])).reshape([n, d * m]);
                let grads = (out.clone() * g64).sum().backward();
                return vec![values_of(out), values_of(q64.grad(&grads).unwrap())];
            };
            let grads = (out.clone() * g.clone()).sum().backward();
            vec![values_of(out), values_of(q.grad(&grads).unwrap())]
        };
        let case = format!("{n} matrices {d}×{m}");
        assert_agree(&case, &["Q", "∂q"], &run(true), &run(false), |_| 1e-4);
    }
}

/// A matrix of deficient rank never converges: counted, and the values stay finite.
#[test]
fn a_rank_deficient_matrix_is_counted() {
    let device = Default::default();
    let (d, m) = (3, 2);
    // Two equal columns.
    let q = Tensor::<B, 2>::from_data(
        TensorData::new(vec![1f32, 1.0, 2.0, 2.0, 3.0, 3.0], [1, d * m]),
        &device,
    );
    let (out, unconverged) = orthogonalize(&q, d, m, 1e-5, 100).unwrap();
    assert_eq!(unconverged, 1);
    assert!(values_of(out).iter().all(|v| v.is_finite()));
}

/// A NaN matrix is not converged (a NaN residual must not pass the tolerance test), and the
/// matrices beside it are unaffected.
#[test]
fn a_nan_matrix_is_counted() {
    let device = Default::default();
    let (d, m) = (3, 2);
    let q = Tensor::<B, 2>::from_data(
        TensorData::new(
            vec![
                1f32,
                0.0,
                0.0,
                1.0,
                0.5,
                0.5,
                f32::NAN,
                0.0,
                0.0,
                1.0,
                0.5,
                0.5,
            ],
            [2, d * m],
        ),
        &device,
    );
    let (out, unconverged) = orthogonalize(&q, d, m, 1e-5, 100).unwrap();
    assert_eq!(unconverged, 1);
    assert!(values_of(out)[..d * m].iter().all(|v| v.is_finite()));
}

/// The count says whether the matrix returned is within the tolerance, also when the last
/// allowed iteration is the first within it.
#[test]
fn the_count_matches_the_returned_matrix() {
    let device = Default::default();
    let (d, m, tol) = (3, 2, 1e-5);
    let q = Tensor::<B, 2>::from_data(
        TensorData::new(vec![1f32, 0.2, 0.1, 1.0, 0.3, 0.4], [1, d * m]),
        &device,
    );
    // max |QᵀQ − I| of the returned d×m matrix, on the host.
    let residual = |q: &[f64]| {
        let mut worst = 0f64;
        for i in 0..m {
            for j in 0..m {
                let dot: f64 = (0..d).map(|r| q[r * m + i] * q[r * m + j]).sum();
                worst = worst.max((dot - if i == j { 1.0 } else { 0.0 }).abs());
            }
        }
        worst
    };
    for max in 1..=12 {
        let (out, unconverged) = orthogonalize(&q, d, m, tol, max).unwrap();
        let r = residual(&values_of(out));
        assert_eq!(unconverged == 0, r <= tol, "max {max}: residual {r:e}");
    }
}
