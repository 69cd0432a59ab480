//! The density program as a user runs it: fits, saved models, and one-line errors for bad
//! input (never a panic). The scenarios run on the build's CPU backend (`--backend`); the
//! fit-save-eval round trip runs on every backend of the build (CI's wgpu is a ~100×
//! slower software driver, so only that short one).

use std::{path::Path, process::Command};

use flow_programs::Choice;

/// The CPU backend the scenarios run on (`ndarray` where the build has it).
fn cpu() -> &'static str {
    Choice::available().last().expect("a backend").name()
}

/// Runs the binary on the CPU backend.
fn density(args: &[&str]) -> (bool, String, String) {
    density_on(cpu(), args)
}

fn density_on(backend: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_density"))
        .args(args)
        .args(["--backend", backend])
        .env("RUST_LOG", "warn")
        .output()
        .expect("the binary runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn tmp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("density-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A bad input fails with exit status ≠ 0 and one `error:` line naming the problem (clap
/// adds a "try --help" hint to its own errors).
fn assert_fails(args: &[&str], needle: &str) {
    assert_fails_on(cpu(), args, needle);
}

fn assert_fails_on(backend: &str, args: &[&str], needle: &str) {
    let (ok, _, err) = density_on(backend, args);
    assert!(!ok, "{args:?} succeeded");
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("For more information"))
        .collect();
    assert_eq!(lines.len(), 1, "one line expected, got: {err}");
    assert!(
        lines[0].starts_with("error: ") && lines[0].contains(needle),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

fn write_csv(path: &Path, rows: usize, cols: usize) {
    let mut text = (0..cols)
        .map(|j| format!("c{j}"))
        .collect::<Vec<_>>()
        .join(",")
        + "\n";
    for i in 0..rows {
        let row: Vec<String> = (0..cols)
            .map(|j| format!("{}", ((i * 7 + j * 3) % 11) as f64 * 0.3 + j as f64))
            .collect();
        text += &(row.join(",") + "\n");
    }
    std::fs::write(path, text).unwrap();
}

#[test]
fn bad_tables_get_one_line_errors() {
    let dir = tmp("bad");
    let ragged = dir.join("ragged.csv");
    std::fs::write(&ragged, "a,b\n1,2\n3\n").unwrap();
    assert_fails(&["--data", ragged.to_str().unwrap()], "line 3 has 1 cells");
    let text = dir.join("text.csv");
    std::fs::write(&text, "1,2\n3,x\n").unwrap();
    assert_fails(&["--data", text.to_str().unwrap()], "\"x\" is not a number");
    let nan = dir.join("nan.csv");
    std::fs::write(&nan, "1,2\n3,NaN\n5,6\n").unwrap();
    assert_fails(&["--data", nan.to_str().unwrap()], "row 2, column 2 is NaN");
    let npy = dir.join("short.npy");
    let header = "{'descr': '<f8', 'fortran_order': False, 'shape': (4, 2), }";
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(&[0u8; 16]); // 2 of 8 values
    std::fs::write(&npy, bytes).unwrap();
    assert_fails(&["--data", npy.to_str().unwrap()], "payload has 16 bytes");
    assert_fails(
        &["--data", dir.join("missing.csv").to_str().unwrap()],
        "cannot read",
    );
    assert_fails(&["--data", "nine-gaussians"], "neither a toy data set");
    assert_fails(
        &["--data", "8gaussians", "--lr=-1"],
        "not a positive learning rate",
    );
    assert_fails_on(
        "tpu",
        &["--data", "8gaussians"],
        "backend `tpu` is not in this build",
    );
}

/// Fit a table, save, evaluate the saved model, and reject a table of another width: on
/// every backend of the build (the others with the smallest model: each new kernel costs
/// seconds to compile on CI's software Vulkan).
#[test]
fn fit_save_eval_and_dimension_mismatch() {
    for choice in Choice::available() {
        fit_save_eval_on(choice.name());
    }
}

fn fit_save_eval_on(backend: &str) {
    let dir = tmp(&format!("fit-{backend}"));
    let csv = dir.join("three.csv");
    write_csv(&csv, 100, 3);
    let out = dir.join("run");
    let model: &[&str] = if backend == cpu() {
        &[
            "--layers",
            "2",
            "--steps",
            "8",
            "--eval-every",
            "4",
            "--batchnorm",
            "--lu",
        ]
    } else {
        &["--layers", "1", "--steps", "2", "--eval-every", "2"]
    };
    let mut args = vec![
        "--data",
        csv.to_str().unwrap(),
        "--flow",
        "maf",
        "--hidden",
        "16",
        "--batch",
        "32",
        "--out-dir",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(model);
    let (ok, stdout, err) = density_on(backend, &args);
    assert!(ok, "{err}");
    assert!(stdout.contains("| three |"), "{stdout}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["backend"], backend);
    for file in ["summary.json", "metrics.csv", "model.mpk", "model.json"] {
        assert!(out.join(file).exists(), "{file} missing");
    }
    let (ok, stdout, err) = density_on(
        backend,
        &[
            "eval",
            "--model",
            out.to_str().unwrap(),
            "--data",
            csv.to_str().unwrap(),
        ],
    );
    assert!(ok, "{err}");
    let ll: f64 = stdout
        .split_whitespace()
        .nth(2)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no log-likelihood in {stdout:?}"));
    assert!(ll.is_finite(), "{stdout}");
    let two = dir.join("two.csv");
    write_csv(&two, 20, 2);
    assert_fails(
        &[
            "eval",
            "--model",
            out.to_str().unwrap(),
            "--data",
            two.to_str().unwrap(),
        ],
        "has 2 columns, the model",
    );
}

/// A short fit of 8 Gaussians must beat the best single Gaussian by a margin: N(0, σ²I)
/// fitted to this mixture has test log-likelihood ≈ −4.25 nats (the mixture's own is
/// −2.84).
#[test]
fn toy_fit_learns_the_mixture_and_draws_it() {
    let dir = tmp("toy");
    let (ok, _, err) = density(&[
        "--data",
        "8gaussians",
        "--layers",
        "2",
        "--hidden",
        "32",
        "--steps",
        "120",
        "--batch",
        "128",
        "--eval-every",
        "120",
        "--lr",
        "3e-3",
        "--n-test",
        "500",
        "--plot-samples",
        "500",
        "--resolution",
        "24",
        "--out-dir",
        dir.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    let ll = summary["test_log_likelihood"].as_f64().unwrap();
    assert!(ll > -3.8, "test log-likelihood {ll}");
    assert!(dir.join("density.png").exists());
}
