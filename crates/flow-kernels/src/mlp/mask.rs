//! A weight mask in the CPU kernel's layout, derived from the mask's values (the model's
//! data: MADE keeps its 0/1 masks) once per mask and cached here.

use std::{
    collections::HashMap,
    ops::Range,
    sync::{Arc, Mutex, PoisonError, Weak},
};

/// Column-block width of a [`WeightMask`]'s tiles.
pub(crate) const TILE: usize = 64;

/// What the kernel derives from a mask: per block of [`TILE`] columns the rows it reaches,
/// and its bits (bit `c` of `bits[j·d_in + r]` is `M[r, TILE·j + c] ≠ 0`: one 64-bit word
/// per row and block, 1/32 of the values' memory traffic).
type Layout = (Arc<[Range<usize>]>, Arc<[u64]>);

/// A fixed 0/1 mask `M` of a weight `W: [d_in, d_out]` as the CPU kernel applies it, block
/// by block: outside `tiles[j]`, the mask's `j`-th block of [`TILE`] columns (the last may
/// be narrower) is zero, and the kernel skips those rows. For MADE's masks under a natural
/// or reversed order that is about 45 % of each weight.
#[derive(Debug, Clone)]
pub(crate) struct WeightMask {
    /// The mask, row-major `[d_in, d_out]`.
    pub(crate) values: Arc<[f32]>,
    tiles: Arc<[Range<usize>]>,
    bits: Arc<[u64]>,
    d_in: usize,
}

impl WeightMask {
    /// The mask of a `[d_in, d_out]` weight whose entry `(i, o)` is kept iff `allowed(i, o)`.
    #[cfg(test)]
    pub(crate) fn new(d_in: usize, d_out: usize, allowed: impl Fn(usize, usize) -> bool) -> Self {
        let values: Arc<[f32]> = (0..d_in * d_out)
            .map(|e| f32::from(u8::from(allowed(e / d_out, e % d_out))))
            .collect();
        Self::derive(values, d_in, d_out)
    }

    /// The layout of `values` (`d_in · d_out` entries, nonzero = kept).
    fn derive(values: Arc<[f32]>, d_in: usize, d_out: usize) -> Self {
        let allowed = |i: usize, o: usize| values[i * d_out + o] != 0.0;
        let tiles = (0..d_out.div_ceil(TILE))
            .map(|j| {
                let cols = j * TILE..((j + 1) * TILE).min(d_out);
                let used = |i: usize| cols.clone().any(|o| allowed(i, o));
                match (0..d_in).position(used) {
                    Some(lo) => lo..d_in - (0..d_in).rev().position(used).unwrap_or(0),
                    None => 0..0,
                }
            })
            .collect();
        let bits = (0..d_out.div_ceil(TILE) * d_in)
            .map(|e| {
                let (j, i) = (e / d_in, e % d_in);
                let cols = j * TILE..((j + 1) * TILE).min(d_out);
                cols.enumerate()
                    .filter(|&(_, o)| allowed(i, o))
                    .fold(0, |b, (c, _)| b | 1 << c)
            })
            .collect();
        Self {
            values,
            tiles,
            bits,
            d_in,
        }
    }

    /// The mask `values` of a `[d_in, d_out]` weight in the kernel's layout, derived on its
    /// first use and cached for as long as the model holds `values` (keyed by the
    /// allocation, which the cache's weak reference keeps from being reused). `None` when
    /// the values do not have `d_in · d_out` entries.
    pub(crate) fn of(values: &Arc<[f32]>, d_in: usize, d_out: usize) -> Option<Self> {
        type Cache = HashMap<usize, (Weak<[f32]>, [usize; 2], Layout)>;
        static CACHE: Mutex<Option<Cache>> = Mutex::new(None);
        if values.len() != d_in * d_out {
            return None;
        }
        let key = Arc::as_ptr(values) as *const f32 as usize;
        let mut cache = CACHE.lock().unwrap_or_else(PoisonError::into_inner);
        let cache = cache.get_or_insert_with(HashMap::new);
        if let Some((_, shape, (tiles, bits))) = cache.get(&key)
            && *shape == [d_in, d_out]
        {
            return Some(Self {
                values: values.clone(),
                tiles: tiles.clone(),
                bits: bits.clone(),
                d_in,
            });
        }
        cache.retain(|_, (weak, _, _)| weak.strong_count() > 0);
        let mask = Self::derive(values.clone(), d_in, d_out);
        let layout = (mask.tiles.clone(), mask.bits.clone());
        let entry = (Arc::downgrade(values), [d_in, d_out], layout);
        cache.insert(key, entry);
        Some(mask)
    }

