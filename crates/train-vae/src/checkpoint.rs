//! Checkpoint files: atomic, checksummed writes, discovery of complete epochs, checked
//! loading.
//!
//! burn-train's `FileCheckpointer` writes through burn's file recorders, which delete the
//! old file, stream into the final name and drop write errors on the buffer's last flush:
//! a kill mid-write leaves a truncated checkpoint, a full disk a silently short one.
//! [`CheckpointRecorder`] serializes the record in memory (burn's named MessagePack, the
//! bytes `NamedMpkFileRecorder` writes), frames it with a length and a CRC-32, writes it
//! to a hidden temporary file in the same directory, `fsync`s and renames it over the
//! final name, so a reader sees the old file or the new one, never a mix, and damage
//! (truncation, flipped bytes) is detected at load ([`verify`]). A failed write removes
//! its temporary file and is kept in a [`FirstFailure`] the training loop reports.
//!
//! The frame is [`flow_programs::files::frame`]'s. Files written before the frame existed
//! (a MessagePack map, which never starts with its magic's `F`) still load; they are
//! checked by parsing them whole.

use std::path::{Path, PathBuf};

use burn::{
    module::Module,
    record::{FileRecorder, FullPrecisionSettings, NamedMpkBytesRecorder, Recorder, RecorderError},
    tensor::backend::Backend,
};
use serde::{Serialize, de::DeserializeOwned};

use flow_programs::files::{frame, unframe};

use crate::{
    error::{FirstFailure, VaeError},
    handoff::Handoff,
    model::{ModelConfig, Vae},
};

/// The recorder train-vae uses: named MessagePack, full precision (exact resume), framed
/// with a checksum and written atomically.
#[derive(Debug, Default, Clone)]
pub struct CheckpointRecorder {
    failure: FirstFailure,
    handoff: Handoff,
}

impl CheckpointRecorder {
    /// A recorder that also keeps its first write failure in `failure` (burn-train runs
    /// it on threads whose errors only stop the loop) and reports each file it finishes,
    /// written or not, to `handoff`.
    pub fn reporting_to(failure: FirstFailure, handoff: Handoff) -> Self {
        Self { failure, handoff }
    }
}

/// Extension of checkpoint files.
pub const EXTENSION: &str = "mpk";

type Bytes = NamedMpkBytesRecorder<FullPrecisionSettings>;

/// The record bytes of a checkpoint file, read once and checked against its frame
/// (length and CRC-32); `framed` is false for a file written before the frame existed,
/// returned whole and unchecked.
fn read_payload(path: &Path) -> Result<(Vec<u8>, bool), VaeError> {
    let mut bytes = std::fs::read(path).map_err(VaeError::io(path))?;
    let header = match unframe(&bytes) {
        Ok(Some(payload)) => bytes.len() - payload.len(),
        Ok(None) => return Ok((bytes, false)),
        Err(reason) => {
            return Err(VaeError::Checkpoint {
                path: path.to_path_buf(),
                reason,
            });
        }
    };
    bytes.drain(..header);
    Ok((bytes, true))
}

/// Checks that a checkpoint file is whole and unchanged: its checksum, or for a file
/// without one, that it parses.
pub fn verify<B: Backend>(path: &Path) -> Result<(), VaeError> {
    let (mut payload, framed) = read_payload(path)?;
    if !framed {
        <Bytes as Recorder<B>>::load_item::<serde::de::IgnoredAny>(&Bytes::default(), &mut payload)
            .map_err(|_| VaeError::Checkpoint {
                path: path.to_path_buf(),
                reason: "damaged: not a complete MessagePack record".into(),
            })?;
    }
    Ok(())
}

impl<B: Backend> Recorder<B> for CheckpointRecorder {
    type Settings = FullPrecisionSettings;
    type RecordArgs = PathBuf;
    type RecordOutput = ();
    type LoadArgs = PathBuf;

