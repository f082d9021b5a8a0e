//! Atomic checkpoints: weights, batch-norm statistics, momentum buffers and the run position.
//!
//! A checkpoint is one file in libtorch's named-tensor format (`Tensor::save_multi`), holding
//! `model.<variable>` for every variable of the model, `momentum.<parameter>` for every
//! momentum buffer, and `state`, a u8 tensor with the JSON of [`TrainState`]. Keeping all of it
//! in one file makes the rename that publishes it atomic.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use expanse_dataset::loader::LoaderState;
use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

use crate::optim::Sgd;
use crate::{Error, Result};

/// File name of the latest checkpoint in a run directory.
pub const CHECKPOINT_FILE: &str = "checkpoint.ot";

/// The position of training when the checkpoint is written.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Epochs completed.
    pub epochs_done: usize,
    /// Optimizer steps taken, which fixes the position in the learning-rate schedule.
    pub step: usize,
    /// Position of the training loader: the next batch to train on.
    pub loader: LoaderState,
    /// Loss scale of float16 training; `None` in other precisions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_scaler: Option<crate::device::LossScaler>,
}

/// The `state` entry: the position plus a checksum of every other entry.
#[derive(Serialize, Deserialize)]
struct StoredState {
    state: TrainState,
    /// BLAKE3 over each entry's name and f32 values, in name order, as hex.
    tensors_blake3: String,
}

/// Hashes `named` tensors (sorted by name) so that a corrupt checkpoint is caught on load,
/// since libtorch's format carries no checksum of the tensor data.
fn tensors_hash(named: &[(String, Tensor)]) -> String {
    let mut hasher = blake3::Hasher::new();
    for (name, tensor) in named {
        hasher.update(name.as_bytes());
        let values = Vec::<f32>::try_from(tensor.to_kind(tch::Kind::Float).flatten(0, -1))
            .unwrap_or_default();
        for value in values {
            hasher.update(&value.to_le_bytes());
        }
    }
    hasher.finalize().to_hex().to_string()
}

/// Writes `bytes` to `path` through a temporary file in the same folder, synced and renamed,
/// so that readers see the old content or the new one, never a mix.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temporary_path(path);
    let mut file = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    file.write_all(bytes).map_err(|e| Error::io(&tmp, e))?;
    file.sync_all().map_err(|e| Error::io(&tmp, e))?;
    drop(file);
    publish(&tmp, path)
}

fn temporary_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp-{}", std::process::id()));
    path.with_file_name(name)
}

fn publish(tmp: &Path, path: &Path) -> Result<()> {
    std::fs::rename(tmp, path).map_err(|e| Error::io(path, e))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // The rename is durable only once the folder entry is synced.
        File::open(dir).and_then(|d| d.sync_all()).map_err(|e| Error::io(dir, e))?;
    }
    Ok(())
}

/// Saves the model, optimizer and `state` to `run_dir/checkpoint.ot` atomically.
pub fn save(run_dir: &Path, vs: &nn::VarStore, sgd: &Sgd, state: &TrainState) -> Result<()> {
    let path = run_dir.join(CHECKPOINT_FILE);

    let mut named: Vec<(String, Tensor)> = Vec::new();
    let mut variables: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    variables.sort_by(|a, b| a.0.cmp(&b.0));
    // Stored from the CPU, so that a checkpoint of a GPU run loads anywhere.
    let cpu = tch::Device::Cpu;
    for (name, tensor) in variables {
        named.push((format!("model.{name}"), tensor.to_device(cpu)));
    }
    for (name, buffer) in sgd.buffers() {
        named.push((format!("momentum.{name}"), buffer.to_device(cpu)));
    }
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let stored = StoredState { state: *state, tensors_blake3: tensors_hash(&named) };
    let state_json =
        serde_json::to_vec(&stored).map_err(|source| Error::Json { path: path.clone(), source })?;
    named.push(("state".to_string(), Tensor::from_slice(&state_json)));

    let tmp = temporary_path(&path);
    Tensor::save_multi(&named, &tmp)?;
    File::open(&tmp).and_then(|f| f.sync_all()).map_err(|e| Error::io(&tmp, e))?;
    publish(&tmp, &path)
}

