//! Models trained with zuko or nflows, evaluated and sampled here: their PyTorch state
//! dicts (saved as safetensors, `safetensors.torch.save_file(model.state_dict(), path)`)
//! read into flow-core layers that compute the same functions.
//!
//! # Supported layouts
//! - **zuko** 1.x `zuko.flows.MAF(features, transforms=T, hidden_features=(H, …, H))` and
//!   `zuko.flows.NSF(…, bins=K)`, unconditional, with the default orders (natural, then
//!   reversed, alternating; `randperm=True` is refused) and equal hidden widths. Each
//!   `MaskedAutoregressiveTransform` becomes a [`MaskedAutoregressive`] layer with the
//!   same masks, its univariate map [`Elementwise::ScaleShift`] (`Scale::RationalExp`) or
//!   [`Elementwise::ZukoSpline`] (bound 5); the base `DiagNormal(loc, scale)` a
//!   [`DiagNormal`].
//! - **nflows** 0.14 `MaskedAutoregressiveFlow(features, hidden_features, num_layers,
//!   num_blocks_per_layer)`: each `ReversePermutation` (or any stored permutation) a
//!   [`Permutation`], each `MaskedAffineAutoregressiveTransform` a
//!   [`ResidualAutoregressive`] (the default residual MADE blocks) or, with
//!   `use_residual_blocks=False`, a [`MaskedAutoregressive`], both with
//!   [`Elementwise::ScaleShift`] (`Scale::SoftplusPlus`, `ε = 10⁻³`); standard normal base.
//!   Batch norm, random masks and a context are refused, naming the tensor that shows
//!   them.
//!
//! The libraries list their steps data → noise; a flow-core stack is noise → data, so the
//! layers come in reverse order, and each library step is the layer's `inverse`. Masked
//! weights are multiplied by their masks (PyTorch keeps the masked-out entries), transposed
//! to burn's `[in, out]`, and the last layer's rows reordered from the libraries'
//! feature-major outputs (`j·P + p`) to flow-core's parameter-major ones (`p·D + j`). The
//! stored masks must be those flow-core builds for the order: anything else is an error.
//!
//! A tensor missing, unexpected or of the wrong shape is a [`FlowError::Weights`] naming it.
//! `log_prob` agrees with the libraries' to `10⁻⁴` (relative beyond 1) on the fixtures of
//! `tests/fixtures/import` (made by `scripts/import_fixtures.py`).

use std::{cell::RefCell, collections::BTreeSet};

use burn::tensor::backend::Backend;
use safetensors::{Dtype, SafeTensors, tensor::TensorView};

use crate::{
    Base, DiagNormalConfig, Elementwise, Flow, Layer, MaskedAutoregressiveConfig, Order,
    Permutation, ResidualAutoregressive, ResidualMadeConfig, Scale, StandardNormal,
    error::{FlowError, Result},
};

#[allow(unused_imports)] // for the docs
use crate::{DiagNormal, MaskedAutoregressive};

/// An imported flow: its base and its layers (noise → data).
pub type Imported<B> = Flow<B, Base<B>, Vec<Layer<B>>>;

fn error(what: String) -> FlowError {
    FlowError::Weights(what)
}

/// A state dict being read: every tensor must be used exactly once.
struct StateDict<'a> {
    file: SafeTensors<'a>,
    used: RefCell<BTreeSet<String>>,
}

impl<'a> StateDict<'a> {
    fn new(bytes: &'a [u8]) -> Result<Self> {
        let file = SafeTensors::deserialize(bytes)
            .map_err(|e| error(format!("not a readable safetensors file: {e}")))?;
        Ok(Self {
            file,
            used: RefCell::new(BTreeSet::new()),
        })
    }

    fn has(&self, name: &str) -> bool {
        self.file.tensor(name).is_ok()
    }

