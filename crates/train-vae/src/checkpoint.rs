//! Checkpoint files: atomic writes, discovery of complete epochs, shape-checked loading.
//!
//! burn-train's `FileCheckpointer` writes through burn's file recorders, which delete the
//! old file and stream into the final name: a kill mid-write leaves a truncated checkpoint.
//! [`AtomicRecorder`] wraps any file recorder so the bytes go to a hidden temporary file
//! in the same directory, are flushed to disk (`fsync`), and only then renamed over the
//! final name. A reader therefore sees the old file or the new one, never a mix.

use std::path::{Path, PathBuf};

use burn::{
    module::Module,
    record::{FileRecorder, FullPrecisionSettings, NamedMpkFileRecorder, Recorder, RecorderError},
    tensor::backend::Backend,
};
use serde::{Serialize, de::DeserializeOwned};

use crate::{
    error::VaeError,
    model::{ModelConfig, Vae},
};

/// A file recorder whose saves are atomic (temporary file, `fsync`, rename).
#[derive(Debug, Default, Clone)]
pub struct AtomicRecorder<R> {
    inner: R,
}

/// The recorder train-vae uses: named MessagePack, full precision (exact resume), atomic.
pub type CheckpointRecorder = AtomicRecorder<NamedMpkFileRecorder<FullPrecisionSettings>>;

/// Extension of checkpoint files.
pub const EXTENSION: &str = "mpk";

impl<B: Backend, R: FileRecorder<B>> Recorder<B> for AtomicRecorder<R> {
    type Settings = R::Settings;
    type RecordArgs = PathBuf;
    type RecordOutput = ();
    type LoadArgs = PathBuf;

    fn save_item<I: Serialize>(&self, item: I, file: PathBuf) -> Result<(), RecorderError> {
        let ext = <R as FileRecorder<B>>::file_extension();
        let fail = |e: std::io::Error| RecorderError::Unknown(format!("{}: {e}", file.display()));
        let final_path = file.with_extension(ext);
        let dir = final_path.parent().unwrap_or(Path::new(".")).to_path_buf();
        std::fs::create_dir_all(&dir).map_err(fail)?;
        let stem = final_path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        // A dot-file without another dot: the inner recorder appends its extension to it.
        let tmp_base = dir.join(format!(".{stem}-partial-{}", std::process::id()));
        self.inner.save_item(item, tmp_base.clone())?;
        let tmp = tmp_base.with_extension(ext);
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(fail)?;
        std::fs::rename(&tmp, &final_path).map_err(fail)?;
        // Make the rename itself durable.
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    fn load_item<I: DeserializeOwned>(&self, file: &mut PathBuf) -> Result<I, RecorderError> {
        self.inner.load_item(file)
    }
}

impl<B: Backend, R: FileRecorder<B>> FileRecorder<B> for AtomicRecorder<R> {
    fn file_extension() -> &'static str {
        R::file_extension()
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
        "{:?} {} K={} latent {} M={} H={} IAF {}×{} {:?}",
        m.arch,
        m.flow,
        m.flow_steps(),
        m.latent,
        m.ortho_vecs,
        m.householder,
        m.iaf_hidden,
        m.iaf_layers,
        m.iaf_update
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
    let model = config.init::<B>(device)?;
    let record = CheckpointRecorder::default()
        .load::<<Vae<B> as Module<B>>::Record>(path.to_path_buf(), device)
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
