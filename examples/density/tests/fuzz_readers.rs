//! Property tests of the table readers (CSV, NPY): valid tables written here in every
//! style the readers accept read back exactly; many mutations of them (truncation at every
//! length, flipped and random bytes, NPY shapes claiming huge sizes, huge, NaN and infinite
//! numbers, empty files) must not panic, must return quickly, must not allocate more than
//! the input can justify, and must load a consistent table or return the typed error
//! naming the file.
//!
//! `FUZZ_ITERS` sets the mutations per reader (default 2000, a few seconds in CI);
//! `FUZZ_SEED` varies the streams. A long campaign, once:
//! `FUZZ_ITERS=500000 cargo test --release -p density --test fuzz_readers -- --nocapture`.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
    panic::{AssertUnwindSafe, catch_unwind},
    path::PathBuf,
    time::{Duration, Instant},
};

use density::data::{self, DataError, Table};
use rand::{Rng, SeedableRng, rngs::StdRng};

// ---------------------------------------------------------------------------------------
// The harness (as in train-vae's `tests/fuzz_readers.rs`).

/// Counts the largest allocation request of each thread (libtest runs each test on its
/// own thread, so tests running side by side do not see each other's).
struct LargestAllocation;

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

#[global_allocator]
static ALLOCATOR: LargestAllocation = LargestAllocation;

/// Fixed costs independent of the input (error strings, a log line).
const FIXED_BYTES: usize = 64 << 10;
/// The slowest a reader may take on one of these (small) inputs, debug build included.
const TIME_LIMIT: Duration = Duration::from_secs(2);

