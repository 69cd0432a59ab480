//! What the density program's integration tests share: running the binary, scratch
//! directories, one-line error checks, small CSV tables.

#![allow(dead_code)]

use std::{path::Path, process::Command};

use flow_programs::Choice;

/// The CPU backend the scenarios run on (`ndarray` where the build has it).
pub fn cpu() -> &'static str {
    Choice::available().last().expect("a backend").name()
}

/// Runs the binary on the CPU backend.
pub fn density(args: &[&str]) -> (bool, String, String) {
    density_on(cpu(), args)
}

pub fn density_on(backend: &str, args: &[&str]) -> (bool, String, String) {
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

pub fn tmp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("density-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A bad input fails with exit status ≠ 0 and one `error:` line naming the problem (clap
/// adds a "try --help" hint to its own errors).
pub fn assert_fails(args: &[&str], needle: &str) {
    assert_fails_on(cpu(), args, needle);
}

pub fn assert_fails_on(backend: &str, args: &[&str], needle: &str) {
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

pub fn write_csv(path: &Path, rows: usize, cols: usize) {
    let mut text = (0..cols)
        .map(|j| format!("c{j}"))
        .collect::<Vec<_>>()
        .join(",")
        + "\n";
    for i in 0..rows {
        let row: Vec<String> = (0..cols)
            .map(|j| {
                let v = ((i * 7 + j * 3) % 11) as f64 * 0.3 + j as f64 + i as f64 * 1e-3;
                format!("{v}")
            })
            .collect();
        text += &(row.join(",") + "\n");
    }
    std::fs::write(path, text).unwrap();
}