    fn save_item<I: Serialize>(&self, item: I, file: PathBuf) -> Result<(), RecorderError> {
        let path = file.with_extension(EXTENSION);
        let written = <Bytes as Recorder<B>>::save_item(&Bytes::default(), item, ())
            .map_err(|e| format!("{}: {e}", path.display()))
            .and_then(|payload| {
                crate::report::write_atomic(&path, &frame(&payload)).map_err(|e| e.to_string())
            });
        self.handoff.written();
        written.map_err(|reason| {
            self.failure.set(reason.clone());
            RecorderError::Unknown(reason)
        })
    }

    fn load_item<I: DeserializeOwned>(&self, file: &mut PathBuf) -> Result<I, RecorderError> {
        let path = file.with_extension(EXTENSION);
        let (mut payload, _) = read_payload(&path).map_err(|e| match e {
            VaeError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                RecorderError::FileNotFound(path.display().to_string())
            }
            e => RecorderError::Unknown(e.to_string()),
        })?;
        <Bytes as Recorder<B>>::load_item(&Bytes::default(), &mut payload)
    }
}

impl<B: Backend> FileRecorder<B> for CheckpointRecorder {
    fn file_extension() -> &'static str {
        EXTENSION
    }
}

/// Directory holding a run's checkpoints.
pub fn dir(run: &Path) -> PathBuf {
    run.join("checkpoint")
}

/// The description of the model whose checkpoints a run directory holds
/// (`checkpoint/model.toml`), written when the run starts.
pub fn description_file(run: &Path) -> PathBuf {
    dir(run).join("model.toml")
}

/// Records which model writes the checkpoints of `run` (atomically). Posterior kinds whose
/// parameters have the same shapes (a planar and a triangular Sylvester model on one
/// latent, or O- and H-SNF with `M = H = D`) load each other's files without a shape
/// error: [`load_model`] compares this description instead.
pub fn write_description(run: &Path, model: &ModelConfig) -> Result<(), VaeError> {
    let path = description_file(run);
    std::fs::create_dir_all(dir(run)).map_err(VaeError::io(dir(run)))?;
    let text = toml::to_string_pretty(model).map_err(|e| VaeError::Config {
        field: "model".into(),
        reason: e.to_string(),
    })?;
    crate::report::write_atomic(&path, text.as_bytes())
}

/// The description next to a checkpoint file (`None` for runs written before it existed).
pub fn read_description(checkpoint_dir: &Path) -> Result<Option<ModelConfig>, VaeError> {
    let path = checkpoint_dir.join("model.toml");
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).map_err(VaeError::io(&path))?;
    toml::from_str(&text)
        .map(Some)
        .map_err(|e| VaeError::Checkpoint {
            path,
            reason: format!("unreadable model description ({})", e.message()),
        })
}

/// Fails when the model described next to the checkpoints is not `config`.
pub fn check_description(checkpoint_dir: &Path, config: &ModelConfig) -> Result<(), VaeError> {
    match read_description(checkpoint_dir)? {
        Some(written) if &written != config => Err(VaeError::Checkpoint {
            path: checkpoint_dir.join("model.toml"),
            reason: format!(
                "the checkpoints were written by another model ({}) than the one asked for ({})",
                summary(&written),
                summary(config)
            ),
        }),
        _ => Ok(()),
    }
}

/// One line naming a model's shape.
fn summary(m: &ModelConfig) -> String {
    format!(
        "{:?} {} K={} latent {} M={} H={} IAF {}×{} {:?} β={}",
        m.arch,
        m.flow,
        m.flow_steps(),
        m.latent,
        m.ortho_vecs,
        m.householder,
        m.iaf_hidden,
        m.iaf_layers,
        m.iaf_update,
        m.iaf_forget_bias
    )
}

/// Path of a checkpoint file (`model`, `optim` or `scheduler`) of an epoch.
pub fn file(run: &Path, name: &str, epoch: usize) -> PathBuf {
    dir(run).join(format!("{name}-{epoch}.{EXTENSION}"))
}

