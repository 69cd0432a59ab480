use burn::tensor::{Tensor, TensorData};
use flow_core::{SylvesterQ, reference::sylvester_stack as reference};

use super::*;
use crate::host::check::{assert_agree, uniforms, values_of};

type B = burn::backend::Autodiff<burn::backend::NdArray>;

/// The fused Sylvester steps against flow-core's tensor-op reference, for each kind of
/// `Q`: `z_K`, `Σ ln|det J|` and the gradients of `z` and of every parameter (for O-SNF
/// through the orthogonalization, which both sides run as tensor operations), with
/// saturated diagonals and pre-activations and a vanishing reflection vector among the rows;
/// with parameters per row and tiled (3 samples of each of 6 parameter rows, whose gradients
/// sum over their samples).
#[test]
fn sylvester_stack_matches_reference() {
    let device = Default::default();
    let (n, d, steps) = (18, 5, 3);
    let mut uniform = uniforms(0x9E37_79B9_7F4A_7C15);
    let kinds = [
        SylvesterQ::Triangular,
        SylvesterQ::Householder { reflections: 3 },
        SylvesterQ::Orthogonal { columns: 3 },
        SylvesterQ::Orthogonal { columns: 5 },
    ];
    for (q, rows) in kinds.into_iter().flat_map(|q| [(q, n), (q, n / 3)]) {
        let p = q.params_per_step(d);
        let m = q.columns(d);
        let mut values = |len: usize, scale: f64| -> Vec<f32> {
            (0..len).map(|_| (scale * uniform()) as f32).collect()
        };
        let z = values(n * d, 2.0);
        let mut theta = values(rows * steps * p, 1.0);
        // Row 1, step 0: both diagonals saturated (tanh = ±1); row 2, step 1: a saturated
        // pre-activation (b large).
        theta[steps * p] = 30.0;
        theta[steps * p + m * m] = -30.0;
        theta[2 * steps * p + p + m * m + m] = 40.0;
        if let SylvesterQ::Householder { .. } = q {
            // Row 3, step 2: the first reflection vector vanishes (the identity).
            let at = 3 * steps * p + 2 * p + m * m + 2 * m;
            theta[at..at + d].fill(0.0);
        }
        let tensor = |v: Vec<f32>, rows: usize, cols: usize| {
            Tensor::<B, 2>::from_data(TensorData::new(v, [rows, cols]), &device).require_grad()
        };
        let (z, theta) = (tensor(z, n, d), tensor(theta, rows, steps * p));
        let gy = Tensor::<B, 2>::from_data(TensorData::new(values(n * d, 1.0), [n, d]), &device);
        let gl = Tensor::<B, 1>::from_data(TensorData::new(values(n, 1.0), [n]), &device);
        let run = |fused: bool| -> Vec<Vec<f64>> {
            let (y, l) =
                if fused {
                    let (basis, columns) =
                        match q {
                            SylvesterQ::Triangular => (Basis::Alternating, None),
                            SylvesterQ::Householder { reflections } => {
                                (Basis::Reflections(reflections), None)
                            }
                            SylvesterQ::Orthogonal { columns } => {
                                let at = columns * columns + 2 * columns;
                                let raw = (0..steps)
                                    .map(|k| theta.clone().narrow(1, k * p + at, d * columns))
                                    .collect();
                                let all = flow_core::reference::orthogonalize(
                                    Tensor::cat(raw, 0).reshape([steps * rows, d, columns]),
                                );
                                let flat = all
                                    .reshape([steps, rows, d * columns])
                                    .swap_dims(0, 1)
                                    .reshape([rows, steps * d * columns]);
                                (Basis::Columns(columns), Some(flat))
                            }
                        };
                    sylvester_stack(&z, &theta, columns.as_ref(), steps, basis)
                        .expect("ndarray has the CPU kernel")
                } else {
                    reference(z.clone(), theta.clone(), steps, q)
                };
            let grads =
                ((y.clone() * gy.clone()).sum() + (l.clone() * gl.clone()).sum()).backward();
            vec![
                values_of(y),
                values_of(l),
                values_of(z.grad(&grads).unwrap()),
                values_of(theta.grad(&grads).unwrap()),
            ]
        };
        let names = ["z_K", "ladj", "∂z", "∂θ"];
        let case = format!("{q:?}, {rows} parameter rows");
        assert_agree(&case, &names, &run(true), &run(false), |_| 2e-4);
    }
}