    fn view(&self, name: &str) -> Result<TensorView<'a>> {
        self.used.borrow_mut().insert(name.to_string());
        self.file
            .tensor(name)
            .map_err(|_| error(format!("tensor {name:?} is missing from the state dict")))
    }

    fn check_shape(name: &str, view: &TensorView, shape: &[usize]) -> Result<()> {
        if view.shape() == shape {
            Ok(())
        } else {
            Err(error(format!(
                "tensor {name:?} has shape {:?}, expected {shape:?}",
                view.shape()
            )))
        }
    }

    /// A float tensor (f32, or f64 narrowed) and its shape.
    fn floats(&self, name: &str) -> Result<(Vec<f32>, Vec<usize>)> {
        let view = self.view(name)?;
        let data = view.data();
        let values = match view.dtype() {
            Dtype::F32 => data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
                .collect(),
            Dtype::F64 => data
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")) as f32)
                .collect(),
            other => return Err(error(format!("tensor {name:?} is {other:?}, not a float"))),
        };
        Ok((values, view.shape().to_vec()))
    }

    fn floats_shaped(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let view = self.view(name)?;
        Self::check_shape(name, &view, shape)?;
        Ok(self.floats(name)?.0)
    }

    /// An integer vector (i64 or i32).
    fn integers(&self, name: &str) -> Result<Vec<i64>> {
        let view = self.view(name)?;
        let data = view.data();
        match view.dtype() {
            Dtype::I64 => Ok(data
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
                .collect()),
            Dtype::I32 => Ok(data
                .chunks_exact(4)
                .map(|c| i64::from(i32::from_le_bytes(c.try_into().expect("4 bytes"))))
                .collect()),
            other => Err(error(format!(
                "tensor {name:?} is {other:?}, not an integer"
            ))),
        }
    }

    /// A 0/1 mask, stored as bool (zuko) or float (nflows), `[out, in]`.
    fn mask(&self, name: &str, shape: &[usize]) -> Result<Vec<bool>> {
        let view = self.view(name)?;
        Self::check_shape(name, &view, shape)?;
        match view.dtype() {
            Dtype::BOOL | Dtype::U8 => Ok(view.data().iter().map(|&b| b != 0).collect()),
            _ => Ok(self.floats(name)?.0.iter().map(|&v| v != 0.0).collect()),
        }
    }

    /// Every tensor was read.
    fn finish(&self) -> Result<()> {
        let used = self.used.borrow();
        match self.file.names().into_iter().find(|n| !used.contains(*n)) {
            Some(name) => Err(error(format!(
                "the state dict has a tensor {name:?} that this layout does not (an option \
                 that is not supported, or another model)"
            ))),
            None => Ok(()),
        }
    }
}

/// The tensors of the flow-core model, by name, for [`crate::store::from_safetensors`].
#[derive(Default)]
struct Weights(Vec<(String, Vec<usize>, Vec<u8>)>);

impl Weights {
    fn push(&mut self, name: String, shape: Vec<usize>, values: &[f32]) {
        let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.0.push((name, shape, bytes));
    }

    fn load<B: Backend>(self, model: Imported<B>) -> Result<Imported<B>> {
        let views: Vec<(String, TensorView)> = self
            .0
            .iter()
            .map(|(name, shape, bytes)| {
                let view = TensorView::new(Dtype::F32, shape.clone(), bytes)
                    .expect("shape and bytes agree");
                (name.clone(), view)
            })
            .collect();
        let bytes = safetensors::serialize(views, None)
            .map_err(|e| error(format!("building the weights: {e}")))?;
        crate::store::from_safetensors(model, bytes)
    }
}

/// One masked layer of a library's MADE: `weight [out, in]`, `bias [out]`, `mask [out, in]`.
struct Torch {
    weight: Vec<f32>,
    bias: Vec<f32>,
    mask: Vec<bool>,
    d_in: usize,
    d_out: usize,
}

/// How a library lays out a MADE's final outputs: feature `j`'s parameter `p` (in
/// flow-core's order) is torch row `j·P + source[p]`.
struct OutputLayout<'s> {
    source: &'s [usize],
}

