//! Models as [safetensors](https://huggingface.co/docs/safetensors) files: every tensor of
//! a module (parameters and buffers) under its module path, through burn's snapshot
//! machinery (`burn-store`), with strict loading.
//!
//! # Tensor names
//! A tensor is named by the path of fields from the module's root, joined with `.`, with
//! the variant of an enum in the path as a segment of its own and `Vec` elements by index:
//! in a `Flow<B, Base<B>, Vec<Layer<B>>>`, the first layer's coupling conditioner's output
//! weight is `transform.0.Coupling.conditioner.out.weight`, a mixture base's means
//! `base.Mixture.means`. Linear weights are stored `[in, out]` (burn's layout, the
//! transpose of PyTorch's). [`tensor_names`] lists a module's names and shapes.
//!
//! Only parameters and running statistics are stored. What a module's configuration
//! determines (permutations, masks, orders, sizes) is not: rebuild the module from its
//! configuration, then load the tensors into it (as [`from_safetensors`] does).
//!
//! Loading is all or nothing: a tensor missing from the file, a tensor the module does not
//! have, or a shape that differs is a [`FlowError::Weights`] naming the tensor, and the
//! module is not returned.

use std::collections::HashMap;

use burn::{module::Module, tensor::backend::Backend};
use burn_store::{ModuleSnapshot, SafetensorsStore};

use crate::error::{FlowError, Result};

/// The tensors of `module` as safetensors bytes (values in their stored precision, bit for
/// bit), with `metadata` (string pairs) in the file's header.
///
/// ```
/// use burn::backend::NdArray;
/// use flow_core::{Flow, StandardNormal, LuLinearConfig, store};
///
/// let device = Default::default();
/// let flow = Flow::new(
///     StandardNormal::new(2).unwrap(),
///     vec![LuLinearConfig::new(2).init::<NdArray>(&device).unwrap()],
/// )
/// .unwrap();
/// let bytes = store::to_safetensors(&flow, &[("about", "an LU flow")]).unwrap();
/// let fresh = Flow::new(
///     StandardNormal::new(2).unwrap(),
///     vec![LuLinearConfig::new(2).init::<NdArray>(&device).unwrap()],
/// )
/// .unwrap();
/// let loaded = store::from_safetensors(fresh, bytes.clone()).unwrap();
/// assert_eq!(store::metadata(&bytes).unwrap()["about"], "an LU flow");
/// # let _ = loaded;
/// ```
pub fn to_safetensors<B: Backend, M: Module<B>>(
    module: &M,
    metadata: &[(&str, &str)],
) -> Result<Vec<u8>> {
    let mut store = SafetensorsStore::from_bytes(None);
    for (k, v) in metadata {
        store = store.metadata(*k, *v);
    }
    module
        .save_into(&mut store)
        .map_err(|e| FlowError::Weights(format!("writing safetensors: {e}")))?;
    store
        .get_bytes()
        .map_err(|e| FlowError::Weights(format!("writing safetensors: {e}")))
}

/// `module` with every tensor replaced by the one of the same name in `bytes` (a
/// safetensors file, as [`to_safetensors`] writes it). The file must hold exactly the
/// module's tensors, with its shapes: anything else is an error naming the tensor.
pub fn from_safetensors<B: Backend, M: Module<B>>(mut module: M, bytes: Vec<u8>) -> Result<M> {
    let mut store = SafetensorsStore::from_bytes(Some(bytes))
        .validate(false)
        .allow_partial(true);
    let result = module
        .load_from(&mut store)
        .map_err(|e| FlowError::Weights(format!("not a readable safetensors file: {e}")))?;
    if let Some(e) = result.errors.first() {
        return Err(FlowError::Weights(e.to_string()));
    }
    if let Some((path, _)) = result.missing.first() {
        return Err(FlowError::Weights(format!(
            "tensor {path:?} is missing from the file ({} of the model's tensors are)",
            result.missing.len()
        )));
    }
    if let Some(path) = result.unused.first() {
        return Err(FlowError::Weights(format!(
            "the file has a tensor {path:?} that the model does not ({} unexpected)",
            result.unused.len()
        )));
    }
    Ok(module)
}

/// The metadata in the header of safetensors `bytes`.
pub fn metadata(bytes: &[u8]) -> Result<HashMap<String, String>> {
    let bad = |why: String| FlowError::Weights(format!("not a readable safetensors file: {why}"));
    let (_, meta) =
        safetensors::SafeTensors::read_metadata(bytes).map_err(|e| bad(e.to_string()))?;
    Ok(meta.metadata().clone().unwrap_or_default())
}

/// The name and shape of every tensor of `module`, in the order they are stored.
pub fn tensor_names<B: Backend, M: Module<B>>(module: &M) -> Vec<(String, Vec<usize>)> {
    module
        .collect(None, None, false)
        .into_iter()
        .map(|s| (s.full_path(), s.shape.to_vec()))
        .collect()
}
