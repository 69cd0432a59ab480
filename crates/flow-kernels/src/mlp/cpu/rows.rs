//! The fused network's passes on the host: the network and its inputs as the kernel reads
//! them, and the forward and backward passes over blocks of rows (the math and the paths
//! are in the parent module's docs).

use std::mem::MaybeUninit;

use gemm::Parallelism;
use rayon::prelude::*;

use crate::host::blocks;
use crate::host::math::all_finite;
use crate::host::op::{Args, Values};
use crate::mlp::kinks::{Kinks, Layers};
use crate::mlp::mask::{TILE, WeightMask, apply_mask, masked_out_is_zero};
use crate::mlp::passes::{Mat, add_bias, column_sums, matmul, relu_backward, transpose_into};
use crate::mlp::pool::{buffer, recycle};
use crate::mlp::sparse;

/// The fewest rows one thread task takes.
const MIN_ROWS: usize = 16;

/// The narrowest input that the first layer reads as sparse (`mlp::sparse`).
const SPARSE_WIDTH: usize = 32;

/// The fewest rows that take a network on one input feature through its kinks (module
/// docs).
const KINK_ROWS: usize = 8;

/// The network on the host: `w[l]: [d_l, d_{l+1}]` row-major, `b[l]: [d_{l+1}]`.
#[derive(Debug)]
pub(super) struct Net {
    w: Vec<Values>,
    b: Vec<Values>,
    /// `d_0 … d_L`.
    pub(super) widths: Vec<usize>,
    /// Per layer, the mask its weight is multiplied by (`None`: none).
    masks: Vec<Option<WeightMask>>,
    /// Per masked layer, `W ⊙ M` tile by tile, each `[hi − lo, c1 − c0]` row-major, or
    /// `None` where `W` is zero outside the mask already and is read in place (empty for
    /// the other layers).
    packed: Vec<Vec<Option<Vec<f32>>>>,
    relu_last: bool,
    /// The first two layers through the first layer's kinks, on one input feature
    /// ([`Net::with_first_layers`]).
    kinks: Option<Kinks>,
    /// Whether the first layer's product and weight gradient run over the input's nonzero
    /// entries (`sparse`; [`Net::with_first_layers`]).
    sparse_input: bool,
}

/// One block of a weight's columns and the rows outside of which it is zero.
#[derive(Debug, Clone, Copy)]
struct Tile {
    /// Columns `c0..c1`.
    c0: usize,
    c1: usize,
    /// Rows `lo..hi`.
    lo: usize,
    hi: usize,
}

impl Net {
    /// Layer `l`'s weight as tiles: one per block of [`TILE`] columns where the layer has a
    /// mask, else one tile of the whole matrix.
    fn tiles(&self, l: usize) -> Vec<Tile> {
        let (d_in, d_out) = (self.widths[l], self.widths[l + 1]);
        match self.masks[l].as_ref().map(WeightMask::tiles) {
            None => vec![Tile {
                c0: 0,
                c1: d_out,
                lo: 0,
                hi: d_in,
            }],
            Some(rows) => rows
                .iter()
                .enumerate()
                .map(|(j, r)| Tile {
                    c0: j * TILE,
                    c1: ((j + 1) * TILE).min(d_out),
                    lo: r.start,
                    hi: r.end,
                })
                .collect(),
        }
    }

