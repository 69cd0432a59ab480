//! Adam with one fused pass per parameter tensor on the CPU backends.
//!
//! # Math
//! Adam (Kingma & Ba 2015) as torch and burn compute it: with gradient `g`, step `t ≥ 1`,
//! `m ← β₁ m + (1 − β₁) g`, `v ← β₂ v + (1 − β₂) g²`, and
//! `θ ← θ − lr · (√(1 − β₂ᵗ) / (1 − β₁ᵗ)) · m / (√v + ε √(1 − β₂ᵗ))`
//! (the bias-corrected `m̂ / (√v̂ + ε)`, both sides multiplied by `√(1 − β₂ᵗ)`).
//!
//! burn's `Adam` takes 13 tensor operations per parameter for this, each a pass over
//! memory with a fresh output buffer; on the 7.3 M parameters of the MAF benchmark that
//! was a fifth of a training step. [`FusedAdam`] does the same update in one pass over
//! the parameter, gradient and both moments on the CPU backends (`flex`, `ndarray`),
//! whose tensors already live in host memory (on `flex` the buffers are taken and given
//! back without a copy when nothing else holds them). On every other backend, and for
//! non-`f32` tensors, it runs burn's `Adam`. The state is burn's [`AdamState`], so records
//! and checkpoints are interchangeable with burn's optimizer.

use burn::{
    module::AutodiffModule,
    optim::{
        Adam, AdamConfig, AdamState, AdaptiveMomentumState, LearningRate, SimpleOptimizer,
        adaptor::OptimizerAdaptor,
    },
    tensor::{DType, Tensor, TensorData, backend::AutodiffBackend, backend::Backend},
};

/// Configuration of [`FusedAdam`]; the defaults are torch's (`β = (0.9, 0.999)`,
/// `ε = 10⁻⁸`; burn's `AdamConfig` defaults to `ε = 10⁻⁵`).
#[derive(burn::config::Config, Debug)]
pub struct FusedAdamConfig {
    /// `β₁`.
    #[config(default = 0.9)]
    pub beta_1: f32,
    /// `β₂`.
    #[config(default = 0.999)]
    pub beta_2: f32,
    /// `ε`.
    #[config(default = 1e-8)]
    pub epsilon: f32,
}

impl FusedAdamConfig {
    /// The optimizer for module `M` on autodiff backend `B`.
    ///
    /// ```
    /// use burn::backend::{Autodiff, NdArray};
    /// use burn::nn::{Linear, LinearConfig};
    /// use flow_kernels::adam::FusedAdamConfig;
    ///
    /// let optim = FusedAdamConfig::new().init::<Autodiff<NdArray>, Linear<Autodiff<NdArray>>>();
    /// # let _ = optim;
    /// ```
    pub fn init<B: AutodiffBackend, M: AutodiffModule<B>>(
        &self,
    ) -> OptimizerAdaptor<FusedAdam, M, B> {
        OptimizerAdaptor::from(self.build())
    }

    /// The bare [`SimpleOptimizer`].
    pub fn build(&self) -> FusedAdam {
        FusedAdam {
            beta_1: self.beta_1,
            beta_2: self.beta_2,
            epsilon: self.epsilon,
            fallback: AdamConfig::new()
                .with_beta_1(self.beta_1)
                .with_beta_2(self.beta_2)
                .with_epsilon(self.epsilon)
                .build(),
        }
    }
}

/// Adam, fused on the CPU backends; see the [module docs](self).
#[derive(Clone)]
pub struct FusedAdam {
    beta_1: f32,
    beta_2: f32,
    epsilon: f32,
    fallback: Adam,
}

/// A tensor's values, taken without a copy where the backend allows it (when nothing else
/// holds the buffer). Only called for host-resident backends, where this is not a
/// device-to-host transfer.
///
/// An `ndarray` array that something else also holds (burn-train's learner keeps the
/// model it validates, its checkpointer the optimizer's record) is copied as one slice:
/// burn-ndarray's `into_data` copies it entry by entry through a dynamic-rank iterator,
/// which made this optimizer the larger part of train-vae's training time.
fn take<B: Backend, const D: usize>(t: Tensor<B, D>) -> TensorData {
    #[cfg(feature = "ndarray")]
    if crate::backends::is::<B, burn::backend::NdArray>() {
        use burn::tensor::{TensorPrimitive, ops::FloatTensor};
        let shape = t.shape();
        let array: burn_ndarray::NdArrayTensor =
            crate::backends::same_type(t.into_primitive().tensor()).expect("B is NdArray");
        if let burn_ndarray::NdArrayTensor::F32(storage) = &array
            && !storage.is_unique()
            && let Some(values) = storage.view().to_slice()
        {
            return TensorData::new(values.to_vec(), shape);
        }
        let t: FloatTensor<B> = crate::backends::same_type(array).expect("B is NdArray");
        return Tensor::<B, D>::from_primitive(TensorPrimitive::Float(t)).into_data();
    }
    t.into_data()
}