/// Checks the library's masks against flow-core's (`masks`, row-major `[in, out]`) and
/// writes the masked, transposed (and, for the last layer, reordered) weights under the
/// names `ours` (one per layer).
fn made_weights(
    layers: &[Torch],
    dim: usize,
    masks: &[&[f32]],
    ours: &[String],
    layout: &OutputLayout,
    names: &[String],
    out: &mut Weights,
) -> Result<()> {
    let params = layout.source.len();
    let last = layers.len() - 1;
    for (l, layer) in layers.iter().enumerate() {
        let (d_in, d_out) = (layer.d_in, layer.d_out);
        // Our output column o reads torch row row(o).
        let row = |o: usize| {
            if l == last {
                let (p, j) = (o / dim, o % dim);
                j * params + layout.source[p]
            } else {
                o
            }
        };
        if masks[l].len() != d_in * d_out {
            return Err(error(format!("{}: unexpected layer size", names[l])));
        }
        let mut weight = vec![0.0f32; d_in * d_out];
        for i in 0..d_in {
            for o in 0..d_out {
                let r = row(o);
                let allowed = layer.mask[r * d_in + i];
                if allowed != (masks[l][i * d_out + o] != 0.0) {
                    return Err(error(format!(
                        "{}: the mask is not a MADE's in the expected order (random masks, \
                         other orders or fewer passes than features are not supported)",
                        names[l]
                    )));
                }
                if allowed {
                    weight[i * d_out + o] = layer.weight[r * d_in + i];
                }
            }
        }
        let bias: Vec<f32> = (0..d_out).map(|o| layer.bias[row(o)]).collect();
        out.push(format!("{}.weight", ours[l]), vec![d_in, d_out], &weight);
        out.push(format!("{}.bias", ours[l]), vec![d_out], &bias);
    }
    Ok(())
}

/// Our names of a plain MADE's layers under `prefix`: `layers.{l}`, then `out`.
fn plain_names(prefix: &str, layers: usize) -> Vec<String> {
    (0..layers - 1)
        .map(|l| format!("{prefix}.layers.{l}"))
        .chain([format!("{prefix}.out")])
        .collect()
}

/// Reads one masked layer `{name}.weight/.bias/.mask` of `[out, in]`.
fn torch_layer(dict: &StateDict, name: &str, d_in: usize) -> Result<Torch> {
    let (weight, shape) = dict.floats(&format!("{name}.weight"))?;
    if shape.len() != 2 || shape[1] != d_in {
        return Err(error(format!(
            "tensor \"{name}.weight\" has shape {shape:?}, expected [·, {d_in}]"
        )));
    }
    let d_out = shape[0];
    Ok(Torch {
        bias: dict.floats_shaped(&format!("{name}.bias"), &[d_out])?,
        mask: dict.mask(&format!("{name}.mask"), &[d_out, d_in])?,
        weight,
        d_in,
        d_out,
    })
}

/// The hidden width of a MADE, which flow-core's needs equal across layers.
fn hidden_width(layers: &[Torch], name: &str) -> Result<usize> {
    let widths: Vec<usize> = layers[..layers.len() - 1].iter().map(|l| l.d_out).collect();
    if widths.iter().any(|&w| w != widths[0]) {
        return Err(error(format!(
            "{name}: hidden widths {widths:?} differ (flow-core's MADE has one width)"
        )));
    }
    Ok(widths[0])
}