    /// Tile `i` (`t`) of layer `l`'s (masked) weight, `[hi − lo, c1 − c0]`.
    fn weight(&self, l: usize, i: usize, t: Tile) -> Mat<'_> {
        match self.packed[l].get(i) {
            Some(Some(tile)) => Mat::rows(tile, t.c1 - t.c0),
            _ => Mat::rows(
                &self.w[l][t.lo * self.widths[l + 1] + t.c0..],
                self.widths[l + 1],
            ),
        }
    }

    /// [`Net::weight`] transposed.
    fn weight_t(&self, l: usize, i: usize, t: Tile) -> Mat<'_> {
        self.weight(l, i, t).t()
    }

    /// `W ⊙ M` of every masked layer, tile by tile (all tiles in one parallel region).
    fn pack(&mut self) {
        let jobs: Vec<(usize, Tile)> = (0..self.depth())
            .filter(|&l| self.masks[l].is_some())
            .flat_map(|l| self.tiles(l).into_iter().map(move |t| (l, t)))
            .collect();
        let tiles: Vec<Option<Vec<f32>>> = jobs
            .par_iter()
            .map(|&(l, t)| {
                let (w, d_out) = (&self.w[l], self.widths[l + 1]);
                let mask = self.masks[l].as_ref().expect("masked layers only");
                let rows = (t.lo..t.hi)
                    .map(|r| (&w[r * d_out..][t.c0..t.c1], mask.row_bits(t.c0 / TILE, r)));
                if masked_out_is_zero(rows) {
                    return None;
                }
                let mut tile = Vec::with_capacity((t.hi - t.lo) * (t.c1 - t.c0));
                for r in t.lo..t.hi {
                    let start = tile.len();
                    tile.extend_from_slice(&w[r * d_out..][t.c0..t.c1]);
                    apply_mask(&mut tile[start..], mask.row_bits(t.c0 / TILE, r));
                }
                Some(tile)
            })
            .collect();
        self.packed = vec![Vec::new(); self.depth()];
        for ((l, _), tile) in jobs.into_iter().zip(tiles) {
            self.packed[l].push(tile);
        }
    }

    pub(super) fn depth(&self) -> usize {
        self.w.len()
    }

    /// The first two layers' parameters.
    fn first_two(&self) -> Layers<'_> {
        Layers {
            w0: &self.w[0],
            b0: &self.b[0],
            w1: &self.w[1],
            b1: &self.b[1],
        }
    }

    /// Chooses how the first layers run on `x` (`m` rows): through the first layer's
    /// kinks (`kinks`) when the network has one input feature, at least two layers,
    /// neither masked, all their parameters finite, and enough rows that the table (`~3
    /// d_1 d_2` operations) costs less than the product it replaces (`m d_1 d_2`
    /// multiply-adds); else over a mostly-zero input's nonzero entries (`sparse`)
    /// when the first layer is unmasked, wide enough to matter and its weights finite.
    fn with_first_layers(mut self, x: &[f32], m: usize) -> Self {
        let kinks = self.widths[0] == 1
            && self.depth() >= 2
            && self.masks[..2].iter().all(Option::is_none)
            && m >= KINK_ROWS;
        if kinks {
            self.kinks = Kinks::new(self.first_two());
        }
        self.sparse_input = self.kinks.is_none()
            && self.masks[0].is_none()
            && self.widths[0] >= SPARSE_WIDTH
            && sparse::is_sparse(x)
            && all_finite(&self.w[0]);
        self
    }

    /// The layer the row-by-row passes start at: 2 when the first two go through the kinks.
    fn first_product(&self) -> usize {
        match self.kinks {
            Some(_) => 2,
            None => 0,
        }
    }

    /// The widths of the activations `a_1 … a_L` the forward pass keeps: `a_1` (the
    /// first layer's `d_1` units) is not formed through the kinks.
    fn kept_widths(&self) -> Vec<usize> {
        let mut widths = self.widths[1..].to_vec();
        if self.kinks.is_some() {
            widths[0] = 0;
        }
        widths
    }

    /// Whether layer `l`'s output goes through the ReLU.
    fn activates(&self, l: usize) -> bool {
        l + 1 < self.depth() || self.relu_last
    }
}

/// `block` with every entry set to zero, as initialized values.
fn zeroed(block: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    block.iter_mut().for_each(|x| {
        x.write(0.0);
    });
    // SAFETY: every entry was just written, and `MaybeUninit<f32>` has `f32`'s layout.
    unsafe { &mut *(block as *mut [MaybeUninit<f32>] as *mut [f32]) }
}

