//! The building blocks of the CPU network kernel: matrix products on slices (the `gemm`
//! crate's, or loops for the skinny shapes it handles poorly), and the element-wise passes
//! between them (bias, ReLU, its backward, column sums), each compiled inside pulp's
//! dispatch for the CPU's widest SIMD.

use gemm::Parallelism;

use crate::host::math::sum_lanes;

/// A matrix operand over a slice: entry `(i, j)` at `data[i·rs + j·cs]`.
#[derive(Clone, Copy)]
pub(super) struct Mat<'a> {
    data: &'a [f32],
    rs: usize,
    cs: usize,
}

impl<'a> Mat<'a> {
    /// A row-major matrix with `cols` columns.
    pub(super) fn rows(data: &'a [f32], cols: usize) -> Self {
        Self {
            data,
            rs: cols,
            cs: 1,
        }
    }

    /// The transpose of a row-major matrix with `cols` columns.
    pub(super) fn transposed(data: &'a [f32], cols: usize) -> Self {
        Self {
            data,
            rs: 1,
            cs: cols,
        }
    }

    /// The transpose of this view (no copy).
    pub(super) fn t(self) -> Self {
        Self {
            data: self.data,
            rs: self.cs,
            cs: self.rs,
        }
    }

    /// Whether every entry of a `[rows, cols]` view lies inside the slice.
    fn fits(&self, rows: usize, cols: usize) -> bool {
        rows == 0 || cols == 0 || (rows - 1) * self.rs + (cols - 1) * self.cs < self.data.len()
    }
}

/// `dst [m, n]` (rows `dst_rs` apart, columns adjacent) `= lhs [m, k] · rhs [k, n]`, plus
/// `dst`'s old values when `accumulate`.
pub(super) fn matmul(
    (dst, dst_rs): (&mut [f32], usize),
    accumulate: bool,
    lhs: Mat,
    rhs: Mat,
    (m, n, k): (usize, usize, usize),
    parallelism: Parallelism,
) {
    let dst_view = Mat::rows(dst, dst_rs);
    assert!(
        n <= dst_rs && dst_view.fits(m, n) && lhs.fits(m, k) && rhs.fits(k, n),
        "matrix operands within their slices"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst.chunks_mut(dst_rs)
                .take(m)
                .for_each(|r| r[..n].fill(0.0));
        }
        return;
    }
    if skinny((dst, dst_rs), accumulate, lhs, rhs, (m, n, k)) {
        return;
    }
    // SAFETY: the assertion keeps every entry gemm reads or writes inside its slice, and
    // `dst` (a unique borrow) cannot alias `lhs` or `rhs`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr(),
            rhs.cs as isize,
            rhs.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// The widest side a product takes the [`skinny`] loops for.
const SKINNY: usize = 4;

impl Mat<'_> {
    #[inline(always)]
    fn at(&self, i: usize, j: usize) -> f32 {
        self.data[i * self.rs + j * self.cs]
    }

    /// The `[rows, cols]` view's entries row-major.
    fn gather(&self, rows: usize, cols: usize) -> Vec<f32> {
        (0..rows)
            .flat_map(|i| (0..cols).map(move |j| self.at(i, j)))
            .collect()
    }
}

/// [`matmul`] for the products with a side of at most [`SKINNY`], on which gemm's register
/// tiles (16–64 × 6) run mostly empty: a coupling's `1 → 256` input and `256 → 2` output
/// layers, their gradients. Returns whether it took the product.
///
/// - `n ≤ SKINNY` (few output columns): each entry a dot product of `lhs`'s row with
///   `rhs`'s column (gathered once), or, when `lhs` is a transpose (a weight gradient
///   `aᵀ g`), `rhs[kk, j]` times `lhs`'s contiguous column `kk` summed into column `j`;
/// - `k ≤ SKINNY` or `m ≤ SKINNY` (few terms, or few rows): each row of `dst` a sum of
///   `rhs`'s rows (gathered once when `rhs` is a transpose) scaled by `lhs`'s entries.
fn skinny(
    (dst, dst_rs): (&mut [f32], usize),
    accumulate: bool,
    lhs: Mat,
    rhs: Mat,
    (m, n, k): (usize, usize, usize),
) -> bool {
    let shape = (m, n, k);
    let pass = if n <= SKINNY && lhs.cs == 1 {
        Skinny::Dots {
            cols: rhs.t().gather(n, k),
        }
    } else if n <= SKINNY && lhs.rs == 1 {
        Skinny::Columns {
            rhs: rhs.gather(k, n),
        }
    } else if (k <= SKINNY || m <= SKINNY) && n >= 16 {
        Skinny::Rows {
            rhs: match rhs.cs {
                1 => None,
                _ => Some(rhs.gather(k, n)),
            },
        }
    } else {
        return false;
    };
    pulp::Arch::new().dispatch(Pass::Skinny(
        pass,
        (dst, dst_rs),
        accumulate,
        lhs,
        rhs,
        shape,
    ));
    true
}

/// How [`skinny`] computes a product, with what it gathered.
enum Skinny {
    /// `rhs`'s columns, `[n, k]`.
    Dots { cols: Vec<f32> },
    /// `rhs`, `[k, n]`.
    Columns { rhs: Vec<f32> },
    /// `rhs`, `[k, n]`, when it is not row-major already.
    Rows { rhs: Option<Vec<f32>> },
}