/// `x`, or zero when it is subnormal (`|x| < 2⁻¹²⁶`).
///
/// A parameter whose gradient stays zero (a dead ReLU unit, say) has moments that decay
/// geometrically, `m ← β₁ m`, and reach the subnormal range after some 700 steps; x86 CPUs
/// take ~100 cycles for every operation on a subnormal operand, which made realnvp-moons
/// training 1.5× slower from step 700 on. The moments' subnormal values move a parameter by
/// less than `lr · 2⁻¹²⁶ / ε`, nothing, so flushing them changes no result that matters.
#[inline]
fn flush(x: f32) -> f32 {
    if x.abs() < f32::MIN_POSITIVE { 0.0 } else { x }
}

/// Entries per thread task of the update (smaller tensors are one task).
#[cfg(feature = "cpu")]
const CHUNK: usize = 32_768;

/// Entries per block that the update skips when its gradient and moments are all zero.
const SKIP: usize = 64;

/// One step's scalars: `m ← b1·m + (1 − b1)·g`, `v ← b2·v + (1 − b2)·g²`,
/// `θ ← θ − step · m / (√v + eps)`; on the first step the moments start at zero.
#[derive(Clone, Copy)]
struct AdamStep {
    b1: f32,
    b2: f32,
    step: f32,
    eps: f32,
    first: bool,
}

/// A slice of the parameter, its gradient and moments, updated by [`AdamStep`].
struct Chunk<'a> {
    k: AdamStep,
    theta: &'a mut [f32],
    g: &'a [f32],
    m: &'a mut [f32],
    v: &'a mut [f32],
}

impl Chunk<'_> {
    #[inline(always)]
    fn apply(self) {
        let AdamStep {
            b1,
            b2,
            step,
            eps,
            first,
        } = self.k;
        let blocks = self
            .theta
            .chunks_mut(SKIP)
            .zip(self.g.chunks(SKIP))
            .zip(self.m.chunks_mut(SKIP))
            .zip(self.v.chunks_mut(SKIP));
        for (((theta, g), m), v) in blocks {
            // A block whose gradient and moments are all zero (MADE's masked-out weights)
            // would move nowhere: m and v stay 0, θ − step·0/(0 + ε) = θ.
            let bits = g
                .iter()
                .chain(&*m)
                .chain(&*v)
                .fold(0, |a, x| a | x.to_bits());
            if bits & 0x7FFF_FFFF == 0 {
                continue;
            }
            for (((p, &g), m), v) in theta.iter_mut().zip(g).zip(m).zip(v) {
                if first {
                    *m = (1.0 - b1) * g;
                    *v = (1.0 - b2) * g * g;
                } else {
                    *m = flush(b1 * *m + (1.0 - b1) * g);
                    *v = flush(b2 * *v + (1.0 - b2) * g * g);
                }
                *p -= step * *m / (v.sqrt() + eps);
            }
        }
    }
}

/// Compiled inside pulp's dispatch for the CPU's widest SIMD (a struct, not a closure,
/// so that the loop is inlined there; see `affine`'s CPU body).
#[cfg(feature = "cpu")]
impl pulp::WithSimd for Chunk<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        self.apply()
    }
}

