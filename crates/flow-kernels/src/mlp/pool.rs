//! Intermediate buffers of the CPU network kernels, pooled from call to call.

/// The most buffers [`recycle`] keeps, and the most entries all of them hold together
/// (256 MiB of `f32`): the pool keeps about one training step's working set, and a rare huge
/// batch does not stay resident after it.
const POOLED: usize = 64;
const POOLED_ENTRIES: usize = 64 << 20;

/// Intermediate buffers (activations, their gradients) given back after use, for the next
/// call to take instead of a fresh zero-filled allocation: every entry of one is written
/// before it is read, and zero-filling them showed in the profile of a realnvp `log_prob`
/// pass.
static POOL: std::sync::Mutex<Vec<Vec<f32>>> = std::sync::Mutex::new(Vec::new());

/// A buffer of `len` entries with arbitrary (finite or not) contents: the smallest pooled
/// one that fits, else a new one. The caller writes every entry before reading it.
pub(crate) fn buffer(len: usize) -> Vec<f32> {
    let taken = {
        let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
        let fits = pool.iter().enumerate().filter(|(_, v)| v.capacity() >= len);
        let best = fits.min_by_key(|(_, v)| v.capacity()).map(|(i, _)| i);
        best.map(|i| pool.swap_remove(i))
    };
    let mut v = taken.unwrap_or_default();
    v.resize(len, 0.0);
    v
}

/// Gives buffers back to the pool (within [`POOLED`] and [`POOLED_ENTRIES`]; the rest are
/// freed).
pub(crate) fn recycle(buffers: impl IntoIterator<Item = Vec<f32>>) {
    let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
    let mut held: usize = pool.iter().map(Vec::capacity).sum();
    for v in buffers {
        if pool.len() < POOLED && held + v.capacity() <= POOLED_ENTRIES {
            held += v.capacity();
            pool.push(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pool takes no buffer beyond its cap, and hands out buffers of the length asked.
    #[test]
    fn the_pool_is_capped() {
        recycle([vec![0.0; POOLED_ENTRIES + 1]]);
        let pool = POOL.lock().unwrap();
        assert!(pool.len() <= POOLED);
        assert!(pool.iter().map(Vec::capacity).sum::<usize>() <= POOLED_ENTRIES);
        drop(pool);
        assert_eq!(buffer(37).len(), 37);
    }
}
