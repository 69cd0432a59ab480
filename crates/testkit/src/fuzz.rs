//! The harness the file readers are fuzzed under: [`run`] calls a reader on one input and
//! fails, showing the input, when the reader panics, takes longer than [`TIME_LIMIT`], or
//! makes a single allocation above the caller's budget (a header's claimed size must be
//! checked against the bytes present before anything of that size is allocated).
//!
//! The allocation bound needs [`LargestAllocation`] as the test binary's global allocator:
//!
//! ```
//! use flow_testkit::fuzz::{self, LargestAllocation, Tally};
//!
//! #[global_allocator]
//! static ALLOCATOR: LargestAllocation = LargestAllocation;
//!
//! fn main() {
//!     let input = b"1,2\n3,4\n";
//!     let mut tally = Tally::default();
//!     let parse = || std::str::from_utf8(input).map(|t| t.lines().count());
//!     fuzz::run(&mut tally, "lines", input, fuzz::text_budget(input), parse, |_| Ok(()));
//!     assert_eq!(tally.loaded, 1);
//! }
//! ```
//!
//! `FUZZ_ITERS` sets the inputs per reader ([`iterations`], default 2000: seconds in CI);
//! `FUZZ_SEED` varies the streams ([`rng`]).

use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
    panic::{AssertUnwindSafe, catch_unwind},
    time::{Duration, Instant},
};

use rand::{SeedableRng, rngs::StdRng};

/// A global allocator that forwards to the system's and remembers the largest request of
/// each thread (libtest runs each test on its own thread, so tests side by side do not see
/// each other's).
pub struct LargestAllocation;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    // try_with: allocations during thread teardown, after the slot is gone, are ignored.
    let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
}