/// The kernel's inputs on the host.
#[derive(Debug)]
pub(super) struct Inputs {
    pub(super) net: Net,
    pub(super) x: Values,
    /// Rows of `x`.
    pub(super) m: usize,
}

impl Inputs {
    /// `x`, then each layer's weight `[d_l, d_{l+1}]` and bias `[1, d_{l+1}]`.
    pub(super) fn new(args: Args, masks: Vec<Option<WeightMask>>, relu_last: bool) -> Self {
        let Args { values, shapes } = args;
        let mut values = values.into_iter();
        let x = values.next().expect("the input");
        let (mut w, mut b) = (Vec::new(), Vec::new());
        while let (Some(wl), Some(bl)) = (values.next(), values.next()) {
            w.push(wl);
            b.push(bl);
        }
        let widths = std::iter::once(shapes[0][1])
            .chain(shapes[1..].iter().step_by(2).map(|s| s[1]))
            .collect();
        let mut net = Net {
            w,
            b,
            widths,
            masks,
            packed: Vec::new(),
            relu_last,
            kinks: None,
            sparse_input: false,
        };
        net.pack();
        let m = shapes[0][0];
        Self {
            net: net.with_first_layers(&x, m),
            x,
            m,
        }
    }
}

/// Rows per thread task for `m` rows.
fn task_rows(m: usize) -> usize {
    m.div_ceil(rayon::current_num_threads().max(1))
        .max(MIN_ROWS)
}

/// `x`'s rows `r0 .. r0 + rows` of a `[_, width]` matrix.
fn row_block(x: &[f32], width: usize, r0: usize, rows: usize) -> &[f32] {
    &x[r0 * width..(r0 + rows) * width]
}

/// Activations `a_1 … a_L` of every row of `x: [m, d_0]` (`a_L` the output).
pub(super) fn forward(net: &Net, x: &[f32], m: usize) -> Vec<Vec<f32>> {
    let widths = net.kept_widths();
    let mut acts: Vec<Vec<f32>> = widths.iter().map(|&w| buffer(m * w)).collect();
    let rows = task_rows(m);
    blocks(&mut acts, &widths, m, rows)
        .into_par_iter()
        .enumerate()
        .for_each(|(t, mut block)| {
            let (r0, mc) = (t * rows, rows.min(m - t * rows));
            if let Some(kinks) = &net.kinks {
                kinks.forward(row_block(x, 1, r0, mc), &mut *block[1], net.activates(1));
            }
            for l in net.first_product()..net.depth() {
                let (d_in, d_out) = (net.widths[l], net.widths[l + 1]);
                let (done, rest) = block.split_at_mut(l);
                let input: &[f32] = match l {
                    0 => row_block(x, d_in, r0, mc),
                    _ => done[l - 1],
                };
                let out = &mut *rest[0];
                // out[:, c0..c1] = input[:, lo..hi] · W[lo..hi, c0..c1] per tile (the tiles
                // cover every column), then the bias and the ReLU in one pass.
                if l == 0 && net.sparse_input {
                    sparse::product(input, &net.w[0], out, d_in);
                    add_bias(out, &net.b[l], net.activates(l));
                    continue;
                }
                for (i, t) in net.tiles(l).into_iter().enumerate() {
                    matmul(
                        (&mut out[t.c0..], d_out),
                        false,
                        Mat::rows(&input[t.lo..], d_in),
                        net.weight(l, i, t),
                        (mc, t.c1 - t.c0, t.hi - t.lo),
                        Parallelism::None,
                    );
                }
                add_bias(out, &net.b[l], net.activates(l));
            }
        });
    acts
}