    /// Per block of [`TILE`] columns, the rows the mask reaches.
    pub(crate) fn tiles(&self) -> &[Range<usize>] {
        &self.tiles
    }

    /// The mask of row `r` in block `j` of [`TILE`] columns as bits (bit `c`: column
    /// `TILE·j + c`).
    pub(crate) fn row_bits(&self, j: usize, r: usize) -> u64 {
        self.bits[j * self.d_in + r]
    }
}

/// `ROW_OF[b][c]` is bit `c` of the byte `b` as `0.0` or `1.0`.
static ROW_OF: [[f32; 8]; 256] = {
    let mut table = [[0.0; 8]; 256];
    let mut b = 0;
    while b < 256 {
        let mut c = 0;
        while c < 8 {
            if b >> c & 1 == 1 {
                table[b][c] = 1.0;
            }
            c += 1;
        }
        b += 1;
    }
    table
};

/// Whether the mask bits of a tile row of `len` columns keep every column.
fn all_kept(bits: u64, len: usize) -> bool {
    bits == u64::MAX.checked_shr(u64::BITS - len as u32).unwrap_or(0)
}

/// `row[c] ← row[c] · M_c` for one row of a tile (at most [`TILE`] columns), `M_c` bit `c`
/// of `bits` (multiplied, as `W ⊙ M` is: a NaN times 0 stays NaN), eight columns per table
/// lookup; nothing to do where the row's mask is all ones.
pub(super) fn apply_mask(row: &mut [f32], bits: u64) {
    if all_kept(bits, row.len()) {
        return;
    }
    for (q, chunk) in row.chunks_mut(8).enumerate() {
        let m = &ROW_OF[(bits >> (8 * q) & 0xFF) as usize];
        chunk.iter_mut().zip(m).for_each(|(v, m)| *v *= m);
    }
}

/// Whether every entry the mask zeroes is zero already in these tile rows (`(row, bits)`,
/// bit `c` set where column `c` is kept), so that `W ⊙ M = W` there: `Σ |w|·(1 − M)` is
/// exactly 0 (a NaN or an infinity outside the mask makes it NaN: not zero, and the tile is
/// copied and masked as usual). Summed without early exit, which vectorizes.
pub(super) fn masked_out_is_zero<'a>(rows: impl Iterator<Item = (&'a [f32], u64)>) -> bool {
    let mut total = 0.0f32;
    for (row, bits) in rows {
        if all_kept(bits, row.len()) {
            continue;
        }
        for (q, chunk) in row.chunks(8).enumerate() {
            let m = &ROW_OF[(bits >> (8 * q) & 0xFF) as usize];
            total += chunk
                .iter()
                .zip(m)
                .map(|(w, m)| w.abs() * (1.0 - m))
                .sum::<f32>();
        }
    }
    total == 0.0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A mask's layout is derived once and shared while its values live; values of another
    /// allocation (equal or not) get their own.
    #[test]
    fn layouts_are_cached_per_allocation() {
        let values: Arc<[f32]> = vec![1.0, 0.0, 0.0, 1.0, 1.0, 1.0].into();
        let a = WeightMask::of(&values, 2, 3).unwrap();
        let b = WeightMask::of(&values, 2, 3).unwrap();
        assert!(Arc::ptr_eq(&a.bits, &b.bits) && Arc::ptr_eq(&a.tiles, &b.tiles));
        assert_eq!((a.tiles().len(), a.tiles()[0].clone()), (1, 0..2));
        assert_eq!(a.row_bits(0, 0), 0b001);
        assert_eq!(a.row_bits(0, 1), 0b111);
        let copy: Arc<[f32]> = values.to_vec().into();
        let c = WeightMask::of(&copy, 2, 3).unwrap();
        assert!(!Arc::ptr_eq(&a.bits, &c.bits));
        assert_eq!(c.row_bits(0, 0), 0b001);
        assert!(WeightMask::of(&values, 3, 3).is_none());
    }
}
