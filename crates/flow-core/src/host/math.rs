//! Branch-free exponentials for the CPU kernels: plain arithmetic and bit operations, so
//! that loops over slices vectorize (inside `pulp`'s dispatch, compiled for the CPU's
//! widest SIMD), and no call into the C library per entry.

/// `eˣ` in `f32` without branches, so that loops over slices vectorize (Cephes' `expf`):
/// `x = n·ln 2 + r` with `|r| ≤ ln 2 / 2`, `eʳ` by its degree-6 minimax polynomial, `2ⁿ`
/// through the exponent bits. `x` is clamped to `[−87, 88]` (normal results); relative
/// error below `3·10⁻⁷`; NaN stays NaN.
#[inline(always)]
pub(super) fn exp_f32(x: f32) -> f32 {
    // 1.5·2²³: adding and subtracting it rounds to the nearest integer.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let n = (x * std::f32::consts::LOG2_E + ROUND) - ROUND;
    let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4;
    // Horner's rule with plain products and sums: `mul_add` is a library call where the
    // CPU has no FMA (outside the SIMD dispatch).
    let p = 1.987_569_1e-4_f32;
    let p = p * r + 1.398_2e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let e = p * (r * r) + r + 1.0;
    // 2ⁿ: `n + 127 + ROUND` holds the biased exponent `n + 127 ∈ [1, 254]` in its low
    // mantissa bits, which the shift moves into the exponent field (the bits above fall
    // off). Float-to-int casts would saturate, one scalar instruction per entry.
    e * f32::from_bits((n + (ROUND + 127.0)).to_bits() << 23)
}

/// `tanh(x)` from [`exp_f32`]: `(1 − e)/(1 + e)` with `e = e^{−2|x|} ≤ 1`, signed; absolute
/// error below `10⁻⁶`.
#[inline(always)]
pub(super) fn tanh_f32(x: f32) -> f32 {
    let e = exp_f32(-2.0 * x.abs());
    ((1.0 - e) / (1.0 + e)).copysign(x)
}

/// Independent partial sums in [`sum_lanes`]: a vector register's worth (AVX-512).
pub(super) const LANES: usize = 16;

/// `Σ_j f(a_j, b_j)` in [`LANES`] partial sums, then their sum: one running sum is a chain of
/// dependent additions, which does not vectorize (float addition is not associative).
#[inline(always)]
pub(super) fn sum_lanes(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f32 {
    let mut acc = [0.0f32; LANES];
    let (a, b) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = a
        .remainder()
        .iter()
        .zip(b.remainder())
        .map(|(&a, &b)| f(a, b))
        .sum();
    for (a, b) in a.zip(b) {
        for ((acc, &a), &b) in acc.iter_mut().zip(a).zip(b) {
            *acc += f(a, b);
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_and_tanh_match_libm() {
        let mut worst = (0.0f64, 0.0f64);
        for k in -20_000..=20_000 {
            let x = k as f32 * 4.3e-3; // [−86, 86]
            let e = f64::from(x).exp();
            worst.0 = worst.0.max((f64::from(exp_f32(x)) - e).abs() / e);
            let t = f64::from(x / 10.0).tanh();
            worst.1 = worst.1.max((f64::from(tanh_f32(x / 10.0)) - t).abs());
        }
        assert!(worst.0 < 3e-7 && worst.1 < 1e-6, "{worst:?}");
        assert!(exp_f32(f32::NAN).is_nan() && tanh_f32(f32::NAN).is_nan());
        assert_eq!(tanh_f32(1e4), 1.0);
        assert_eq!(tanh_f32(-1e4), -1.0);
        assert!(exp_f32(-1e4) < 1e-37 && exp_f32(1e4) > 1e38);
    }
}
