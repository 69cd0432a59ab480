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

use std::path::PathBuf;

use density::data::{self, DataError, Table};
use flow_testkit::{
    fuzz::{LargestAllocation, Tally, iterations, names_file, rng, run},
    mutate,
};
use rand::{Rng, rngs::StdRng};

#[global_allocator]
static ALLOCATOR: LargestAllocation = LargestAllocation;

/// The most one allocation may take: one `f64` (8 bytes, a growing vector doubling it) for
/// every two bytes of CSV, or for every four of NPY, and fixed costs.
fn budget(input: &[u8]) -> usize {
    // Fixed costs: error strings, a log line (no inflate state, unlike the IDX readers).
    16 * input.len() + (64 << 10)
}

/// A loaded table is whole rows of finite values; an error names the file.
fn consistent(r: &Result<Table, DataError>, name: &str) -> Result<(), String> {
    names_file(r, name)?;
    match r {
        Ok(t) if t.dim == 0 || t.values.is_empty() || t.values.len() % t.dim != 0 => Err(format!(
            "inconsistent table: {} values, dim {}",
            t.values.len(),
            t.dim
        )),
        Ok(t) if t.values.iter().any(|v| !v.is_finite()) => Err("non-finite value".into()),
        _ => Ok(()),
    }
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
        let input = mutate::text(&mut rng, &seeds[i % seeds.len()], &tokens);
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
        let input = mutate::text(&mut rng, &seed, &["1", "nan"]);
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
            mutate::bytes(&mut rng, seed)
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
            let header = mutate::text(&mut rng, header, &tokens);
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
        let input = mutate::bytes(&mut rng, &seed);
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