impl FusedAdam {
    /// The update on host buffers: `(θ, m, v)` in place from `g`, step `time`, rate `lr`;
    /// blocks of [`CHUNK`] entries split over the threads, each vectorized (AVX-512 or
    /// AVX2, chosen at run time).
    fn update(
        &self,
        lr: f32,
        time: i32,
        theta: &mut [f32],
        g: &[f32],
        m: &mut [f32],
        v: &mut [f32],
    ) {
        let (b1, b2) = (self.beta_1, self.beta_2);
        let bc2 = (1.0 - f64::from(b2).powi(time)).sqrt();
        let k = AdamStep {
            b1,
            b2,
            step: (f64::from(lr) * bc2 / (1.0 - f64::from(b1).powi(time))) as f32,
            eps: (f64::from(self.epsilon) * bc2) as f32,
            first: time == 1,
        };
        #[cfg(feature = "cpu")]
        {
            use rayon::prelude::*;
            theta
                .par_chunks_mut(CHUNK)
                .zip(g.par_chunks(CHUNK))
                .zip(m.par_chunks_mut(CHUNK))
                .zip(v.par_chunks_mut(CHUNK))
                .for_each(|(((theta, g), m), v)| {
                    pulp::Arch::new().dispatch(Chunk { k, theta, g, m, v })
                });
        }
        #[cfg(not(feature = "cpu"))]
        Chunk { k, theta, g, m, v }.apply();
    }
}

