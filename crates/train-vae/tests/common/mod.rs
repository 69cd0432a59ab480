//! What the binary's test files share: the binary, a tiny model, and how to run it.

#![allow(dead_code)] // each test file uses its own part

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use flow_programs::Choice;

pub const BIN: &str = env!("CARGO_BIN_EXE_train-vae");

/// A small model and data set (seconds per run, also on lavapipe).
pub const TINY: &[&str] = &[
    "--encoder-hidden",
    "32",
    "--decoder-hidden",
    "32",
    "--latent",
    "4",
    "--n-flows",
    "2",
    "--n-train",
    "256",
    "--n-valid",
    "64",
    "--batch-size",
    "64",
    "--iw-samples",
    "4",
    "--iw-rows",
    "256",
    "--grid",
    "4",
];

pub fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("train-vae-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The CPU backend the scenarios run on (`ndarray` where the build has it).
pub fn cpu() -> &'static str {
    Choice::available().last().expect("a backend").name()
}

/// burn's fused wgpu backend where this build has it and an adapter exists: the backend
/// whose tensors must never be used from two threads at once (burn-fusion 0.21).
pub fn fused_gpu() -> Option<&'static str> {
    Choice::testable()
        .into_iter()
        .map(Choice::name)
        .find(|n| *n == "wgpu")
}

/// Runs the binary on the CPU backend.
pub fn run(args: &[&str]) -> Output {
    run_on(cpu(), args)
}

pub fn run_on(backend: &str, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .args(["--backend", backend])
        .env("RUST_LOG", "warn")
        .output()
        .expect("the binary runs")
}

pub fn train(dir: &Path, extra: &[&str]) -> Output {
    train_on(cpu(), dir, extra)
}

pub fn train_on(backend: &str, dir: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["--out-dir", dir.to_str().unwrap()];
    args.extend_from_slice(TINY);
    args.extend_from_slice(extra);
    run_on(backend, &args)
}

pub fn ok(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "failed: {stderr}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs the binary and checks it failed with one `error:` line mentioning `needle`.
pub fn fails_with(args: &[&str], needle: &str) {
    let out = run(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} succeeded");
    assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
    let lines: Vec<_> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(
        lines.len() == 1 && lines[0].starts_with("error"),
        "{args:?}: expected one error line, got {stderr}"
    );
    assert!(
        lines[0].contains(needle),
        "{args:?}: `{needle}` not in `{}`",
        lines[0]
    );
}