// SAFETY: every call is forwarded unchanged to the system allocator.
unsafe impl GlobalAlloc for LargestAllocation {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Fixed costs independent of the input, part of every budget: gzip's inflate state and
/// window, a read buffer, error strings.
pub const FIXED_BYTES: usize = 256 << 10;
/// The slowest a reader may take on one of these (small) inputs, debug build included.
pub const TIME_LIMIT: Duration = Duration::from_secs(2);

/// Inputs per reader: `FUZZ_ITERS`, default 2000.
pub fn iterations() -> usize {
    std::env::var("FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

/// The random stream `stream` of this campaign (`FUZZ_SEED` varies them all).
pub fn rng(stream: u64) -> StdRng {
    let seed: u64 = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed);
    StdRng::seed_from_u64(seed.wrapping_mul(1_000_003).wrapping_add(stream))
}

/// An input as a failure shows it: its start as text when it is text, else in hex.
pub fn show(input: &[u8]) -> String {
    let more = if input.len() > 160 { "…" } else { "" };
    match std::str::from_utf8(input) {
        Ok(text) => {
            let head: String = text.chars().take(160).collect();
            format!("{} bytes: {head:?}{more}", input.len())
        }
        Err(_) => {
            let head: Vec<String> = input.iter().take(96).map(|b| format!("{b:02x}")).collect();
            format!("{} bytes: {}{more}", input.len(), head.join(""))
        }
    }
}

/// Tallies of one reader's campaign.
#[derive(Debug, Default)]
pub struct Tally {
    /// Inputs tried.
    pub tried: usize,
    /// Inputs that loaded (the rest returned a typed error).
    pub loaded: usize,
}

impl Tally {
    /// One line on stderr (`--nocapture` shows it): the campaign's numbers.
    pub fn report(&self, reader: &str) {
        eprintln!(
            "{reader}: {} inputs, {} loaded, {} rejected with a typed error, 0 panics",
            self.tried,
            self.loaded,
            self.tried - self.loaded
        );
    }
}

/// Runs `read` on `input` under the harness's bounds. `budget`: the most one allocation
/// may take. `check`: the reader's own property of the result (a typed error naming the
/// file, or a consistent value).
pub fn run<T, E: std::fmt::Display>(
    tally: &mut Tally,
    reader: &str,
    input: &[u8],
    budget: usize,
    read: impl FnOnce() -> Result<T, E>,
    check: impl FnOnce(&Result<T, E>) -> Result<(), String>,
) {
    assert_measuring();
    LARGEST.with(|l| l.set(0));
    let start = Instant::now();
    let result = catch_unwind(AssertUnwindSafe(read));
    let elapsed = start.elapsed();
    let largest = LARGEST.with(Cell::get);
    let result = result.unwrap_or_else(|_| panic!("{reader} panicked on {}", show(input)));
    assert!(
        elapsed < TIME_LIMIT,
        "{reader} took {elapsed:?} on {}",
        show(input)
    );
    assert!(
        largest <= budget,
        "{reader} allocated {largest} bytes at once (budget {budget}) on {}",
        show(input)
    );
    if let Err(why) = check(&result) {
        panic!("{reader}: {why} on {}", show(input));
    }
    tally.tried += 1;
    tally.loaded += usize::from(result.is_ok());
}

/// Fails unless [`LargestAllocation`] is the global allocator: without it every
/// allocation bound would hold vacuously.
fn assert_measuring() {
    LARGEST.with(|l| l.set(0));
    let probe: Vec<u8> = Vec::with_capacity(4096);
    std::hint::black_box(&probe);
    assert!(
        LARGEST.with(Cell::get) >= 4096,
        "declare `#[global_allocator] static A: flow_testkit::fuzz::LargestAllocation` in \
         the test binary"
    );
}

/// A binary reader's budget: a copy of the input, a few times over, and fixed costs.
pub fn binary_budget(input: &[u8]) -> usize {
    4 * input.len() + FIXED_BYTES
}

/// A gzip reader's budget: deflate expands at most 1032:1, and a growing buffer may
/// double that.
pub fn gzip_budget(input: &[u8]) -> usize {
    2 * 1032 * input.len() + FIXED_BYTES
}

/// A text reader's budget: one parsed value (8 bytes, a growing vector doubling it) for
/// every two characters.
pub fn text_budget(input: &[u8]) -> usize {
    16 * input.len() + FIXED_BYTES
}

/// A check that an error names the file `name`.
pub fn names_file<T>(result: &Result<T, impl std::fmt::Display>, name: &str) -> Result<(), String> {
    match result {
        Err(e) if !e.to_string().contains(name) => {
            Err(format!("the error `{e}` does not name the file {name}"))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[global_allocator]
    static ALLOCATOR: LargestAllocation = LargestAllocation;

    /// The harness itself can fail: a reader that trusts a header claiming 1 GiB, and one
    /// that panics, are both caught.
    #[test]
    fn catches_header_trusting_and_panicking_readers() {
        let mut claims_1g = vec![0, 0, 8, 1];
        claims_1g.extend((1u32 << 30).to_be_bytes());
        claims_1g.extend([1, 2]);
        let trusting = |b: &[u8]| -> Result<Vec<u8>, String> {
            let n = u32::from_be_bytes([b[4], b[5], b[6], b[7]]) as usize;
            let mut v = Vec::with_capacity(n);
            v.extend_from_slice(&b[8..]);
            Ok(v)
        };
        let budget = binary_budget(&claims_1g);
        let caught = catch_unwind(AssertUnwindSafe(|| {
            run(
                &mut Tally::default(),
                "trusting",
                &claims_1g,
                budget,
                || trusting(&claims_1g),
                |_| Ok(()),
            )
        }));
        assert!(caught.is_err(), "a 1 GiB allocation went unnoticed");
        let caught = catch_unwind(AssertUnwindSafe(|| {
            run(
                &mut Tally::default(),
                "panicking",
                &claims_1g,
                budget,
                || -> Result<(), String> { panic!("index out of bounds") },
                |_| Ok(()),
            )
        }));
        assert!(caught.is_err());
        // And a well-behaved reader passes.
        let mut tally = Tally::default();
        run(
            &mut tally,
            "copy",
            &claims_1g,
            budget,
            || Ok::<_, String>(claims_1g.clone()),
            |_| Ok(()),
        );
        assert_eq!((tally.tried, tally.loaded), (1, 1));
    }
}