/// A zuko `MAF` or `NSF` state dict (safetensors bytes) as a flow-core flow; see the
/// [module docs](self).
pub fn zuko<B: Backend>(bytes: &[u8], device: &B::Device) -> Result<Imported<B>> {
    let dict = StateDict::new(bytes)?;
    let at = |t: usize| format!("transform.transforms.{t}");
    if !dict.has(&format!("{}.order", at(0))) {
        return Err(error(
            "not a zuko MAF/NSF state dict: no \"transform.transforms.0.order\"".into(),
        ));
    }
    let steps = (0..)
        .take_while(|&t| dict.has(&format!("{}.order", at(t))))
        .count();
    let mut weights = Weights::default();
    // In the libraries' order (data → noise); our stack is the reverse.
    let mut built: Vec<Layer<B>> = Vec::new();
    let mut dim = 0;
    for t in 0..steps {
        let order_name = format!("{}.order", at(t));
        let order = dict.integers(&order_name)?;
        dim = order.len();
        let natural: Vec<i64> = (0..dim as i64).collect();
        let reversed: Vec<i64> = natural.iter().rev().copied().collect();
        let order = if order == natural {
            Order::Natural
        } else if order == reversed {
            Order::Reversed
        } else {
            return Err(error(format!(
                "{order_name} is {order:?}: only the default orders (natural and reversed) \
                 are supported, not randperm=True or passes < features"
            )));
        };
        let mut layers = Vec::new();
        let mut names = Vec::new();
        let mut d_in = dim;
        while dict.has(&format!("{}.hyper.{}.weight", at(t), 2 * layers.len())) {
            let name = format!("{}.hyper.{}", at(t), 2 * layers.len());
            let layer = torch_layer(&dict, &name, d_in)?;
            d_in = layer.d_out;
            layers.push(layer);
            names.push(name);
        }
        if layers.len() < 2 {
            return Err(error(format!(
                "{}: a MADE needs a hidden layer (and a context is not supported)",
                at(t)
            )));
        }
        let last = layers.last().expect("two layers");
        let params = last.d_out / dim;
        if last.d_out % dim != 0 || !(params == 2 || (params > 2 && (params + 1) % 3 == 0)) {
            return Err(error(format!(
                "{}.weight: {} outputs for {dim} features is neither an affine (2 per \
                 feature) nor a spline (3K − 1) map",
                names.last().expect("named"),
                last.d_out
            )));
        }
        let kind = if params == 2 {
            Elementwise::ScaleShift {
                scale: Scale::RationalExp {
                    bound: -(1e-3f64.ln()),
                },
            }
        } else {
            Elementwise::ZukoSpline {
                bins: (params + 1) / 3,
                bound: 5.0,
            }
        };
        let hidden = hidden_width(&layers, &at(t))?;
        let source: Vec<usize> = (0..params).collect();
        let k = steps - 1 - t;
        let prefix = format!("transform.{k}.Autoregressive.made");
        let layout = OutputLayout { source: &source };
        let layer = MaskedAutoregressiveConfig::new(dim, kind)
            .with_hidden(hidden)
            .with_n_hidden(layers.len() - 1)
            .with_order(order)
            .init::<B>(device)?;
        let ours = plain_names(&prefix, layers.len());
        let masks = layer.made().masks();
        made_weights(&layers, dim, &masks, &ours, &layout, &names, &mut weights)?;
        built.push(Layer::from(layer));
    }
    let loc = dict.floats_shaped("base.loc", &[dim])?;
    let scale = dict.floats_shaped("base.scale", &[dim])?;
    if let Some(s) = scale.iter().find(|s| !(**s > 0.0 && s.is_finite())) {
        return Err(error(format!(
            "base.scale holds {s}: scales must be positive"
        )));
    }
    let log_scale: Vec<f32> = scale.iter().map(|s| s.ln()).collect();
    weights.push("base.Diagonal.loc".into(), vec![1, dim], &loc);
    weights.push("base.Diagonal.log_scale".into(), vec![1, dim], &log_scale);
    dict.finish()?;
    let layers: Vec<Layer<B>> = built.into_iter().rev().collect();
    let base: Base<B> = DiagNormalConfig::new(dim).init(device)?.into();
    weights.load(Flow::new(base, layers)?)
}

