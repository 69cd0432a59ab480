//! Faults around a training run, as a user meets them: a resume that would change the
//! run, files that cannot be written (a full disk, injected through the writers' own code
//! path with `FLOW_FAULT_DISK_BYTES`; a directory in the way; no permission, as `nobody`
//! when the tests run as root), damaged checkpoints, a run stopped in its first epoch, two
//! processes on one run directory, Ctrl-C, and a path that is not UTF-8. Each ends in a
//! clear error or a clean recovery, never a panic, a silent success or a lost checkpoint.

use std::{
    path::Path,
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use flow_programs::files::FAULT_DISK_BYTES;
use flow_testkit::Running;
use train_vae::{checkpoint, history};

mod common;

use common::*;

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The run failed (non-zero, no panic) with an `error:` line holding every needle.
fn failed_with(out: &Output, needles: &[&str]) -> String {
    let err = stderr(out);
    assert!(!out.status.success(), "succeeded: {err}");
    assert!(!err.contains("panicked"), "panicked: {err}");
    let line = err
        .lines()
        .find(|l| l.starts_with("error"))
        .unwrap_or_else(|| panic!("no error line: {err}"))
        .to_string();
    for n in needles {
        assert!(line.contains(n), "`{n}` not in `{line}`");
    }
    line
}

fn files_named(dir: &Path, part: &str) -> Vec<String> {
    walk(dir).into_iter().filter(|n| n.contains(part)).collect()
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p.display().to_string());
        }
    }
    out
}