/// The gradients of `x` (when `need_x`, else empty), then of each layer's weight and bias, from
/// `g = ∂ℒ/∂a_L: [m, d_L]` and the forward pass's activations `acts = a_1 … a_L`.
pub(super) fn backward(
    inputs: &Inputs,
    acts: &[Vec<f32>],
    g: &[f32],
    need_x: bool,
) -> Vec<Vec<f32>> {
    let (net, m) = (&inputs.net, inputs.m);
    let depth = net.depth();
    // ∂ℒ/∂z_l for every layer, then ∂ℒ/∂x: rows split over the threads, through every layer.
    let mut widths = net.kept_widths();
    if need_x {
        widths.push(net.widths[0]);
    }
    let mut bufs: Vec<Vec<f32>> = widths.iter().map(|&w| buffer(m * w)).collect();
    let rows = task_rows(m);
    blocks(&mut bufs, &widths, m, rows)
        .into_par_iter()
        .enumerate()
        .for_each(|(t, mut block)| {
            let d_last = net.widths[depth];
            let (r0, mc) = (t * rows, rows.min(m - t * rows));
            let act = |l: usize| row_block(&acts[l - 1], net.widths[l], r0, mc);
            block[depth - 1].copy_from_slice(row_block(g, d_last, r0, mc));
            if net.relu_last {
                relu_backward(block[depth - 1], act(depth));
            }
            // Down to ∂ℒ/∂z_1 through the kinks, else to ∂ℒ/∂x or ∂ℒ/∂z_0.
            let last = match (&net.kinks, need_x) {
                (Some(_), _) => 2,
                (None, true) => 0,
                (None, false) => 1,
            };
            for l in (last..depth).rev() {
                let (d_in, d_out) = (net.widths[l], net.widths[l + 1]);
                // Into ∂ℒ/∂z_{l−1}, or ∂ℒ/∂x (the last block) for l = 0.
                let into = if l == 0 { depth } else { l - 1 };
                let (lo, hi) = block.split_at_mut(into.max(l));
                let (dst, src): (&mut [f32], &[f32]) = if into < l {
                    (&mut *lo[into], &*hi[0])
                } else {
                    (&mut *hi[0], &*lo[l])
                };
                let tiled = net.masks[l].is_some();
                if !tiled && mc * (d_in + d_out) < d_in * d_out {
                    // dstᵀ = W · srcᵀ into a column-major buffer, then transposed: gemm packs
                    // (transposes) the operand that is not contiguous down the output's
                    // columns, here the block of src (mc × d_out) instead of all of W.
                    let mut dt = buffer(mc * d_in);
                    matmul(
                        (&mut dt, mc),
                        false,
                        net.weight(l, 0, net.tiles(l)[0]),
                        Mat::transposed(src, d_out),
                        (d_in, mc, d_out),
                        Parallelism::None,
                    );
                    transpose_into(dst, &dt, mc);
                    recycle([dt]);
                } else {
                    // dst[:, lo..hi] += src[:, c0..c1] · W[lo..hi, c0..c1]ᵀ per tile.
                    if tiled {
                        dst.fill(0.0);
                    }
                    for (i, t) in net.tiles(l).into_iter().enumerate() {
                        matmul(
                            (&mut dst[t.lo..], d_in),
                            tiled,
                            Mat::rows(&src[t.c0..], d_out),
                            net.weight_t(l, i, t),
                            (mc, t.hi - t.lo, t.c1 - t.c0),
                            Parallelism::None,
                        );
                    }
                }
                if l > 0 {
                    relu_backward(dst, act(l));
                }
            }
            if let (Some(kinks), true) = (&net.kinks, need_x) {
                let (head, dx) = block.split_at_mut(depth);
                kinks.input_gradient(row_block(&inputs.x, 1, r0, mc), head[1], dx[0]);
            }
        });
    let dx = match need_x {
        true => bufs.pop().expect("the input's gradient"),
        false => Vec::new(),
    };
    // ∂ℒ/∂W_l = a_lᵀ ∂ℒ/∂z_l over all rows, one product per block of W_l's rows, each
    // thread a block of every layer (an equal share of the work, in one parallel region);
    // ∂ℒ/∂b_l the column sums of ∂ℒ/∂z_l. The blocks are zeroed by their own threads, not
    // all of ∂ℒ/∂W (~1 M entries in vae-planar) by one thread while the others wait.
    // Through the kinks, the first two layers' gradients come from ∂ℒ/∂z_1 (`kinks`).
    let first = net.first_product();
    let kinked = net
        .kinks
        .as_ref()
        .map(|k| k.gradients(net.first_two(), &inputs.x, &bufs[1]));
    let sizes: Vec<usize> = (0..depth)
        .map(|l| match l < first {
            true => 0,
            false => net.widths[l] * net.widths[l + 1],
        })
        .collect();
    let mut dw: Vec<Vec<f32>> = sizes.iter().map(|&n| Vec::with_capacity(n)).collect();
    let mut db: Vec<Vec<f32>> = net.widths[1..].iter().map(|&d| vec![0.0; d]).collect();
    let threads = rayon::current_num_threads().max(1);
    let mut shares: Vec<Vec<_>> = (0..threads).map(|_| Vec::new()).collect();
    for (l, (w, b)) in dw.iter_mut().zip(&mut db).enumerate().skip(first) {
        let (d_in, d_out) = (net.widths[l], net.widths[l + 1]);
        let block = d_in.div_ceil(threads).max(MIN_ROWS);
        let mut bias = Some(b);
        let entries = &mut w.spare_capacity_mut()[..sizes[l]];
        for (i, rows) in entries.chunks_mut(block * d_out).enumerate() {
            shares[(i + l) % threads].push((l, i * block, rows, bias.take()));
        }
    }
    let tasks = shares
        .into_par_iter()
        .flat_map_iter(|share| share.into_iter());
    tasks.for_each(|(l, i0, dst, bias)| {
        let dst = zeroed(dst);
        let (d_in, d_out) = (net.widths[l], net.widths[l + 1]);
        let a: &[f32] = if l == 0 { &inputs.x } else { &acts[l - 1] };
        // dW[r0..r1, c0..c1] = a[:, r0..r1]ᵀ · ∂ℒ/∂z_l[:, c0..c1] for this block's rows
        // r0..r1 of every tile (zero outside the tiles).
        let i1 = i0 + dst.len() / d_out;
        if l == 0 && net.sparse_input {
            sparse::weight_gradient(a, &bufs[0], dst, d_in, i0);
        }
        let dense = !(l == 0 && net.sparse_input);
        for t in net.tiles(l).into_iter().filter(|_| dense) {
            let (r0, r1) = (t.lo.max(i0), t.hi.min(i1));
            if r0 >= r1 {
                continue;
            }
            matmul(
                (&mut dst[(r0 - i0) * d_out + t.c0..], d_out),
                false,
                Mat::transposed(&a[r0..], d_in),
                Mat::rows(&bufs[l][t.c0..], d_out),
                (r1 - r0, t.c1 - t.c0, m),
                Parallelism::None,
            );
            // Through the mask: ∂ℒ/∂W = M ⊙ ∂ℒ/∂(W ⊙ M).
            if let Some(mask) = &net.masks[l] {
                for r in r0..r1 {
                    let g = &mut dst[(r - i0) * d_out..][t.c0..t.c1];
                    apply_mask(g, mask.row_bits(t.c0 / TILE, r));
                }
            }
        }
        if let Some(b) = bias {
            column_sums(b, &bufs[l]);
        }
    });
    for (w, n) in dw.iter_mut().zip(sizes) {
        // SAFETY: the blocks, each zeroed by `zeroed`, cover the first `n` entries.
        unsafe { w.set_len(n) };
    }
    if let Some(g) = kinked {
        (dw[0], db[0], dw[1], db[1]) = (g.w0, g.b0, g.w1, g.b1);
    }
    recycle(bufs);
    let params = dw.into_iter().zip(db).flat_map(|(w, b)| [w, b]);
    std::iter::once(dx).chain(params).collect()
}