#[inline(always)]
fn skinny_loop(
    how: Skinny,
    (dst, dst_rs): (&mut [f32], usize),
    accumulate: bool,
    lhs: Mat,
    rhs: Mat,
    (m, n, k): (usize, usize, usize),
) {
    let mut put = |i: usize, j: usize, v: f32| {
        let d = &mut dst[i * dst_rs + j];
        *d = if accumulate { *d + v } else { v };
    };
    match how {
        Skinny::Dots { cols } => {
            for i in 0..m {
                let a = &lhs.data[i * lhs.rs..][..k];
                for (j, col) in cols.chunks_exact(k).enumerate() {
                    put(i, j, sum_lanes(a, col, |a, b| a * b));
                }
            }
        }
        Skinny::Columns { rhs } => {
            let mut acc = vec![0.0; n * m];
            for kk in 0..k {
                let col = &lhs.data[kk * lhs.cs..][..m];
                for (j, acc) in acc.chunks_exact_mut(m).enumerate() {
                    let r = rhs[kk * n + j];
                    acc.iter_mut().zip(col).for_each(|(s, &a)| *s += r * a);
                }
            }
            for (j, acc) in acc.chunks_exact(m).enumerate() {
                acc.iter().enumerate().for_each(|(i, &v)| put(i, j, v));
            }
        }
        Skinny::Rows { rhs: gathered } => {
            let rows = match &gathered {
                Some(g) => Mat::rows(g, n),
                None => rhs,
            };
            for i in 0..m {
                let d = &mut dst[i * dst_rs..][..n];
                if !accumulate {
                    d.fill(0.0);
                }
                for kk in 0..k {
                    let a = lhs.at(i, kk);
                    let r = &rows.data[kk * rows.rs..][..n];
                    d.iter_mut().zip(r).for_each(|(d, &r)| *d += a * r);
                }
            }
        }
    }
}

/// `dst: [rows, cols]` row-major `=` the transpose of `src: [cols, rows]` row-major, in
/// square blocks whose lines stay in the L1 cache.
pub(super) fn transpose_into(dst: &mut [f32], src: &[f32], rows: usize) {
    const BLOCK: usize = 32;
    let cols = dst.len() / rows.max(1);
    for i0 in (0..rows).step_by(BLOCK) {
        for j0 in (0..cols).step_by(BLOCK) {
            let j1 = (j0 + BLOCK).min(cols);
            for i in i0..(i0 + BLOCK).min(rows) {
                let d = &mut dst[i * cols + j0..i * cols + j1];
                let s = &src[i..];
                d.iter_mut()
                    .zip((j0..j1).map(|j| s[j * rows]))
                    .for_each(|(d, v)| *d = v);
            }
        }
    }
}

/// The element-wise passes between the products, run through pulp's dispatch so that their
/// loops are compiled for the CPU's widest SIMD (AVX-512 here) instead of the baseline's
/// SSE2 (see `affine::cpu`'s `Task` for why a `WithSimd` type and not a closure).
enum Pass<'a> {
    AddBias(&'a mut [f32], &'a [f32], bool),
    ReluBackward(&'a mut [f32], &'a [f32]),
    ColumnSums(&'a mut [f32], &'a [f32]),
    Skinny(
        Skinny,
        (&'a mut [f32], usize),
        bool,
        Mat<'a>,
        Mat<'a>,
        (usize, usize, usize),
    ),
}

impl pulp::WithSimd for Pass<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        match self {
            Pass::AddBias(v, b, relu) => add_bias_loop(v, b, relu),
            Pass::ReluBackward(g, a) => relu_backward_loop(g, a),
            Pass::ColumnSums(b, g) => column_sums_loop(b, g),
            Pass::Skinny(how, dst, accumulate, lhs, rhs, shape) => {
                skinny_loop(how, dst, accumulate, lhs, rhs, shape)
            }
        }
    }
}

/// `v ← v + b` on every row of `v` (rows of `b.len()`), then the ReLU when `relu` (NaN
/// stays NaN).
pub(super) fn add_bias(v: &mut [f32], b: &[f32], relu: bool) {
    pulp::Arch::new().dispatch(Pass::AddBias(v, b, relu));
}

#[inline(always)]
fn add_bias_loop(v: &mut [f32], b: &[f32], relu: bool) {
    for row in v.chunks_exact_mut(b.len()) {
        for (v, &b) in row.iter_mut().zip(b) {
            let s = *v + b;
            *v = if relu && s < 0.0 { 0.0 } else { s };
        }
    }
}

/// Zeroes `g` where the activation `a` is not positive.
pub(super) fn relu_backward(g: &mut [f32], a: &[f32]) {
    pulp::Arch::new().dispatch(Pass::ReluBackward(g, a));
}

#[inline(always)]
fn relu_backward_loop(g: &mut [f32], a: &[f32]) {
    for (g, &a) in g.iter_mut().zip(a) {
        *g = if a > 0.0 { *g } else { 0.0 };
    }
}

/// `b ← b + Σ_rows g` for `g` in rows of `b.len()`.
pub(super) fn column_sums(b: &mut [f32], g: &[f32]) {
    pulp::Arch::new().dispatch(Pass::ColumnSums(b, g));
}

#[inline(always)]
fn column_sums_loop(b: &mut [f32], g: &[f32]) {
    for row in g.chunks_exact(b.len()) {
        b.iter_mut().zip(row).for_each(|(b, g)| *b += g);
    }
}