impl<B: Backend> SimpleOptimizer<B> for FusedAdam {
    type State<const D: usize> = AdamState<B, D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<B, D>,
        grad: Tensor<B, D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<B, D>, Option<Self::State<D>>) {
        if !crate::enabled()
            || !crate::backends::host_resident::<B>()
            || tensor.dtype() != DType::F32
            || grad.dtype() != DType::F32
        {
            return self.fallback.step(lr, tensor, grad, state);
        }
        let device = tensor.device();
        let shape = tensor.shape();
        let (time, moments) = match state {
            Some(s) => (
                s.momentum.time + 1,
                Some((s.momentum.moment_1, s.momentum.moment_2)),
            ),
            None => (1, None),
        };
        let (mut m, mut v) = match moments {
            Some((m, v)) => (take(m), take(v)),
            None => {
                let zeros = || TensorData::zeros::<f32, _>(shape.clone());
                (zeros(), zeros())
            }
        };
        let mut theta = take(tensor);
        let g = take(grad);
        self.update(
            lr as f32,
            time as i32,
            theta.as_mut_slice::<f32>().expect("an f32 parameter"),
            g.as_slice::<f32>().expect("an f32 gradient"),
            m.as_mut_slice::<f32>().expect("an f32 moment"),
            v.as_mut_slice::<f32>().expect("an f32 moment"),
        );
        let back = |data: TensorData| Tensor::<B, D>::from_data(data, &device);
        let state = AdamState::new(AdaptiveMomentumState::new(time, back(m), back(v)));
        (back(theta), Some(state))
    }

    fn to_device<const D: usize>(mut state: Self::State<D>, device: &B::Device) -> Self::State<D> {
        state.momentum = state.momentum.to_device(device);
        state
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::{
        backend::{Autodiff, NdArray},
        nn::{Linear, LinearConfig},
        optim::{GradientsParams, Optimizer},
        tensor::Distribution,
    };

    type B = Autodiff<NdArray>;

    /// Twenty steps of the fused update against burn's `Adam` (tensor ops, an independent
    /// implementation) from the same start and the same gradients.
    #[test]
    fn matches_burns_adam() {
        let device = Default::default();
        // 301 × 203 + 203 = 61,306 parameters: two update tasks and a SIMD tail.
        let model: Linear<B> = LinearConfig::new(301, 203).init(&device);
        let x = Tensor::<B, 2>::random([16, 301], Distribution::Normal(0.0, 1.0), &device);
        assert!(
            crate::backends::host_resident::<NdArray>(),
            "the test must take the fused path"
        );
        let config = AdamConfig::new().with_epsilon(1e-8);
        let flat = |m: &Linear<B>| -> Vec<f32> {
            let mut v = m.weight.val().into_data().to_vec::<f32>().unwrap();
            v.extend(
                m.bias
                    .as_ref()
                    .unwrap()
                    .val()
                    .into_data()
                    .to_vec::<f32>()
                    .unwrap(),
            );
            v
        };
        // Reading the (lazily initialized) parameters fixes them before the clone.
        let start = flat(&model);
        let (mut ours, mut theirs) = (model.clone(), model);
        let mut fused = FusedAdamConfig::new().init::<B, Linear<B>>();
        let mut reference = config.init::<B, Linear<B>>();
        for step in 0..20 {
            let lr = 1e-2 / (1.0 + step as f64);
            let loss = |m: &Linear<B>| m.forward(x.clone()).tanh().sum();
            let g = GradientsParams::from_grads(loss(&ours).backward(), &ours);
            ours = fused.step(lr, ours, g);
            let g = GradientsParams::from_grads(loss(&theirs).backward(), &theirs);
            theirs = reference.step(lr, theirs, g);
        }
        let (a, b) = (flat(&ours), flat(&theirs));
        let worst = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1e-5, "fused and burn's Adam differ by {worst}");
        let moved = a
            .iter()
            .zip(&start)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(
            moved > 1e-2,
            "20 steps moved the parameters by only {moved}"
        );
    }

    /// Parameters that something else also holds (burn-train's learner keeps the model it
    /// validates) take the one-slice copy: they update exactly as unshared ones, and the
    /// other holder's values stay as they were.
    #[test]
    fn shared_parameters_update_alike_and_leave_the_other_holder() {
        let device = Default::default();
        let model: Linear<B> = LinearConfig::new(37, 19).init(&device);
        let x = Tensor::<B, 2>::random([8, 37], Distribution::Normal(0.0, 1.0), &device);
        let weights = |m: &Linear<B>| m.weight.val().into_data().to_vec::<f32>().unwrap();
        // Reading the (lazily initialized) parameters fixes them before the clone.
        let _ = (weights(&model), model.bias.as_ref().map(|b| b.val()));
        let (mut alone, mut shared) = (model.clone(), model);
        let mut fused = [(); 2].map(|_| FusedAdamConfig::new().init::<B, Linear<B>>());
        let loss = |m: &Linear<B>| m.forward(x.clone()).tanh().sum();
        for _ in 0..3 {
            let g = GradientsParams::from_grads(loss(&alone).backward(), &alone);
            alone = fused[0].step(1e-2, alone, g);
            let held = shared.clone();
            let before = weights(&held);
            let g = GradientsParams::from_grads(loss(&shared).backward(), &shared);
            shared = fused[1].step(1e-2, shared, g);
            assert_eq!(weights(&held), before, "the other holder's values changed");
            assert_ne!(
                weights(&shared),
                before,
                "the shared parameters did not move"
            );
        }
        assert_eq!(weights(&alone), weights(&shared));
    }

    /// Blocks whose gradient and moments are all zero (MADE's masked-out weights) are
    /// skipped and stay exactly as they were; a block with a zero gradient but moments left
    /// from earlier steps still moves, and every other entry updates as without the skip.
    #[test]
    fn all_zero_blocks_are_skipped_and_only_they() {
        let adam = FusedAdamConfig::new().build();
        let n = 5 * SKIP + 7;
        let theta0: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
        // Step 1: block 1 has no gradient; step 2: block 3 has none either.
        let grad = |step: usize, i: usize| {
            let block = i / SKIP;
            if block == 1 || (step == 2 && block == 3) {
                0.0
            } else {
                (i as f32 * 0.11 + step as f32).cos()
            }
        };
        let (mut theta, mut m, mut v) = (theta0.clone(), vec![0.0; n], vec![0.0; n]);
        let (mut theta_ref, mut m_ref, mut v_ref) =
            (theta0.clone(), vec![0.0f64; n], vec![0.0f64; n]);
        for step in 1..=2 {
            let g: Vec<f32> = (0..n).map(|i| grad(step, i)).collect();
            adam.update(1e-2, step as i32, &mut theta, &g, &mut m, &mut v);
            // The reference: Adam in f64 on every entry, no skipping.
            let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8f64);
            for i in 0..n {
                let g = f64::from(g[i]);
                m_ref[i] = b1 * m_ref[i] + (1.0 - b1) * g;
                v_ref[i] = b2 * v_ref[i] + (1.0 - b2) * g * g;
                let m_hat = m_ref[i] / (1.0 - b1.powi(step as i32));
                let v_hat = v_ref[i] / (1.0 - b2.powi(step as i32));
                theta_ref[i] =
                    (f64::from(theta_ref[i]) - 1e-2 * m_hat / (v_hat.sqrt() + eps)) as f32;
            }
        }
        for i in 0..n {
            let off = (theta[i] - theta_ref[i]).abs();
            assert!(off < 1e-6, "entry {i} (block {}): off by {off}", i / SKIP);
        }
        assert_eq!(
            &theta[SKIP..2 * SKIP],
            &theta0[SKIP..2 * SKIP],
            "block 1 moved"
        );
        assert!(
            theta[3 * SKIP] != theta0[3 * SKIP],
            "block 3 (momentum left) did not move"
        );
    }
}
