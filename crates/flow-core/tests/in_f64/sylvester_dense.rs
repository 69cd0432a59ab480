//! Sylvester steps against the paper's formula with dense matrices, in f64 on the host.
//!
//! The harness checks that each step's log-determinant is that of its own map; this checks
//! that the map is the one the module documents: `z' = z + Q R tanh(R̃ Qᵀ z + b)` with `R`,
//! `R̃` and `Q` built here, as plain matrices, from the documented parameter layout (`R̃ᵢⱼ =
//! Aⱼᵢ` above the diagonal, `tanh` diagonals, `Q = H(v_H) ⋯ H(v_1)`, the reversal on odd
//! T-SNF steps, the polar factor for O-SNF), and `ln|det| = ln|det(I + ∂(Q R h)/∂z)|` by
//! elimination on the full `D × D` Jacobian rather than by the diagonal product.

use crate::common::*;
use burn::tensor::{Tensor, TensorData};
use flow_core::{SylvesterQ, reference, sylvester_stack};

type Mat = Vec<Vec<f64>>;

/// Reproducible values in `[-scale, scale)` (splitmix64).
fn values(n: usize, seed: u64, scale: f64) -> Vec<f64> {
    let mut state = seed;
    (0..n)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut x = state;
            x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            x ^= x >> 31;
            scale * (2.0 * (x >> 11) as f64 / (1u64 << 53) as f64 - 1.0)
        })
        .collect()
}

fn zeros(r: usize, c: usize) -> Mat {
    vec![vec![0.0; c]; r]
}

fn identity(n: usize) -> Mat {
    let mut m = zeros(n, n);
    (0..n).for_each(|i| m[i][i] = 1.0);
    m
}

fn mul(a: &Mat, b: &Mat) -> Mat {
    let mut c = zeros(a.len(), b[0].len());
    for (i, row) in a.iter().enumerate() {
        for (k, &aik) in row.iter().enumerate() {
            for (j, &bkj) in b[k].iter().enumerate() {
                c[i][j] += aik * bkj;
            }
        }
    }
    c
}

fn transpose(a: &Mat) -> Mat {
    (0..a[0].len())
        .map(|j| a.iter().map(|row| row[j]).collect())
        .collect()
}

fn apply(a: &Mat, x: &[f64]) -> Vec<f64> {
    a.iter()
        .map(|row| row.iter().zip(x).map(|(a, x)| a * x).sum())
        .collect()
}

/// `ln|det a|` by Gaussian elimination with partial pivoting.
fn ln_abs_det(mut a: Mat) -> f64 {
    let n = a.len();
    let mut total = 0.0;
    for c in 0..n {
        let p = (c..n)
            .max_by(|&i, &j| a[i][c].abs().total_cmp(&a[j][c].abs()))
            .unwrap();
        a.swap(c, p);
        let pivot = a[c][c];
        total += pivot.abs().ln();
        let (top, below) = a.split_at_mut(c + 1);
        for row in below {
            let f = row[c] / pivot;
            row[c..]
                .iter_mut()
                .zip(&top[c][c..])
                .for_each(|(e, &p)| *e -= f * p);
        }
    }
    total
}

/// The orthogonal polar factor `X (XᵀX)^{-1/2}` of a `D×2` matrix, with the square root of
/// the 2×2 Gram matrix in closed form: `√S = (S + √det S · I)/√(tr S + 2√det S)`.
fn polar_factor(x: &Mat) -> Mat {
    let s = mul(&transpose(x), x);
    let det = s[0][0] * s[1][1] - s[0][1] * s[1][0];
    let (root_det, tr) = (det.sqrt(), s[0][0] + s[1][1]);
    let t = (tr + 2.0 * root_det).sqrt();
    let r = [
        [(s[0][0] + root_det) / t, s[0][1] / t],
        [s[1][0] / t, (s[1][1] + root_det) / t],
    ];
    let det_r = r[0][0] * r[1][1] - r[0][1] * r[1][0];
    let inv = vec![
        vec![r[1][1] / det_r, -r[0][1] / det_r],
        vec![-r[1][0] / det_r, r[0][0] / det_r],
    ];
    mul(x, &inv)
}

/// `H(v) = I − 2 v vᵀ / ‖v‖²`.
fn reflection(v: &[f64]) -> Mat {
    let sq: f64 = v.iter().map(|x| x * x).sum();
    let mut h = identity(v.len());
    for (i, row) in h.iter_mut().enumerate() {
        for (j, e) in row.iter_mut().enumerate() {
            *e -= 2.0 * v[i] * v[j] / sq;
        }
    }
    h
}