/// Restores the model and optimizer from `path` and returns the saved position.
///
/// # Errors
///
/// [`Error::Checkpoint`] when the file cannot be read, its tensor checksum does not match, a
/// variable or buffer is missing or has another shape, an entry is not in the model, or the
/// state entry is absent or not valid JSON.
pub fn load(path: &Path, vs: &nn::VarStore, sgd: &mut Sgd) -> Result<TrainState> {
    let checkpoint_error =
        |message: String| Error::Checkpoint { path: path.to_path_buf(), message };

    // tch stores '.' in names as '|'; map them back.
    // libtorch's messages end in a C++ stack trace, and the first line names the problem.
    let loaded = Tensor::load_multi(path).map_err(|e| {
        let message = e.to_string();
        let first = message.lines().next().unwrap_or("unreadable").trim().to_string();
        checkpoint_error(format!("cannot read the checkpoint: {first}"))
    })?;
    let entries: HashMap<String, Tensor> =
        loaded.into_iter().map(|(name, tensor)| (name.replace('|', "."), tensor)).collect();

    let take = |name: &str, target: &Tensor| -> Result<Tensor> {
        let saved = entries
            .get(name)
            .ok_or_else(|| checkpoint_error(format!("entry {name} is missing")))?;
        if saved.size() != target.size() {
            return Err(checkpoint_error(format!(
                "entry {name} has shape {:?}, the model expects {:?}",
                saved.size(),
                target.size()
            )));
        }
        Ok(saved.shallow_clone())
    };

    let state =
        entries.get("state").ok_or_else(|| checkpoint_error("entry state is missing".into()))?;
    let bytes = Vec::<u8>::try_from(state)
        .map_err(|e| checkpoint_error(format!("entry state is not a byte tensor: {e}")))?;
    let stored: StoredState = serde_json::from_slice(&bytes)
        .map_err(|e| checkpoint_error(format!("entry state is not valid JSON: {e}")))?;
    let mut tensors: Vec<(String, Tensor)> = entries
        .iter()
        .filter(|(name, _)| name.as_str() != "state")
        .map(|(name, tensor)| (name.clone(), tensor.shallow_clone()))
        .collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let computed = tensors_hash(&tensors);
    if computed != stored.tensors_blake3 {
        return Err(checkpoint_error(format!(
            "tensor checksum mismatch: stored {}, computed {computed}; the file is corrupt",
            stored.tensors_blake3
        )));
    }

    let variables = vs.variables();
    let model_entries = entries.keys().filter(|name| name.starts_with("model.")).count();
    if model_entries > variables.len() {
        let extra = entries
            .keys()
            .filter_map(|name| name.strip_prefix("model."))
            .find(|name| !variables.contains_key(*name))
            .unwrap_or("?");
        return Err(checkpoint_error(format!(
            "{model_entries} model entries for {} model variables; entry model.{extra} is not in \
             the model (a checkpoint of another architecture?)",
            variables.len()
        )));
    }

    let mut restored = Vec::new();
    for (name, variable) in variables {
        let saved = take(&format!("model.{name}"), &variable)?;
        restored.push((variable, saved));
    }
    let names: Vec<String> = sgd.buffers().map(|(name, _)| name.to_string()).collect();
    for name in names {
        let buffer = sgd.buffer_mut(&name).expect("name comes from the optimizer");
        let saved = take(&format!("momentum.{name}"), buffer)?;
        restored.push((buffer.shallow_clone(), saved));
    }
    tch::no_grad(|| {
        for (mut target, saved) in restored {
            target.copy_(&saved);
        }
    });

    Ok(stored.state)
}