/// Epochs whose model, optimizer and scheduler files all exist, ascending.
pub fn complete_epochs(run: &Path) -> Vec<usize> {
    let Ok(entries) = std::fs::read_dir(dir(run)) else {
        return Vec::new();
    };
    let mut epochs: Vec<usize> = entries
        .filter_map(|e| {
            let name = e.ok()?.file_name().to_string_lossy().into_owned();
            name.strip_prefix("model-")?
                .strip_suffix(&format!(".{EXTENSION}"))?
                .parse()
                .ok()
        })
        .filter(|&e| {
            ["optim", "scheduler"]
                .iter()
                .all(|n| file(run, n, e).exists())
        })
        .collect();
    epochs.sort_unstable();
    epochs
}

/// The newest of `epochs` (ascending) whose model, optimizer and scheduler files are all
/// intact ([`verify`]), with the damaged files found on the way (file and reason).
pub fn last_intact_epoch<B: Backend>(run: &Path, epochs: &[usize]) -> (Option<usize>, Vec<String>) {
    let mut damaged = Vec::new();
    for &epoch in epochs.iter().rev() {
        let bad: Vec<String> = ["model", "optim", "scheduler"]
            .iter()
            .filter_map(|name| verify::<B>(&file(run, name, epoch)).err())
            .map(|e| e.to_string())
            .collect();
        if bad.is_empty() {
            return (Some(epoch), damaged);
        }
        damaged.extend(bad);
    }
    (None, damaged)
}

/// Removes temporary files left by a killed write and checkpoint files of epochs after
/// `keep_up_to` (a run resumed from `keep_up_to` redoes those epochs).
pub fn clean(run: &Path, keep_up_to: usize) -> Result<(), VaeError> {
    let d = dir(run);
    let Ok(entries) = std::fs::read_dir(&d) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let epoch = name
            .split_once('-')
            .and_then(|(_, rest)| rest.strip_suffix(&format!(".{EXTENSION}")))
            .and_then(|e| e.parse::<usize>().ok());
        if name.starts_with('.') && name.contains("-partial-")
            || epoch.is_some_and(|e| e > keep_up_to)
        {
            std::fs::remove_file(entry.path()).map_err(VaeError::io(entry.path()))?;
        }
    }
    Ok(())
}

/// Loads a model checkpoint file into a model built from `config`, checking the model
/// description next to it ([`write_description`]) where there is one, and that every
/// parameter has the shape the configuration implies.
pub fn load_model<B: Backend>(
    path: &Path,
    config: &ModelConfig,
    device: &B::Device,
) -> Result<Vae<B>, VaeError> {
    if !path.is_file() {
        return Err(VaeError::Checkpoint {
            path: path.to_path_buf(),
            reason: "no such file".into(),
        });
    }
    check_description(path.parent().unwrap_or(Path::new(".")), config)?;
    // One read: the frame's check, then the record from the same bytes.
    let (payload, _) = read_payload(path)?;
    let model = config.init::<B>(device)?;
    let record = Bytes::default()
        .load::<<Vae<B> as Module<B>>::Record>(payload, device)
        .map_err(|e| VaeError::Checkpoint {
            path: path.to_path_buf(),
            reason: format!(
                "not a readable train-vae checkpoint ({})",
                e.to_string().lines().next().unwrap_or("unknown error")
            ),
        })?;
    let expected = model.param_shapes();
    let found = crate::model::record_param_shapes::<B>(&record);
    for i in 0..expected.len().max(found.len()) {
        let (name, want) = expected.get(i).cloned().unwrap_or_default();
        let got = found.get(i).map(|f| f.1.clone()).unwrap_or_default();
        if want != got {
            let param = if name.is_empty() {
                found[i].0.clone()
            } else {
                name
            };
            return Err(VaeError::ShapeMismatch {
                path: path.to_path_buf(),
                param,
                found: got,
                expected: want,
            });
        }
    }
    Ok(model.load_record(record))
}