/// One step on the host: `(z', ln|det ∂z'/∂z|)` for the parameters `p` of step `k`.
fn dense_step(z: &[f64], p: &[f64], k: usize, q: SylvesterQ) -> (Vec<f64>, f64) {
    let d = z.len();
    let m = q.columns(d);
    let a = &p[..m * m];
    let (d_tilde, b, rest) = (
        &p[m * m..m * m + m],
        &p[m * m + m..m * m + 2 * m],
        &p[m * m + 2 * m..],
    );
    let (mut r, mut r_tilde) = (zeros(m, m), zeros(m, m));
    for i in 0..m {
        r[i][i] = a[i * m + i].tanh();
        r_tilde[i][i] = d_tilde[i].tanh();
        for j in i + 1..m {
            r[i][j] = a[i * m + j];
            r_tilde[i][j] = a[j * m + i];
        }
    }
    let big_q = match q {
        SylvesterQ::Orthogonal { .. } => {
            polar_factor(&(0..d).map(|i| rest[i * m..(i + 1) * m].to_vec()).collect())
        }
        SylvesterQ::Householder { reflections } => (0..reflections).fold(identity(d), |acc, h| {
            mul(&reflection(&rest[h * d..(h + 1) * d]), &acc)
        }),
        SylvesterQ::Triangular if k.is_multiple_of(2) => identity(d),
        SylvesterQ::Triangular => {
            let mut rev = zeros(d, d);
            (0..d).for_each(|i| rev[i][d - 1 - i] = 1.0);
            rev
        }
    };
    let qt = transpose(&big_q);
    let pre: Vec<f64> = apply(&mul(&r_tilde, &qt), z)
        .iter()
        .zip(b)
        .map(|(u, b)| u + b)
        .collect();
    let h: Vec<f64> = pre.iter().map(|u| u.tanh()).collect();
    let qr = mul(&big_q, &r);
    let out: Vec<f64> = z.iter().zip(apply(&qr, &h)).map(|(z, s)| z + s).collect();
    // Jacobian I + Q R diag(h') R̃ Qᵀ, in full.
    let mut hp_rt_qt = mul(&r_tilde, &qt);
    for (i, row) in hp_rt_qt.iter_mut().enumerate() {
        let hp = 1.0 - h[i] * h[i];
        row.iter_mut().for_each(|e| *e *= hp);
    }
    let mut jac = mul(&qr, &hp_rt_qt);
    (0..d).for_each(|i| jac[i][i] += 1.0);
    (out, ln_abs_det(jac))
}

#[test]
fn every_kind_matches_the_dense_formula() {
    let _rng = seeded_ndarray();
    let device = Default::default();
    let (n, d, steps) = (3, 4, 3);
    for (seed, q, tol) in [
        (1, SylvesterQ::Triangular, 1e-10),
        (2, SylvesterQ::Householder { reflections: 2 }, 1e-10),
        // The iteration stops within 1e-5 of orthonormal, then takes one more step (its
        // error squares).
        (3, SylvesterQ::Orthogonal { columns: 2 }, 1e-8),
    ] {
        let p = q.params_per_step(d);
        let z = values(n * d, seed, 1.5);
        let theta = values(n * steps * p, seed + 100, 0.9);
        let mut want_z = Vec::new();
        let mut want_ladj = Vec::new();
        for i in 0..n {
            let mut zi = z[i * d..(i + 1) * d].to_vec();
            let mut ladj = 0.0;
            for k in 0..steps {
                let at = i * steps * p + k * p;
                let (next, l) = dense_step(&zi, &theta[at..at + p], k, q);
                zi = next;
                ladj += l;
            }
            want_z.extend(zi);
            want_ladj.push(ladj);
        }
        let zt = Tensor::<Nd64, 2>::from_data(TensorData::new(z, [n, d]), &device);
        let tt = Tensor::<Nd64, 2>::from_data(TensorData::new(theta, [n, steps * p]), &device);
        let runs = [
            (
                "reference",
                reference::sylvester_stack(zt.clone(), tt.clone(), steps, q),
            ),
            ("sylvester_stack", sylvester_stack(zt, tt, steps, q)),
        ];
        for (name, (got_z, got_ladj)) in runs {
            for (what, got, want) in [
                ("z", host(got_z), &want_z),
                ("ladj", host(got_ladj), &want_ladj),
            ] {
                let err = got
                    .iter()
                    .zip(want)
                    .map(|(g, w)| (g - w).abs())
                    .fold(0.0, f64::max);
                assert!(
                    err < tol,
                    "{q:?} {name} {what}: max error {err:e}\n got {got:?}\nwant {want:?}"
                );
            }
        }
    }
}