fn iterations() -> usize {
    std::env::var("FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

fn rng(stream: u64) -> StdRng {
    let seed: u64 = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed);
    StdRng::seed_from_u64(seed.wrapping_mul(1_000_003).wrapping_add(stream))
}

fn show(input: &[u8]) -> String {
    let head = String::from_utf8_lossy(&input[..input.len().min(160)]);
    format!(
        "{} bytes: {head:?}{}",
        input.len(),
        if input.len() > 160 { "…" } else { "" }
    )
}

/// Tallies of one reader's campaign.
#[derive(Default)]
struct Tally {
    tried: usize,
    loaded: usize,
}

impl Tally {
    fn report(&self, reader: &str) {
        eprintln!(
            "{reader}: {} inputs, {} loaded, {} rejected with a typed error, 0 panics",
            self.tried,
            self.loaded,
            self.tried - self.loaded
        );
    }
}

/// Runs `read` on `input` under the harness's limits; `check` is the reader's own
/// property of the result.
fn run(
    tally: &mut Tally,
    reader: &str,
    input: &[u8],
    budget: usize,
    read: impl FnOnce() -> Result<Table, DataError>,
    check: impl FnOnce(&Result<Table, DataError>) -> Result<(), String>,
) {
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

/// The most one allocation may take: one `f64` (8 bytes, a growing vector doubling it) for
/// every two bytes of CSV, or for every four of NPY, and fixed costs.
fn budget(input: &[u8]) -> usize {
    16 * input.len() + FIXED_BYTES
}

/// A loaded table is whole rows of finite values; an error names the file.
fn consistent(r: &Result<Table, DataError>, name: &str) -> Result<(), String> {
    match r {
        Err(e) if !e.to_string().contains(name) => {
            Err(format!("the error `{e}` does not name the file {name}"))
        }
        Err(_) => Ok(()),
        Ok(t) if t.dim == 0 || t.values.is_empty() || t.values.len() % t.dim != 0 => Err(format!(
            "inconsistent table: {} values, dim {}",
            t.values.len(),
            t.dim
        )),
        Ok(t) if t.values.iter().any(|v| !v.is_finite()) => Err("non-finite value".into()),
        Ok(_) => Ok(()),
    }
}

// ---------------------------------------------------------------------------------------
// Mutations.

/// One random byte-level mutation of `seed`.
fn mutate_bytes(rng: &mut StdRng, seed: &[u8]) -> Vec<u8> {
    const INTERESTING_U32: [u32; 8] = [0, 1, 0xff, 0xffff, 0x7fff_ffff, 0x8000_0000, !1, !0];
    let mut b = seed.to_vec();
    for _ in 0..1 + rng.random_range(0..4) {
        match rng.random_range(0..8) {
            0 => b.truncate(rng.random_range(0..=b.len())),
            1 if !b.is_empty() => {
                for _ in 0..rng.random_range(1..=8) {
                    let i = rng.random_range(0..b.len());
                    b[i] ^= 1 << rng.random_range(0..8);
                }
            }
            2 if !b.is_empty() => {
                let i = rng.random_range(0..b.len());
                b[i] = [0, 0xff, 0x80, b'\n', b'"', b',', b';', b'('][rng.random_range(0..8)];
            }
            3 => {
                let i = rng.random_range(0..=b.len());
                let junk: Vec<u8> = (0..rng.random_range(1..=16))
                    .map(|_| rng.random())
                    .collect();
                b.splice(i..i, junk);
            }
            4 if !b.is_empty() => {
                let i = rng.random_range(0..b.len());
                let j = rng.random_range(i..=b.len().min(i + 64));
                b.drain(i..j);
            }
            5 if !b.is_empty() => {
                let i = rng.random_range(0..b.len());
                let j = rng.random_range(i..=b.len().min(i + 256));
                let copy = b[i..j].to_vec();
                let at = rng.random_range(0..=b.len());
                b.splice(at..at, copy);
            }
            6 if b.len() >= 4 => {
                // A 16- or 32-bit field near the start (the NPY header length) set to an
                // extreme.
                let i = rng.random_range(0..=(b.len() - 4).min(16));
                let v = INTERESTING_U32[rng.random_range(0..INTERESTING_U32.len())];
                b[i..i + 4].copy_from_slice(&v.to_le_bytes());
            }
            7 => b = (0..rng.random_range(0..64)).map(|_| rng.random()).collect(),
            _ => {}
        }
    }
    b
}

/// One random token-level mutation of `seed`: a cell replaced by a hostile number or by
/// one of `tokens`, separators, quotes and line breaks inserted, pieces dropped or
/// repeated; sometimes a byte-level one after.
fn mutate_text(rng: &mut StdRng, seed: &str, tokens: &[&str]) -> Vec<u8> {
    const HOSTILE: [&str; 22] = [
        "NaN",
        "nan",
        "inf",
        "-inf",
        "Infinity",
        "1e999",
        "-1e999",
        "1e-400",
        "-0",
        "",
        "x",
        "1.O",
        "18446744073709551616",
        "99999999999999999999999999999999999999999",
        "0x10",
        "\"1\"",
        "\"",
        "\"\"",
        "\u{feff}",
        "\r",
        "1,2",
        "1;2",
    ];
    let mut pieces = split_keep(seed);
    for _ in 0..1 + rng.random_range(0..3) {
        if pieces.is_empty() {
            pieces.push(String::new());
        }
        let i = rng.random_range(0..pieces.len());
        match rng.random_range(0..7) {
            0 => pieces[i] = HOSTILE[rng.random_range(0..HOSTILE.len())].to_string(),
            1 if !tokens.is_empty() => {
                pieces[i] = tokens[rng.random_range(0..tokens.len())].to_string();
            }
            2 => {
                let extra = [",", ";", "\t", "\n", " ", "\"", "\n\n", "(", ")", "'"];
                pieces.insert(i, extra[rng.random_range(0..extra.len())].to_string());
            }
            3 => {
                pieces.remove(i);
            }
            4 => {
                let j = rng.random_range(i..pieces.len().min(i + 40) + 1);
                let copy = pieces[i..j].to_vec();
                pieces.splice(i..i, copy);
            }
            5 => {
                let n = rng.random_range(1..2000);
                pieces[i] = match rng.random_range(0..3) {
                    0 => "9".repeat(n),
                    1 => ",".repeat(n),
                    _ => format!("0.{}1", "0".repeat(n)),
                };
            }
            _ => {}
        }
    }
    let text = pieces.concat().into_bytes();
    if rng.random_range(0..4) == 0 {
        mutate_bytes(rng, &text)
    } else {
        text
    }
}

/// `text` cut into runs of number characters and single other characters.
fn split_keep(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    for c in text.chars() {
        if c.is_alphanumeric() || matches!(c, '.' | '-' | '+' | '_' | '<') {
            word.push(c);
        } else {
            if !word.is_empty() {
                out.push(std::mem::take(&mut word));
            }
            out.push(c.to_string());
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

// ---------------------------------------------------------------------------------------
// Valid inputs: a random table, written in one of the styles the readers accept.

fn random_table(rng: &mut StdRng) -> Table {
    let dim = rng.random_range(1..6);
    let rows = rng.random_range(1..8);
    let values = (0..rows * dim)
        .map(|_| match rng.random_range(0..4) {
            0 => f64::from(rng.random_range(-1000..1000)),
            1 => rng.random::<f64>() * 1e-300,
            2 => (rng.random::<f64>() - 0.5) * 1e300,
            _ => rng.random::<f64>() * 10.0 - 5.0,
        })
        .collect();
    Table { values, dim }
}

/// A CSV text of `table`: separator, quoting, trailing separators, header, line endings,
/// blank lines and a byte-order mark drawn from `rng` (Display and `{:e}` of an `f64`
/// both read back exactly).
fn write_csv(table: &Table, rng: &mut StdRng) -> String {
    let sep = [",", ";", "\t", ", "][rng.random_range(0..4)];
    let quoted = rng.random_range(0..3) == 0;
    let trailing = rng.random_range(0..4) == 0;
    let eol = if rng.random() { "\n" } else { "\r\n" };
    let mut text = String::new();
    if rng.random_range(0..5) == 0 {
        text.push('\u{feff}');
    }
    let line = |cells: Vec<String>| {
        let mut l = cells.join(sep);
        if trailing {
            l.push_str(sep.trim_end());
        }
        l
    };
    if rng.random() {
        let names = (0..table.dim)
            .map(|j| {
                if quoted {
                    format!("\"x{j}\"")
                } else {
                    format!("x{j}")
                }
            })
            .collect();
        text += &(line(names) + eol);
    }
    for row in table.values.chunks(table.dim) {
        if rng.random_range(0..6) == 0 {
            text += eol;
        }
        let cells = row
            .iter()
            .map(|v| {
                let v = if rng.random() {
                    format!("{v}")
                } else {
                    format!("{v:e}")
                };
                if quoted { format!("\"{v}\"") } else { v }
            })
            .collect();
        text += &(line(cells) + eol);
    }
    text
}

fn npy(descr: &str, shape: &str, payload: &[u8], version: u8) -> Vec<u8> {
    let header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}\n");
    let mut bytes = b"\x93NUMPY".to_vec();
    bytes.extend([version, 0]);
    if version == 1 {
        bytes.extend((header.len() as u16).to_le_bytes());
    } else {
        bytes.extend((header.len() as u32).to_le_bytes());
    }
    bytes.extend(header.as_bytes());
    bytes.extend(payload);
    bytes
}

/// An NPY file of `table`, `<f8` or `<f4` (then `true`), format version 1, 2 or 3.
fn write_npy(table: &Table, rng: &mut StdRng) -> (Vec<u8>, bool) {
    let shape = format!("({}, {})", table.rows(), table.dim);
    let version = [1, 2, 3][rng.random_range(0..3)];
    if rng.random() {
        let payload: Vec<u8> = table.values.iter().flat_map(|v| v.to_le_bytes()).collect();
        (npy("<f8", &shape, &payload, version), false)
    } else {
        let payload: Vec<u8> = table
            .values
            .iter()
            .flat_map(|&v| (v as f32).to_le_bytes())
            .collect();
        (npy("<f4", &shape, &payload, version), true)
    }
}

fn tmp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("density-fuzz-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

// ---------------------------------------------------------------------------------------
// CSV.

#[test]
fn csv_tables_read_back_exactly_in_every_style() {
    let mut rng = rng(1);
    for _ in 0..iterations().div_ceil(4) {
        let table = random_table(&mut rng);
        let text = write_csv(&table, &mut rng);
        let got = data::parse_csv(&text, "t.csv").unwrap_or_else(|e| panic!("{e} on {text:?}"));
        assert_eq!(got, table, "{text:?}");
    }
}

#[test]
fn csv_survives_mutation() {
    let name = "fuzz.csv";
    let mut tally = Tally::default();
    let mut rng = rng(2);
    let seeds: Vec<String> = (0..16)
        .map(|_| {
            let t = random_table(&mut rng);
            write_csv(&t, &mut rng)
        })
        .collect();
    for seed in &seeds[..4] {
        let bytes = seed.as_bytes();
        for len in 0..=bytes.len() {
            let text = String::from_utf8_lossy(&bytes[..len]);
            run(
                &mut tally,
                "parse_csv",
                &bytes[..len],
                budget(bytes),
                || data::parse_csv(&text, name),
                |r| consistent(r, name),
            );
        }
    }
    let tokens = ["0", "1.5", "-2e-3", "x0", "\"3\"", "1e308", "-0.0"];
    for i in 0..iterations() {
        let input = mutate_text(&mut rng, &seeds[i % seeds.len()], &tokens);
        let text = String::from_utf8_lossy(&input);
        run(
            &mut tally,
            "parse_csv",
            &input,
            budget(&input),
            || data::parse_csv(&text, name),
            |r| {
                consistent(r, name)?;
                match r {
                    // Every row comes from its own non-blank line.
                    Ok(t) if t.rows() > text.lines().filter(|l| !l.trim().is_empty()).count() => {
                        Err("more rows than lines".into())
                    }
                    _ => Ok(()),
                }
            },
        );
    }
    tally.report("parse_csv");
}

#[test]
fn read_csv_survives_mutated_files() {
    let dir = tmp_dir("csv");
    let path = dir.join("t.csv");
    let name = path.display().to_string();
    let mut tally = Tally::default();
    let mut rng = rng(3);
    for _ in 0..iterations().div_ceil(10) {
        let t = random_table(&mut rng);
        let seed = write_csv(&t, &mut rng);
        let input = mutate_text(&mut rng, &seed, &["1", "nan"]);
        std::fs::write(&path, &input).unwrap();
        run(
            &mut tally,
            "read_csv",
            &input,
            budget(&input),
            || data::read_csv(&path),
            |r| consistent(r, &name),
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
    tally.report("read_csv");
}

// ---------------------------------------------------------------------------------------
// NPY.

#[test]
fn npy_tables_read_back_exactly() {
    let mut rng = rng(4);
    for _ in 0..iterations().div_ceil(4) {
        let mut table = random_table(&mut rng);
        let (bytes, f4) = write_npy(&table, &mut rng);
        if f4 {
            for v in &mut table.values {
                *v = f64::from(*v as f32);
            }
        }
        match data::parse_npy(&bytes, "t.npy") {
            Ok(got) => assert_eq!(got, table),
            // f32 overflows 1e300 to infinity: rejected, as it must be.
            Err(DataError::NonFinite { .. }) => {
                assert!(table.values.iter().any(|v| !v.is_finite()));
            }
            Err(e) => panic!("{e}"),
        }
    }
}

/// Shapes that overflow `rows · dim · width` or claim more than is there.
#[test]
fn npy_shapes_claiming_huge_sizes_are_rejected() {
    let mut tally = Tally::default();
    let payload = [0u8; 48];
    let huge = [
        "(18446744073709551615, 2)",
        "(2, 18446744073709551615)",
        "(4611686018427387904, 4)", // · 4 · 8 = 2⁶⁷: wrapped to 0 before the fix
        "(2305843009213693952, 1)", // · 1 · 8 = 2⁶⁴
        "(1152921504606846976, 2)",
        "(4294967296, 4294967296)",
        "(18446744073709551616, 2)",
        "(-1, 2)",
        "(0, 0)",
        "(0, 2)",
        "(6, 0)",
        "(6,)",
        "()",
        "(3, 2, 1)",
        "(3 2)",
        "((3, 2))",
        "(3, 2",
        "3, 2)",
        "(6, 1)",
    ];
    for shape in huge {
        for version in [1, 2] {
            let input = npy("<f8", shape, &[], version);
            for input in [input, npy("<f8", shape, &payload, version)] {
                run(
                    &mut tally,
                    "parse_npy (extreme shape)",
                    &input,
                    budget(&input),
                    || data::parse_npy(&input, "huge.npy"),
                    |r| consistent(r, "huge.npy"),
                );
            }
        }
    }
    // Before the fix: a debug build panicked (multiply overflow); a release build wrapped
    // to 0 and returned an empty table claiming 2⁶² rows.
    let e = data::parse_npy(&npy("<f8", "(4611686018427387904, 4)", &[], 1), "w.npy");
    assert!(matches!(e, Err(DataError::Npy { .. })), "{e:?}");
    // A header length claiming 4 GiB of header.
    let mut input = npy("<f8", "(1, 1)", &[0; 8], 2);
    input[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
    let e = data::parse_npy(&input, "h.npy").unwrap_err();
    assert!(e.to_string().contains("truncated header"), "{e}");
    tally.report("NPY extreme shapes");
}

#[test]
fn npy_survives_mutation() {
    let name = "fuzz.npy";
    let mut tally = Tally::default();
    let mut rng = rng(5);
    let seeds: Vec<Vec<u8>> = (0..8)
        .map(|_| {
            let t = random_table(&mut rng);
            write_npy(&t, &mut rng).0
        })
        .collect();
    for seed in &seeds[..2] {
        for len in 0..=seed.len() {
            let cut = &seed[..len];
            run(
                &mut tally,
                "parse_npy",
                cut,
                budget(cut),
                || data::parse_npy(cut, name),
                |r| consistent(r, name),
            );
        }
    }
    let tokens = [
        "<f8",
        "<f4",
        ">f8",
        "<i8",
        "True",
        "False",
        "descr",
        "shape",
        "fortran_order",
        "18446744073709551615",
        "4611686018427387904",
        "0",
    ];
    for i in 0..iterations() {
        let seed = &seeds[i % seeds.len()];
        let input = if rng.random() {
            mutate_bytes(&mut rng, seed)
        } else {
            // Mutate the header's text, then fix up its length field, so that the
            // mutation reaches the dictionary parser.
            let version = seed[6];
            let start = if version == 1 { 10 } else { 12 };
            let header_len = if version == 1 {
                u16::from_le_bytes([seed[8], seed[9]]) as usize
            } else {
                u32::from_le_bytes(seed[8..12].try_into().unwrap()) as usize
            };
            let header = std::str::from_utf8(&seed[start..start + header_len]).unwrap();
            let header = mutate_text(&mut rng, header, &tokens);
            let mut b = seed[..start].to_vec();
            if version == 1 {
                b[8..10].copy_from_slice(&(header.len().min(0xffff) as u16).to_le_bytes());
            } else {
                b[8..12].copy_from_slice(&(header.len() as u32).to_le_bytes());
            }
            b.extend(&header);
            b.extend(&seed[start + header_len..]);
            b
        };
        run(
            &mut tally,
            "parse_npy",
            &input,
            budget(&input),
            || data::parse_npy(&input, name),
            |r| consistent(r, name),
        );
    }
    tally.report("parse_npy");
}

#[test]
fn read_npy_survives_mutated_files() {
    let dir = tmp_dir("npy");
    let path = dir.join("t.npy");
    let name = path.display().to_string();
    let mut tally = Tally::default();
    let mut rng = rng(6);
    for _ in 0..iterations().div_ceil(10) {
        let t = random_table(&mut rng);
        let (seed, _) = write_npy(&t, &mut rng);
        let input = mutate_bytes(&mut rng, &seed);
        std::fs::write(&path, &input).unwrap();
        run(
            &mut tally,
            "read_npy",
            &input,
            budget(&input),
            || data::read_npy(&path),
            |r| consistent(r, &name),
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
    tally.report("read_npy");
}
