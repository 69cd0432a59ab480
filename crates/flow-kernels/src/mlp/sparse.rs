//! A network's first layer on a mostly-zero input (binarized images: ~13 % ones in MNIST),
//! over the input's nonzero entries only.
//!
//! # Math
//! With `x: [m, d_0]` and `W_0: [d_0, d_1]`, the first layer's product and its weight
//! gradient (from `δ = ∂ℒ/∂z_0: [m, d_1]`) are sums over the input's entries, and the
//! zero entries add nothing:
//!
//! ```text
//! (x W_0)[r, :] = Σ_{i: x_ri ≠ 0} x_ri W_0[i, :]       ∂ℒ/∂W_0[i, :] = Σ_{r: x_ri ≠ 0} x_ri δ[r, :]
//! ```
//!
//! At a fraction `ρ` of nonzero entries both cost `ρ m d_0 d_1` multiply-adds instead of
//! `m d_0 d_1`. Exact up to rounding: the same terms, the zero ones left out (a NaN or an
//! infinity in `x` is nonzero and is kept; a NaN weight is excluded by the caller, which
//! takes this path only on finite weights, so that it reaches every row as through the
//! product). The loops keep a block of [`TILE`] output columns in registers while they run
//! over a row's (or a feature's) nonzero entries, reading that block of the weight's (or
//! `δ`'s) rows, for every row of the task before the next block of columns: the block of
//! the weight (`d_0 × 128` entries, 400 KB for MNIST's 784 pixels) stays in the L2 cache,
//! where all of it (1.6 MB at 512 units) would be read from L3 for every row.

use pulp::{Simd, WithSimd};

/// Output columns per register tile (8 AVX-512 vectors).
const TILE: usize = 128;

/// The loops, compiled through pulp's dispatch for the CPU's widest SIMD (see
/// `affine::cpu`'s `Task` for why a `WithSimd` type and not a closure).
enum Work<'a> {
    /// `out [rows, n] = x [rows, k] · w [k, n]`.
    Rows {
        x: &'a [f32],
        w: &'a [f32],
        out: &'a mut [f32],
        k: usize,
    },
    /// `out [i1 − i0, n] = x[:, i0..i1]ᵀ · δ [m, n]` for `x: [m, k]`.
    Features {
        x: &'a [f32],
        delta: &'a [f32],
        out: &'a mut [f32],
        k: usize,
        i0: usize,
    },
}

impl WithSimd for Work<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _: S) {
        match self {
            Work::Rows { x, w, out, k } => rows(x, w, out, k),
            Work::Features {
                x,
                delta,
                out,
                k,
                i0,
            } => features(x, delta, out, k, i0),
        }
    }
}

/// Whether `x` (`k` columns) has at most a quarter nonzero entries (counted in lanes,
/// which vectorizes).
pub(super) fn is_sparse(x: &[f32]) -> bool {
    let nonzero = crate::host::math::sum_lanes(x, x, |v, _| if v != 0.0 { 1.0 } else { 0.0 });
    // NaN compares unequal to 0 and counts as nonzero; the count is exact in f32 up to
    // 2^24 per lane.
    (nonzero as f64) <= x.len() as f64 / 4.0
}

/// `out = x · w` for a block of rows `x: [rows, k]` and `w: [k, n]` row-major, over `x`'s
/// nonzero entries.
pub(super) fn product(x: &[f32], w: &[f32], out: &mut [f32], k: usize) {
    pulp::Arch::new().dispatch(Work::Rows { x, w, out, k });
}

/// Rows `i0 .. i0 + out.len() / n` of `xᵀ · δ` for `x: [m, k]` and `δ: [m, n]`, over
/// `x`'s nonzero entries.
pub(super) fn weight_gradient(x: &[f32], delta: &[f32], out: &mut [f32], k: usize, i0: usize) {
    pulp::Arch::new().dispatch(Work::Features {
        x,
        delta,
        out,
        k,
        i0,
    });
}

/// `Σ_j a_j · rows[j][c0..c0 + W]` for the `(a_j, row offset)` pairs, `W` a constant so
/// that the sum stays in registers.
#[inline(always)]
fn tile<const W: usize>(terms: &[(f32, usize)], rows: &[f32], c0: usize) -> [f32; W] {
    let mut acc = [0.0f32; W];
    for &(a, at) in terms {
        let row: &[f32; W] = rows[at + c0..][..W].try_into().expect("W entries");
        for c in 0..W {
            acc[c] += a * row[c];
        }
    }
    acc
}

/// Writes `Σ_j a_j · rows[j]` (each `n` wide) into `out` for each list of terms
/// `terms[start[q]..start[q + 1]]` and output row `q` of `out` (rows `n` apart), a tile of
/// columns at a time for every list (the tile of `rows` stays in cache across the lists),
/// the last, narrower tile 16 columns at a time.
#[inline(always)]
fn combine(terms: &[(f32, usize)], start: &[usize], rows: &[f32], out: &mut [f32], n: usize) {
    let lists = || start.windows(2).map(|s| &terms[s[0]..s[1]]);
    let mut c0 = 0;
    while c0 + TILE <= n {
        for (list, out) in lists().zip(out.chunks_exact_mut(n)) {
            out[c0..c0 + TILE].copy_from_slice(&tile::<TILE>(list, rows, c0));
        }
        c0 += TILE;
    }
    while c0 + 16 <= n {
        for (list, out) in lists().zip(out.chunks_exact_mut(n)) {
            out[c0..c0 + 16].copy_from_slice(&tile::<16>(list, rows, c0));
        }
        c0 += 16;
    }
    for (list, out) in lists().zip(out.chunks_exact_mut(n)) {
        for (c, out) in out.iter_mut().enumerate().skip(c0) {
            *out = list.iter().map(|&(a, at)| a * rows[at + c]).sum();
        }
    }
}

#[inline(always)]
fn rows(x: &[f32], w: &[f32], out: &mut [f32], k: usize) {
    let n = w.len() / k.max(1);
    // Each row's nonzero entries, row after row.
    let (mut terms, mut start) = (Vec::new(), vec![0]);
    for x in x.chunks_exact(k) {
        let nonzero = x.iter().enumerate().filter(|(_, v)| **v != 0.0);
        terms.extend(nonzero.map(|(i, &v)| (v, i * n)));
        start.push(terms.len());
    }
    combine(&terms, &start, w, out, n);
}

#[inline(always)]
fn features(x: &[f32], delta: &[f32], out: &mut [f32], k: usize, i0: usize) {
    let n = delta.len() / (x.len() / k.max(1)).max(1);
    let count = out.len() / n.max(1);
    // The block's features' nonzero entries down the rows, feature by feature.
    let nonzero = x.chunks_exact(k).enumerate().flat_map(|(r, row)| {
        let block = row[i0..i0 + count].iter().enumerate();
        block
            .filter(|(_, v)| **v != 0.0)
            .map(move |(i, &v)| (i, (v, r * n)))
    });
    let (start, terms) = crate::host::buckets(nonzero, count);
    combine(&terms, &start, delta, out, n);
}