/// An nflows `MaskedAutoregressiveFlow` state dict (safetensors bytes) as a flow-core flow;
/// see the [module docs](self).
pub fn nflows<B: Backend>(bytes: &[u8], device: &B::Device) -> Result<Imported<B>> {
    let dict = StateDict::new(bytes)?;
    let at = |i: usize| format!("_transform._transforms.{i}");
    if !dict.has(&format!("{}._permutation", at(0))) {
        return Err(error(
            "not an nflows MaskedAutoregressiveFlow state dict: no \
             \"_transform._transforms.0._permutation\""
                .into(),
        ));
    }
    // Data → noise: (permutation, MADE) pairs.
    let mut steps: Vec<NflowsStep> = Vec::new();
    let mut dim = 0;
    while dict.has(&format!("{}._permutation", at(2 * steps.len()))) {
        let s = steps.len();
        let perm_name = format!("{}._permutation", at(2 * s));
        let perm = dict.integers(&perm_name)?;
        dim = perm.len();
        let mut seen = vec![false; dim];
        for &p in &perm {
            match usize::try_from(p).ok().filter(|&p| p < dim) {
                Some(p) if !seen[p] => seen[p] = true,
                _ => {
                    return Err(error(format!(
                        "{perm_name} is not a permutation of 0..{dim}"
                    )));
                }
            }
        }
        let net = format!("{}.autoregressive_net", at(2 * s + 1));
        let residual = dict.has(&format!("{net}.blocks.0.linear_layers.0.weight"));
        let mut names = vec![format!("{net}.initial_layer")];
        let mut b = 0;
        loop {
            let block = if residual {
                vec![
                    format!("{net}.blocks.{b}.linear_layers.0"),
                    format!("{net}.blocks.{b}.linear_layers.1"),
                ]
            } else {
                vec![format!("{net}.blocks.{b}.linear")]
            };
            if !dict.has(&format!("{}.weight", block[0])) {
                break;
            }
            names.extend(block);
            b += 1;
        }
        names.push(format!("{net}.final_layer"));
        let mut layers: Vec<Torch> = Vec::new();
        for name in &names {
            let d_in = layers.last().map_or(dim, |l| l.d_out);
            layers.push(torch_layer(&dict, name, d_in)?);
            // The degrees are implied by the masks, which are checked.
            dict.integers(&format!("{name}.degrees"))?;
        }
        let outputs = layers.last().expect("final").d_out;
        if outputs != 2 * dim {
            return Err(error(format!(
                "{net}.final_layer.weight: {outputs} outputs, expected 2 per feature (affine)"
            )));
        }
        let perm = perm.iter().map(|&p| p as usize).collect();
        steps.push(NflowsStep {
            perm,
            layers,
            names,
            blocks: b,
            residual,
        });
    }
    dict.finish()?;
    let kind = Elementwise::ScaleShift {
        scale: Scale::SoftplusPlus { epsilon: 1e-3 },
    };
    // Our stack (noise → data) is the steps reversed, each as [MADE, permutation]: step
    // s's MADE sits at index 2·(S − 1 − s).
    let mut weights = Weights::default();
    let mut made_layers: Vec<Layer<B>> = Vec::new();
    for (s, step) in steps.iter().enumerate() {
        let k = 2 * (steps.len() - 1 - s);
        let hidden = hidden_width(&step.layers, &step.names[0])?;
        // nflows: per feature [raw scale, shift]; ScaleShift wants [shift, raw scale].
        let layout = OutputLayout { source: &[1, 0] };
        let mut write = |masks: &[&[f32]], ours: &[String]| {
            made_weights(
                &step.layers,
                dim,
                masks,
                ours,
                &layout,
                &step.names,
                &mut weights,
            )
        };
        let layer: Layer<B> = if step.residual {
            let made = ResidualMadeConfig::new(dim, 2, hidden, step.blocks).init::<B>(device)?;
            let prefix = format!("transform.{k}.ResidualAutoregressive.made");
            let ours: Vec<String> = [format!("{prefix}.initial")]
                .into_iter()
                .chain((0..step.blocks).flat_map(|b| {
                    [
                        format!("{prefix}.blocks.{b}.first"),
                        format!("{prefix}.blocks.{b}.second"),
                    ]
                }))
                .chain([format!("{prefix}.out")])
                .collect();
            write(&made.masks(), &ours)?;
            ResidualAutoregressive::new(made, kind)?.into()
        } else {
            let layer = MaskedAutoregressiveConfig::new(dim, kind)
                .with_hidden(hidden)
                .with_n_hidden(step.layers.len() - 1)
                .init::<B>(device)?;
            let prefix = format!("transform.{k}.Autoregressive.made");
            write(
                &layer.made().masks(),
                &plain_names(&prefix, step.layers.len()),
            )?;
            layer.into()
        };
        made_layers.push(layer);
    }
    let mut layers: Vec<Layer<B>> = Vec::new();
    for (step, made) in steps.iter().zip(made_layers).rev() {
        layers.push(made);
        // nflows computes z_i = x_perm[i] (data → noise): our inverse gathers with
        // argsort(order), so order = argsort(perm).
        let mut order = vec![0; dim];
        for (i, &p) in step.perm.iter().enumerate() {
            order[p] = i;
        }
        layers.push(Permutation::from_order(&order, device)?.into());
    }
    let base: Base<B> = StandardNormal::new(dim)?.into();
    weights.load(Flow::new(base, layers)?)
}

/// One `(permutation, MADE)` step of an nflows MAF, as read.
struct NflowsStep {
    perm: Vec<usize>,
    layers: Vec<Torch>,
    names: Vec<String>,
    blocks: usize,
    residual: bool,
}
