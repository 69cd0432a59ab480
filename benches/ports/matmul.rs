//! The backend's f32 matmul rate, as the peers' `matmul_peak.py` measures torch's.

use std::time::Instant;

use burn::tensor::{Distribution, Tensor, backend::Backend};
use serde_json::{Value, json};
use tracing::info;

use crate::common::sync;

/// `(label, m, k, n, transposed)`: `[m, k] @ [k, n]`, the left operand stored transposed
/// (`[k, m]`, as in a backward pass's `xᵀ δ`) when `transposed`.
pub const MATMUL_SHAPES: [(&str, usize, usize, usize, bool); 9] = [
    ("square 2048", 2048, 2048, 2048, false),
    ("square 512", 512, 512, 512, false),
    ("moons hid 512x256@256x256", 512, 256, 256, false),
    ("moons dW hid 256x512@512x256 (xT)", 256, 512, 256, true),
    ("maf in 128x784@784x512", 128, 784, 512, false),
    ("maf hid 128x512@512x512", 128, 512, 512, false),
    ("maf out 128x512@512x1568", 128, 512, 1568, false),
    ("maf dW out 512x128@128x1568 (xT)", 512, 128, 1568, true),
    ("nsf hid 512x128@128x128", 512, 128, 128, false),
];

pub fn matmul<B: Backend>(repeats: usize, min_time: f64) -> Value {
    let device = Default::default();
    let rows: Vec<Value> = MATMUL_SHAPES
        .iter()
        .map(|&(label, m, k, n, transposed)| {
            let normal = |shape: [usize; 2]| {
                Tensor::<B, 2>::random(shape, Distribution::Normal(0.0, 1.0), &device)
            };
            let a = if transposed {
                normal([k, m])
            } else {
                normal([m, k])
            };
            let b = normal([k, n]);
            let product = || {
                let a = if transposed {
                    a.clone().transpose()
                } else {
                    a.clone()
                };
                let _ = a.matmul(b.clone());
                sync::<B>();
            };
            product();
            let mut rates: Vec<f64> = (0..repeats)
                .map(|_| {
                    let (t, mut calls) = (Instant::now(), 0);
                    while calls == 0 || t.elapsed().as_secs_f64() < min_time {
                        product();
                        calls += 1;
                    }
                    2.0 * (m * k * n * calls) as f64 / t.elapsed().as_secs_f64() / 1e9
                })
                .collect();
            rates.sort_by(f64::total_cmp);
            let median = rates[rates.len() / 2];
            info!(shape = label, gflops = format!("{median:.1}"), "matmul");
            json!({"label": label, "m": m, "k": k, "n": n, "gflops_median": median,
                   "gflops_max": rates[rates.len() - 1]})
        })
        .collect();
    json!({"bench": "matmul-peak", "peak_2048_gflops_median": rows[0]["gflops_median"], "rows": rows})
}