fn resume(dir: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["--resume", dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    run(&args)
}

#[test]
fn a_resume_cannot_change_the_run() {
    let dir = temp("resume-flags");
    ok(&train(&dir, &["--epochs", "1"]));
    let config = std::fs::read(dir.join("config.toml")).unwrap();
    let d = dir.to_str().unwrap();
    for (flags, flag) in [
        (&["--latent", "16"][..], "--latent"),
        (&["--flow", "radial"], "--flow"),
        (&["--n-flows", "3"], "--n-flows"),
        (&["--seed", "5"], "--seed"),
        (&["--n-valid", "32"], "--n-valid"),
        (&["--optimizer", "adamax"], "--optimizer"),
    ] {
        let mut args = vec!["--resume", d, "--epochs", "2"];
        args.extend_from_slice(flags);
        fails_with(&args, flag);
        // Nothing was written: the run is as it was.
        assert_eq!(std::fs::read(dir.join("config.toml")).unwrap(), config);
    }
    // The budget and the schedule may change, and the run goes on.
    ok(&resume(&dir, &["--epochs", "2", "--lr", "0.0005"]));
    assert_eq!(history::read_history(&dir).unwrap().len(), 2);
    ok(&run(&[
        "sample",
        "--checkpoint",
        d,
        "--out",
        &format!("{d}/s.png"),
    ]));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_full_disk_stops_the_run_with_the_file_and_the_reason() {
    let dir = temp("full-disk");
    ok(&train(&dir, &["--epochs", "1"]));
    // On resume the run rewrites its config and records before training: room for those
    // and a few bytes more, so the first checkpoint of epoch 2 fills the disk.
    let before: u64 = ["config.toml", "metrics.jsonl", "metrics.csv", "curves.png"]
        .iter()
        .map(|f| std::fs::metadata(dir.join(f)).unwrap().len())
        .sum();
    let out = Command::new(BIN)
        .args(["--resume", dir.to_str().unwrap(), "--epochs", "3"])
        .args(["--backend", cpu()])
        .env("RUST_LOG", "warn")
        .env(FAULT_DISK_BYTES, (before + 64).to_string())
        .output()
        .unwrap();
    let good = checkpoint::file(&dir, "model", 1);
    failed_with(
        &out,
        &[
            "No space left on device",
            "last complete checkpoint is",
            &good.display().to_string(),
        ],
    );
    assert!(
        files_named(&dir, "-partial-").is_empty(),
        "{:?}",
        walk(&dir)
    );
    assert_eq!(checkpoint::complete_epochs(&dir), vec![1]);
    checkpoint::verify::<burn::backend::NdArray>(&good).unwrap();
    // With room again, the run resumes from the good epoch and finishes.
    ok(&resume(&dir, &["--epochs", "2"]));
    assert_eq!(history::read_history(&dir).unwrap().len(), 2);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_output_directory_that_cannot_be_made_is_named() {
    let dir = temp("not-a-dir");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("file");
    std::fs::write(&file, b"").unwrap();
    let out = train(&file.join("run"), &["--epochs", "1"]);
    failed_with(&out, &["file/run", "Not a directory"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_checkpoint_that_cannot_be_written_stops_the_run() {
    let dir = temp("blocked");
    // A directory where epoch 2's optimizer state goes.
    std::fs::create_dir_all(checkpoint::file(&dir, "optim", 2).join("x")).unwrap();
    let out = train(&dir, &["--epochs", "4"]);
    failed_with(
        &out,
        &[
            "optim-2.mpk",
            "Is a directory",
            "last complete checkpoint is",
        ],
    );
    assert!(history::read_history(&dir).unwrap().len() < 4);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn damaged_checkpoints_are_detected() {
    let dir = temp("damaged");
    ok(&train(&dir, &["--epochs", "2", "--patience", "0"]));
    let d = dir.to_str().unwrap();
    // Flipped bytes in the middle of a model: eval refuses it instead of a wrong NLL.
    let model = checkpoint::file(&dir, "model", 2);
    let good = std::fs::read(&model).unwrap();
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    for b in &mut bad[mid..mid + 40] {
        *b ^= 0x5a;
    }
    std::fs::write(&model, &bad).unwrap();
    let m = model.to_str().unwrap();
    fails_with(&["sample", "--checkpoint", m], "checksum mismatch");
    std::fs::write(&model, &good).unwrap();
    // A truncated optimizer state: resume falls back to epoch 1 and says so.
    let optim = checkpoint::file(&dir, "optim", 2);
    let len = std::fs::metadata(&optim).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&optim)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let out = resume(&dir, &["--epochs", "3"]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("optim-2.mpk") && err.contains("truncated"),
        "{err}"
    );
    assert!(err.contains("resuming from epoch 1"), "{err}");
    assert_eq!(history::read_history(&dir).unwrap().len(), 3);
    // Every file damaged: the run starts afresh, and says so.
    for e in checkpoint::complete_epochs(&dir) {
        std::fs::write(checkpoint::file(&dir, "model", e), b"FLOWCKP1 short").unwrap();
    }
    let out = resume(&dir, &["--epochs", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("starting it from epoch 1"));
    assert_eq!(history::read_history(&dir).unwrap().len(), 1);
    let _ = d;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_run_stopped_in_its_first_epoch_starts_afresh() {
    let dir = temp("first-epoch");
    ok(&train(&dir, &["--epochs", "1"]));
    // What a kill in epoch 1 leaves: the config, the model description, a partial file.
    for f in ["metrics.jsonl", "metrics.csv", "curves.png"] {
        std::fs::remove_file(dir.join(f)).unwrap();
    }
    for name in ["model", "optim", "scheduler"] {
        std::fs::remove_file(checkpoint::file(&dir, name, 1)).unwrap();
    }
    std::fs::write(dir.join(".metrics.csv-partial-1"), b"epoch,").unwrap();
    std::fs::write(checkpoint::dir(&dir).join(".model-1-partial-1.mpk"), b"F").unwrap();
    // Started again with its flags, or resumed: both train it from epoch 1.
    let out = train(&dir, &["--epochs", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("starting it afresh"),
        "{}",
        stderr(&out)
    );
    assert!(
        files_named(&dir, "-partial-").is_empty(),
        "{:?}",
        walk(&dir)
    );
    std::fs::remove_file(dir.join("metrics.jsonl")).unwrap();
    for name in ["model", "optim", "scheduler"] {
        std::fs::remove_file(checkpoint::file(&dir, name, 1)).unwrap();
    }
    let out = resume(&dir, &["--epochs", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("starting it from epoch 1"));
    assert_eq!(history::read_history(&dir).unwrap().len(), 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Starts a long training run in `dir` and waits for its first checkpoint.
fn long_run(dir: &Path) -> Running {
    let mut args = vec!["--out-dir", dir.to_str().unwrap()];
    args.extend_from_slice(TINY);
    args.extend_from_slice(&["--epochs", "100000", "--patience", "0", "--backend", cpu()]);
    let mut child = Running::new(
        Command::new(BIN)
            .args(&args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let start = Instant::now();
    while checkpoint::complete_epochs(dir).is_empty() {
        assert!(
            child.child().try_wait().unwrap().is_none(),
            "the run stopped"
        );
        assert!(start.elapsed() < Duration::from_secs(300), "no progress");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

#[test]
fn one_run_directory_holds_one_process() {
    let dir = temp("locked");
    let first = long_run(&dir);
    let out = train(&dir, &["--epochs", "1"]);
    failed_with(&out, &["in use by another train-vae process"]);
    let out = resume(&dir, &["--epochs", "1"]);
    failed_with(&out, &["in use by another train-vae process"]);
    // A killed process releases its lock with it.
    drop(first);
    let done = *checkpoint::complete_epochs(&dir).last().unwrap();
    ok(&resume(&dir, &["--epochs", &(done + 1).to_string()]));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[cfg(unix)]
#[test]
fn ctrl_c_stops_after_the_step_keeps_the_checkpoint_and_exits_non_zero() {
    let dir = temp("sigint");
    let mut child = long_run(&dir);
    let status = Command::new("kill")
        .args(["-INT", &child.child().id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output();
    failed_with(
        &out,
        &["interrupted", "--resume", "last complete checkpoint is"],
    );
    let done = *checkpoint::complete_epochs(&dir).last().unwrap();
    for e in checkpoint::complete_epochs(&dir) {
        checkpoint::verify::<burn::backend::NdArray>(&checkpoint::file(&dir, "model", e)).unwrap();
    }
    ok(&resume(&dir, &["--epochs", &(done + 1).to_string()]));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[cfg(unix)]
#[test]
fn a_path_that_is_not_utf8_is_refused() {
    use std::os::unix::ffi::OsStrExt;
    let name = std::ffi::OsStr::from_bytes(b"/tmp/train-vae-\xff\xfe-run");
    let _ = std::fs::remove_dir_all(name); // left by a build that predates the check
    let out = Command::new(BIN)
        .arg("--out-dir")
        .arg(name)
        .args(TINY)
        .args(["--epochs", "1", "--backend", cpu()])
        .output()
        .unwrap();
    failed_with(&out, &["--out-dir", "not valid UTF-8"]);
    assert!(!Path::new(name).exists());
}

#[test]
fn a_partial_model_table_takes_the_defaults() {
    let c = train_vae::config::TrainConfig::from_toml_str(
        "epochs = 3\n[model]\nlatent = 8\nflow = \"iaf\"\n",
        Path::new("partial.toml"),
    )
    .unwrap();
    let d = train_vae::config::TrainConfig::default();
    assert_eq!((c.epochs, c.model.latent), (3, 8));
    assert_eq!(c.model.encoder_hidden, d.model.encoder_hidden);
    assert_eq!(c.model.iaf_hidden, d.model.iaf_hidden);
}

#[test]
fn a_checkpoint_read_as_another_model_is_refused() {
    let dir = temp("other-model");
    ok(&train(&dir, &["--epochs", "1", "--flow", "iaf"])); // TINY has --n-flows 2
    let config = std::fs::read_to_string(dir.join("config.toml")).unwrap();
    // Shapes that differ (depth, width) and shapes that coincide (no flow at all has
    // fewer parameters; a radial reading of the same run has other ones).
    for (from, to) in [
        ("n_flows = 2", "n_flows = 3"),
        ("iaf_hidden = 320", "iaf_hidden = 64"),
        ("flow = \"iaf\"", "flow = \"none\""),
        ("flow = \"iaf\"", "flow = \"radial\""),
    ] {
        assert!(config.contains(from), "{from} not in {config}");
        let other = dir.with_extension("other.toml");
        std::fs::write(&other, config.replacen(from, to, 1)).unwrap();
        fails_with(
            &[
                "sample",
                "--checkpoint",
                dir.to_str().unwrap(),
                "--config",
                other.to_str().unwrap(),
                "--out",
                dir.join("s.png").to_str().unwrap(),
            ],
            "written by another model",
        );
        std::fs::remove_file(other).unwrap();
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn messages_carry_no_colour_codes_off_a_terminal() {
    let dir = temp("colour");
    let out = train(&dir, &["--epochs", "1"]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains('\u{1b}'), "escape codes in {err:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A machine without a Vulkan driver (the loader pointed at none): `--backend wgpu` says
/// so in one line instead of panicking inside cubecl.
#[cfg(feature = "wgpu")]
#[test]
fn wgpu_without_a_driver_says_what_to_install() {
    let out = Command::new(BIN)
        .args(["--backend", "wgpu", "--epochs", "1"])
        .env("VK_DRIVER_FILES", "/nonexistent/icd.json")
        .env("VK_ICD_FILENAMES", "/nonexistent/icd.json")
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(!out.status.success() && !err.contains("panicked"), "{err}");
    let lines: Vec<_> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].contains("no Vulkan GPU adapter found")
            && lines[0].contains("mesa-vulkan-drivers")
            && lines[0].contains("--backend ndarray"),
        "{err}"
    );
}

/// A command that runs `bin` without root's power over permissions: as `nobody` through
/// `setpriv` when the tests run as root (CI does), as is otherwise; `None` (with a line on
/// stderr) where root cannot drop its rights. The binary is copied where `nobody` can run
/// it (the build directory may sit under a private home).
#[cfg(unix)]
fn unprivileged(bin: &Path, scratch: &Path) -> Option<Command> {
    use std::os::unix::fs::PermissionsExt;
    let copy = scratch.join("train-vae");
    std::fs::copy(bin, &copy).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    let root = Command::new("id").arg("-u").output().unwrap().stdout == b"0\n";
    if !root {
        return Some(Command::new(copy));
    }
    let drop_rights = ["--reuid=65534", "--regid=65534", "--clear-groups"];
    let works = Command::new("setpriv")
        .args(drop_rights)
        .arg(&copy)
        .arg("--help")
        .output()
        .is_ok_and(|o| o.status.success());
    if !works {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "skipped: the permission test (root here, and `setpriv` cannot run as nobody)"
        );
        return None;
    }
    let mut c = Command::new("setpriv");
    c.args(drop_rights).arg(&copy);
    Some(c)
}

#[cfg(unix)]
#[test]
fn permission_denied_is_named_and_the_checkpoint_kept() {
    use std::os::unix::fs::PermissionsExt;
    let mode =
        |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    let scratch = temp("eacces");
    std::fs::create_dir_all(&scratch).unwrap();
    mode(&scratch, 0o755);
    let Some(mut as_user) = unprivileged(Path::new(BIN), &scratch) else {
        return;
    };
    // A run directory that cannot be created.
    let out = as_user
        .arg("--out-dir")
        .arg(scratch.join("locked-out/run"))
        .args(TINY)
        .args(["--epochs", "1", "--backend", cpu()])
        .output()
        .unwrap();
    failed_with(&out, &["Permission denied"]);
    // A run whose checkpoint directory became read-only: resuming it stops at the first
    // checkpoint with the file and the reason, and epoch 1 stays.
    let run = scratch.join("run");
    ok(&train(&run, &["--epochs", "1"]));
    for entry in walk(&run) {
        mode(Path::new(&entry), 0o666);
    }
    mode(&run, 0o777);
    mode(&checkpoint::dir(&run), 0o555);
    let out = unprivileged(Path::new(BIN), &scratch)
        .expect("it ran above")
        .args(["--resume", run.to_str().unwrap(), "--epochs", "3"])
        .args(["--backend", cpu()])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    failed_with(
        &out,
        &[
            "Permission denied",
            "checkpoint",
            "last complete checkpoint is",
            &checkpoint::file(&run, "model", 1).display().to_string(),
        ],
    );
    assert_eq!(checkpoint::complete_epochs(&run), vec![1]);
    mode(&checkpoint::dir(&run), 0o755);
    std::fs::remove_dir_all(&scratch).unwrap();
}
