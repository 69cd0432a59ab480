//! Branch-free exponentials and logarithms for the CPU kernels: plain arithmetic and bit
//! operations, so that loops over slices (or over a few entries side by side) vectorize
//! inside `pulp`'s dispatch, compiled for the CPU's widest SIMD, and no call into the C
//! library per entry.

/// `eˣ` in `f32` without branches, so that loops over slices vectorize (Cephes' `expf`):
/// `x = n·ln 2 + r` with `|r| ≤ ln 2 / 2`, `eʳ` by its degree-6 minimax polynomial, `2ⁿ`
/// through the exponent bits. `x` is clamped to `[−87, 88]` (normal results); relative
/// error below `3·10⁻⁷`; NaN stays NaN.
#[inline(always)]
pub(crate) fn exp_f32(x: f32) -> f32 {
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

/// `ln 2` in two parts (fdlibm's): `LN2_HI` has zeros in its low mantissa bits, so that
/// `k·LN2_HI` is exact for the `k` here.
const LN2_HI: f64 = 6.931_471_803_691_238e-1;
const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;

/// `eˣ` in `f64` without branches: `x = n·ln 2 + r` with `|r| ≤ ln 2 / 2` (`ln 2` in two
/// parts), `eʳ` by its Taylor polynomial of degree 12 (truncation below `2·10⁻¹⁶`), `2ⁿ`
/// through the exponent bits. `x` is clamped to `[−708, 709]` (normal results: `e⁻⁷⁰⁸`
/// stands for anything smaller); relative error below `10⁻¹⁵`; NaN stays NaN.
#[inline(always)]
pub(crate) fn exp_f64(x: f64) -> f64 {
    // 1.5·2⁵²: adding and subtracting it rounds to the nearest integer.
    const ROUND: f64 = 6_755_399_441_055_744.0;
    let x = x.clamp(-708.0, 709.0);
    let n = (x * std::f64::consts::LOG2_E + ROUND) - ROUND;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    // 1/k! for k = 12 down to 2, Horner's rule.
    let mut p = 1.0 / 479_001_600.0;
    for c in [
        1.0 / 39_916_800.0,
        1.0 / 3_628_800.0,
        1.0 / 362_880.0,
        1.0 / 40_320.0,
        1.0 / 5_040.0,
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
    ] {
        p = p * r + c;
    }
    let e = p * (r * r) + r + 1.0;
    // 2ⁿ: `n + 1023 + ROUND` holds the biased exponent `n + 1023 ∈ [1, 2046]` in its low
    // mantissa bits, which the shift moves into the exponent field.
    e * f64::from_bits((n + (ROUND + 1023.0)).to_bits() << 52)
}

/// `ln x` in `f64` without branches (fdlibm's `log`): `x = 2ᵏ·m` with `m ∈ [√½, √2)` from the
/// bits (subnormals scaled by `2⁵⁴` first), `ln m = 2 atanh(s)` with `s = (m − 1)/(m + 1)`,
/// `|s| ≤ 0.1716`, by fdlibm's minimax polynomial; `k·ln 2` in two parts. Error below one
/// unit in the last place; `ln 0 = −∞`, `ln ∞ = ∞`, NaN for NaN and negative `x`.
#[inline(always)]
pub(crate) fn ln_f64(x: f64) -> f64 {
    // 2⁵²: a double with this exponent holds a small integer in its low mantissa bits.
    const TWO52: f64 = 4_503_599_627_370_496.0;
    let tiny = x < f64::MIN_POSITIVE;
    let (y, bias) = if tiny {
        (x * 18_014_398_509_481_984.0, 1077.0) // 2⁵⁴, and 1023 + 54
    } else {
        (x, 1023.0)
    };
    let bits = y.to_bits();
    // The biased exponent as a double (integer-to-float conversions of 64-bit lanes are
    // not in AVX2): its 11 bits under 2⁵²'s exponent.
    let biased = f64::from_bits((bits >> 52) | TWO52.to_bits()) - TWO52;
    let m = f64::from_bits((bits & 0x000F_FFFF_FFFF_FFFF) | 1.0f64.to_bits());
    let big = m > std::f64::consts::SQRT_2;
    let (m, k) = if big {
        (0.5 * m, biased - bias + 1.0)
    } else {
        (m, biased - bias)
    };
    let f = m - 1.0;
    let s = f / (2.0 + f);
    let z = s * s;
    let mut r = 1.479_819_860_511_658_6e-1;
    for c in [
        1.531_383_769_920_937_3e-1,
        1.818_357_216_161_805e-1,
        2.222_219_843_214_978_4e-1,
        2.857_142_874_366_239e-1,
        3.999_999_999_940_942e-1,
        6.666_666_666_666_735e-1,
    ] {
        r = r * z + c;
    }
    let r = r * z;
    let hfsq = 0.5 * f * f;
    let ln = k * LN2_HI - ((hfsq - (s * (hfsq + r) + k * LN2_LO)) - f);
    if x > 0.0 && x < f64::INFINITY {
        ln
    } else if x == 0.0 {
        f64::NEG_INFINITY
    } else if x == f64::INFINITY {
        x
    } else {
        f64::NAN
    }
}

/// `ln(1 + eˣ)` without branches: `max(x, 0) + ln(1 + e^{−|x|})`, the logarithm of
/// `u = 1 + y` corrected for `u`'s rounding (`ln u − ((u − 1) − y)/u`). Relative error
/// below `10⁻¹⁵` where the result is above `10⁻³⁰⁰`; NaN stays NaN.
#[inline(always)]
pub(crate) fn softplus_f64(x: f64) -> f64 {
    let y = exp_f64(-x.abs());
    let u = 1.0 + y;
    x.max(0.0) + (ln_f64(u) - ((u - 1.0) - y) / u)
}

/// `tanh(x)` from [`exp_f32`]: `(1 − e)/(1 + e)` with `e = e^{−2|x|} ≤ 1`, signed; absolute
/// error below `10⁻⁶`.
#[inline(always)]
pub(crate) fn tanh_f32(x: f32) -> f32 {
    let e = exp_f32(-2.0 * x.abs());
    ((1.0 - e) / (1.0 + e)).copysign(x)
}

/// Whether every entry of `v` is finite: `0 · x` is ±0 for a finite `x` and NaN otherwise,
/// summed in lanes, which vectorizes (an early-exit `all` does not).
pub(crate) fn all_finite(v: &[f32]) -> bool {
    sum_lanes(v, v, |x, _| 0.0 * x) == 0.0
}

/// Independent partial sums in [`sum_lanes`]: a vector register's worth (AVX-512).
pub(crate) const LANES: usize = 16;

/// `Σ_j f(a_j, b_j)` in [`LANES`] partial sums, then their sum: one running sum is a chain of
/// dependent additions, which does not vectorize (float addition is not associative).
#[inline(always)]
pub(crate) fn sum_lanes(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f32 {
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

    #[test]
    fn exp_f64_matches_libm() {
        let worst = (-200_000..=200_000)
            .map(|k| {
                let x = k as f64 * 3.54e-3 + 1e-7; // [−708, 708], off the grid of ln 2
                (exp_f64(x) - x.exp()).abs() / x.exp()
            })
            .fold(0.0, f64::max);
        assert!(worst < 1e-15, "{worst:e}");
        assert!(exp_f64(f64::NAN).is_nan());
        assert_eq!(exp_f64(0.0), 1.0);
        assert!(exp_f64(-1e4) < 1e-307 && exp_f64(1e4) > 1e307);
    }

    #[test]
    fn ln_f64_matches_libm() {
        // Log-spaced over every binade, subnormals included, and around 1.
        let xs = (-10_740..=10_230)
            .map(|k| 2f64.powf(k as f64 * 0.1 + 1e-3))
            .chain((-10_000..=10_000).map(|k| 1.0 + k as f64 * 3e-5));
        let worst = xs
            .map(|x| (ln_f64(x) - x.ln()).abs() / x.ln().abs().max(1e-300))
            .fold(0.0, f64::max);
        assert!(worst < 4e-16, "{worst:e}");
        assert_eq!(ln_f64(1.0), 0.0);
        assert_eq!(ln_f64(0.0), f64::NEG_INFINITY);
        assert_eq!(ln_f64(f64::INFINITY), f64::INFINITY);
        assert!(ln_f64(-1.0).is_nan() && ln_f64(f64::NAN).is_nan());
    }

    #[test]
    fn softplus_f64_matches_libm() {
        let worst = (-200_000..=200_000)
            .map(|k| {
                let x = k as f64 * 3.5e-4; // [−70, 70]
                let want = if x > 40.0 { x } else { x.exp().ln_1p() };
                (softplus_f64(x) - want).abs() / want
            })
            .fold(0.0, f64::max);
        assert!(worst < 1e-15, "{worst:e}");
        assert!(softplus_f64(f64::NAN).is_nan());
        assert!((0.0..1e-300).contains(&softplus_f64(-1e4)));
        assert_eq!(softplus_f64(1e4), 1e4);
    }
}
