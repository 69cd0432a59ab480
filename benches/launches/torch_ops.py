#!/usr/bin/env python3
"""Count the operators PyTorch eager runs per training step (and per log_prob batch) for
the four peer benchmarks in shared/peer/, on the CPU, with torch.profiler.

Run from the repository root, with a venv holding the versions below (~1 min):

    python benches/launches/torch_ops.py \
        [--peer ../shared/peer] [--steps 5] [--out benches/launches/torch-ops.json] [--md FILE]

Versions used for the checked-in torch-ops.json: Python 3.11, torch 2.15.0+cu132 (CPU only),
zuko 1.6.0, nflows 0.14, normflows 1.7.3, numpy 2.4.x (the exact versions are recorded in
the JSON under "versions"). torch.set_num_threads(1); the counts do not depend on threads.

Models are built with the peers' own builders (flows_lib.realnvp / maf / nsf and
vae_planar.build) with the scripts' default sizes and batch sizes, and trained exactly as
the scripts' loops do: loss = -model.log_prob(x).mean() (VAE: mean(log_q) - mean(log_p)),
opt.zero_grad(set_to_none=True), loss.backward(), opt.step(), loss.item(), with
torch.optim.Adam(params, lr) (default foreach=None, fused=None). One warm-up step, then
N (=5) profiled steps; all numbers are per-step averages. The data of every step is prepared
as the scripts do (MAF: dequantise + logit inside the loop; VAE: Bernoulli binarisation inside
the loop; moons / MoG: pre-generated batches) and counted in a separate "data" phase.

Phases are marked with torch.profiler.record_function ranges:
  data      batch preparation (indexing, rand, logit / bernoulli)
  forward   model forward + loss
  backward  loss.backward() (CPU-only graph: the autograd engine runs on the calling thread)
  optimizer opt.step() (zero_grad(set_to_none=True) launches nothing)
  item      loss.item()

Counts per phase (all are numbers of profiler events, averaged over the N steps):
  top_level   aten:: events not nested inside another aten:: event. Forward: the ops Python
              calls (aten::linear counts once, its aten::t + aten::addmm are nested). Backward:
              the aten ops called by the autograd nodes (autograd::engine::evaluate_function:
              XBackward0 -> aten::mm, aten::sum, ...), since the node itself is not an aten op.
              Optimizer: the ops torch.optim.Adam calls.
  all         every aten:: event including nested ones (reference only; double counts
              composites: aten::linear + aten::t + aten::transpose + aten::as_strided + aten::addmm).
  kernels     THE LAUNCH ESTIMATE: "leaf" aten:: events -- ops with no counted aten::
              descendant -- excluding ops that never launch a kernel (views / metadata / allocation: view, reshape-without-copy, t,
              transpose, as_strided, expand, slice, select, unsqueeze, detach, empty*, ...,
              and _local_scalar_dense, which is a device->host copy + sync, counted as "syncs").
              A _foreach_* / _fused_* op counts once (its CPU per-tensor fallback is not
              counted; on CUDA it is one or a few multi-tensor-apply launches).
              A composite op (linear, softplus-in-Python, logsumexp, ...) thus counts as the
              kernels it decomposes into, a fused native op (addmm, native_layer_norm, ...) as one.
              This is closer to "CUDA kernel launches" than top_level, which undercounts
              composites and overcounts views (a view at top level launches nothing).
              Caveats: the CPU and CUDA implementations of a few ops decompose differently, and
              one CUDA op may launch 2+ kernels (e.g. a split-K GEMM, a two-pass reduction,
              cuBLAS + bias epilogue), so this is a lower bound on launches and a good
              estimate of the number of *dispatches*.
  autograd_nodes  autograd::engine::evaluate_function events in backward (number of backward
              nodes executed, incl. AccumulateGrad).
  syncs       aten::_local_scalar_dense events (.item(), `if tensor`, int(tensor), ...) plus
              aten::nonzero events (boolean-mask indexing x[mask] -> index -> nonzero: the output
              size must be read back): on a GPU each is a device->host copy that blocks the host
              until the queue drains -- except
              the Adam step counters, which stay on the CPU on GPU too (capturable=False), so the
              optimizer's syncs are not GPU syncs.

Optimizer: the peers call torch.optim.Adam(params, lr) with foreach=None, fused=None. torch
resolves that in _default_to_fused_or_foreach(): foreach only if every parameter is on a
device in _get_foreach_kernels_supported_devices() = [cuda, xpu, mtia, privateuse1], fused
never by default. So the peers' CPU runs use the single-tensor for-loop Adam (~ a dozen ops
per parameter tensor: step += 1, lerp_, mul_, addcmul_, sqrt, div, add_, addcdiv_, plus a
step.item() per tensor) -- that is the "optimizer" column. The same script on a CUDA device
would default to the foreach implementation (a fixed number of _foreach_* ops per step, each
launching ceil(#tensors / ~48-110) multi-tensor-apply kernels, more for large tensors). So the
script also profiles opt.step() with Adam(foreach=True) and Adam(fused=True) (one
_fused_adam_ op, one multi-tensor kernel chain on CUDA) and reports those optimizer counts
under "optimizer_variants"; the training-step totals use the peers' default.
"""

import argparse
import collections
import datetime
import importlib.metadata
import json
import os
import platform
import sys

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile, record_function

# Ops that never launch a device kernel: views, metadata, allocation, dtype/shape queries.
NO_KERNEL = {
    "aten::view", "aten::_unsafe_view", "aten::reshape", "aten::_reshape_alias", "aten::t",
    "aten::numpy_T", "aten::transpose", "aten::permute", "aten::as_strided", "aten::expand",
    "aten::expand_as", "aten::slice", "aten::select", "aten::unsqueeze", "aten::squeeze",
    "aten::detach", "aten::detach_", "aten::alias", "aten::lift_fresh", "aten::empty",
    "aten::empty_like", "aten::empty_strided", "aten::resize_", "aten::result_type",
    "aten::split", "aten::split_with_sizes", "aten::unsafe_split", "aten::chunk",
    "aten::unbind", "aten::narrow", "aten::contiguous", "aten::to", "aten::_to_copy_noop",
    "aten::view_as", "aten::broadcast_tensors", "aten::diagonal", "aten::movedim",
    "aten::unflatten", "aten::flatten", "aten::set_", "aten::is_nonzero", "aten::item",
    "aten::_local_scalar_dense", "aten::size", "aten::stride", "aten::dim",
    "aten::is_same_size", "aten::_has_compatible_shallow_copy_type", "aten::unfold",
    "aten::squeeze_", "aten::unsqueeze_", "aten::as_strided_", "aten::_nested_tensor_size",
    "aten::align_to", "aten::refine_names", "aten::requires_grad_", "aten::retain_grad",
    "aten::_conj", "aten::conj", "aten::resolve_conj", "aten::resolve_neg",
    "aten::index_select_backward_noop", "aten::tensor_split", "aten::swapaxes",
    "aten::matrix_H", "aten::mT", "aten::adjoint", "aten::view_as_real",
}
PHASES = ["data", "forward", "backward", "optimizer", "item"]
TRAIN_PHASES = ["forward", "backward", "optimizer"]


# ----------------------------------------------------------------------------- counting

def _aten(ev):
    return ev.name.startswith("aten::")


def _phase_of(ev):
    p = ev.cpu_parent
    while p is not None:
        if p.name.startswith("phase::"):
            return p.name[len("phase::"):]
        p = p.cpu_parent
    return None


def _multi_tensor(ev):
    return ev.name.startswith("aten::_foreach_") or ev.name.startswith("aten::_fused_")


def _nested_in_aten(ev):
    p = ev.cpu_parent
    while p is not None:
        if _aten(p):
            return True
        p = p.cpu_parent
    return False


def _kernel_events(ev):
    """The events of ev's subtree that count as one launch each: an aten op that is not a
    view / metadata / allocation op and has no counted aten descendant, or a _foreach_* /
    _fused_* op (one multi-tensor dispatch; its CPU per-tensor fallback is not counted)."""
    if _aten(ev) and _multi_tensor(ev):
        return [ev]
    below = [k for ch in ev.cpu_children for k in _kernel_events(ch)]
    if below:
        return below
    if _aten(ev) and ev.name not in NO_KERNEL:
        return [ev]
    return []


def count_events(prof, n):
    """Per-phase averages (over n repetitions) of the counts described in the docstring."""
    raw = collections.defaultdict(lambda: collections.Counter())
    top_names = collections.defaultdict(collections.Counter)
    kern_names = collections.defaultdict(collections.Counter)
    unassigned = 0
    for ev in prof.events():
        ph = _phase_of(ev)
        if ph is None:
            if _aten(ev):
                unassigned += 1
            continue
        c = raw[ph]
        if ev.name.startswith("autograd::engine::evaluate_function"):
            c["autograd_nodes"] += 1
        if not _aten(ev):
            continue
        c["all"] += 1
        if not _nested_in_aten(ev):
            c["top_level"] += 1
            top_names[ph][ev.name] += 1
        if ev.name in ("aten::_local_scalar_dense", "aten::nonzero"):
            c["syncs"] += 1
        if not _nested_in_aten(ev):  # count launches once per top-level aten op subtree
            for k in _kernel_events(ev):
                c["kernels"] += 1
                kern_names[ph][k.name] += 1
    out = {}
    for ph in PHASES:
        if ph not in raw:
            continue
        out[ph] = {k: raw[ph][k] / n for k in ("top_level", "all", "kernels", "autograd_nodes", "syncs")}
        out[ph]["top_level_ops"] = {k: v / n for k, v in top_names[ph].most_common()}
        out[ph]["kernel_ops"] = {k: v / n for k, v in kern_names[ph].most_common()}
    if unassigned:
        out["_unassigned_aten_events"] = unassigned
    return out


def profile_steps(step_fn, n):
    """step_fn(rf) runs one step, wrapping its phases in rf(name) contexts."""
    step_fn(lambda name: record_function("phase::" + name))  # warm-up (not profiled)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(n):
            step_fn(lambda name: record_function("phase::" + name))
    return count_events(prof, n)


def totals(counts, phases):
    return {k: sum(counts[p][k] for p in phases if p in counts)
            for k in ("top_level", "all", "kernels", "syncs")}


# ----------------------------------------------------------------------------- models

def make_train_step(model_call, params, batches, opt_kwargs, lr):
    """The scripts' loop body. model_call(batch) -> loss; batches() -> next batch (data phase)."""
    opt = torch.optim.Adam(params, lr=lr, **opt_kwargs)

    def step(rf):
        with rf("data"):
            x = batches()
        with rf("forward"):
            loss = model_call(x)
        opt.zero_grad(set_to_none=True)
        with rf("backward"):
            loss.backward()
        with rf("optimizer"):
            opt.step()
        with rf("item"):
            loss.item()
    return step


def density_bench(bench, variant, model, train, test, batch):
    """A density peer's step: cycle through the pre-generated batches `train` ([B, batch,
    D]), loss -mean log_prob; log_prob of the whole `test` set."""
    it = iter(range(10 ** 9))
    return dict(bench=bench, variant=variant, batch=batch, lr=1e-3,
                params=list(model.module.parameters()),
                batches=lambda: train[next(it) % train.shape[0]],
                loss=lambda x: -model.log_prob(x).mean(),
                logprob=lambda: model.log_prob(test), logprob_batch=test.shape[0])


def setup_realnvp(variant, peer):
    import datasets
    import flows_lib
    rng = np.random.default_rng(0)
    batch = 512
    train = torch.from_numpy(np.stack([datasets.make_moons(batch, 0.05, rng) for _ in range(16)]))
    test = torch.from_numpy(datasets.make_moons(10000, 0.05, np.random.default_rng(4321)))
    model = flows_lib.realnvp(variant, 2, 8, (256, 256))
    return density_bench("realnvp-moons", variant, model, train, test, batch)


def setup_nsf(variant, peer):
    import datasets
    import flows_lib
    mog = datasets.MoG8()
    batch = 512
    rng = np.random.default_rng(0)
    train = torch.from_numpy(mog.sample(16 * batch, rng)).reshape(16, batch, mog.D)
    test = torch.from_numpy(mog.sample(10000, np.random.default_rng(4321)))
    model = flows_lib.nsf(variant, mog.D, 4, (128, 128), 8)
    return density_bench("nsf-mog", variant, model, train, test, batch)


def setup_maf(variant, peer):
    import common
    import flows_lib
    import maf_mnist
    xtr_u8, xva_u8 = common.load_mnist_10k(common.DEFAULT_MNIST_IMAGES)
    xtr = torch.from_numpy(xtr_u8.astype(np.float32))
    xva_pix = torch.from_numpy(xva_u8.astype(np.float32))
    g = torch.Generator().manual_seed(1234)
    yva, _ = maf_mnist.to_logit(xva_pix, torch.rand(xva_pix.shape, generator=g))
    model = flows_lib.maf(variant, 784, 5, 512, 2)
    batch, lp_batch = 128, 1000
    perm = torch.randperm(xtr.shape[0])
    it = iter(range(10 ** 9))

    def batches():  # as in maf_mnist.main: index, dequantise, logit
        i = next(it) % (xtr.shape[0] // batch)
        pix = xtr[perm[i * batch:(i + 1) * batch]]
        y, _ = maf_mnist.to_logit(pix, torch.rand(pix.shape))
        return y
    return dict(bench="maf-mnist", variant=variant, batch=batch, lr=1e-4,
                params=list(model.module.parameters()), batches=batches,
                loss=lambda x: -model.log_prob(x).mean(),
                logprob=lambda: model.log_prob(yva[:lp_batch]), logprob_batch=lp_batch)


def setup_vae(variant, peer):
    import common
    import vae_planar
    xtr_u8, xva_u8 = common.load_mnist_10k(common.DEFAULT_MNIST_IMAGES)
    xtr = torch.from_numpy(xtr_u8.astype(np.float32) / 255.0)
    g = torch.Generator().manual_seed(1234)
    xva = torch.bernoulli(torch.from_numpy(xva_u8.astype(np.float32) / 255.0), generator=g)
    model = vae_planar.build(variant, 32, 10)
    model.train()
    batch = 128
    perm = torch.randperm(xtr.shape[0])
    it = iter(range(10 ** 9))

    def batches():  # as in vae_planar.main: index + dynamic binarisation
        i = next(it) % (xtr.shape[0] // batch)
        return torch.bernoulli(xtr[perm[i * batch:(i + 1) * batch]])

    def loss(x):
        _, log_q, log_p = model(x, num_samples=1)
        return torch.mean(log_q) - torch.mean(log_p)

    def eval_chunk():  # one chunk of vae_planar.evaluate's model call (50 images x S=100)
        return model(xva[:50], num_samples=100)
    return dict(bench="vae-planar", variant=variant, batch=batch, lr=1e-3,
                params=list(model.parameters()), batches=batches, loss=loss,
                eval_forward=eval_chunk, eval_forward_desc="model(x[50], num_samples=100), no grad")


SETUPS = [("realnvp-moons", setup_realnvp, ["zuko", "nflows"]),
          ("maf-mnist", setup_maf, ["zuko", "nflows"]),
          ("nsf-mog", setup_nsf, ["zuko", "nflows"]),
          ("vae-planar", setup_vae, ["normflows", "amortised"])]

OPT_VARIANTS = {"default (peers: foreach=None -> for-loop on CPU)": {},
                "foreach=True (CUDA default)": {"foreach": True},
                "fused=True": {"fused": True}}


def profile_nograd(fn, n):
    def step(rf):
        with torch.no_grad(), rf("forward"):
            fn()
    return profile_steps(step, n)["forward"]


def versions():
    out = {"python": platform.python_version(), "torch": torch.__version__}
    for name in ("numpy", "zuko", "nflows", "normflows"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def strip(c):  # compact copy without the per-op histograms
    return {k: v for k, v in c.items() if not isinstance(v, dict)}


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--peer", default=os.path.normpath(os.path.join(here, "..", "..", "..", "shared", "peer")))
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--out", default=os.path.join(here, "torch-ops.json"))
    p.add_argument("--md", default=None, help="also write a markdown table here")
    p.add_argument("--only", default=None, help="comma-separated bench names")
    args = p.parse_args()

    sys.path.insert(0, os.path.abspath(args.peer))
    torch.set_num_threads(1)
    n = args.steps
    results = []
    for bench, setup, variants in SETUPS:
        if args.only and bench not in args.only.split(","):
            continue
        for variant in variants:
            opt_variants = {}
            row = None
            for oname, okw in OPT_VARIANTS.items():
                torch.manual_seed(0)
                np.random.seed(0)
                m = setup(variant, args.peer)
                counts = profile_steps(make_train_step(m["loss"], m["params"], m["batches"], okw,
                                                       m["lr"]), n)
                if row is None:  # peers' default optimizer: the main result
                    row = {"bench": bench, "variant": variant, "batch": m["batch"],
                           "param_tensors": len(m["params"]),
                           "params": int(sum(q.numel() for q in m["params"])),
                           "train_step": counts,
                           "train_step_total": totals(counts, TRAIN_PHASES),
                           "train_step_total_incl_data_item": totals(counts, PHASES)}
                    if "logprob" in m:
                        row["logprob_batch"] = m["logprob_batch"]
                        row["logprob"] = profile_nograd(m["logprob"], n)
                    if "eval_forward" in m:
                        row["eval_forward_desc"] = m["eval_forward_desc"]
                        row["eval_forward"] = profile_nograd(m["eval_forward"], n)
                opt_variants[oname] = strip(counts["optimizer"])
            row["optimizer_variants"] = opt_variants
            t = row["train_step_total"]
            print(f"{bench:14s} {variant:10s} B={row['batch']:4d} fwd/bwd/opt top-level "
                  f"{row['train_step']['forward']['top_level']:.0f}/"
                  f"{row['train_step']['backward']['top_level']:.0f}/"
                  f"{row['train_step']['optimizer']['top_level']:.0f} = {t['top_level']:.0f}; "
                  f"kernels {t['kernels']:.0f}; all {t['all']:.0f}", file=sys.stderr, flush=True)
            results.append(row)

    doc = {"what": "aten operator counts per training step / log_prob batch of the peer "
                   "benchmarks, torch.profiler on the CPU; see the script's docstring",
           "script": "benches/launches/torch_ops.py", "profiled_steps": n, "warmup_steps": 1,
           "threads": torch.get_num_threads(), "versions": versions(),
           "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
           "results": results}
    with open(args.out, "w") as f:
        json.dump(doc, f, indent=1)
    if args.md:
        with open(args.md, "w") as f:
            f.write(markdown(doc))


def markdown(doc):
    v = doc["versions"]
    L = [f"# PyTorch eager operator counts of the peer benchmarks",
         "",
         f"torch {v['torch']} (CPU), zuko {v['zuko']}, nflows {v['nflows']}, normflows {v['normflows']}; "
         f"torch.profiler, 1 warm-up + {doc['profiled_steps']} profiled steps, per-step averages. "
         "Script: `benches/launches/torch_ops.py`, raw: `benches/launches/torch-ops.json`.",
         "",
         "Cells are **top-level aten ops** (not nested in another aten op) / **kernel estimate** "
         "(leaf aten ops minus views, metadata and allocations). Optimizer = the peers' "
         "`Adam(params, lr)`, which on the CPU is the per-tensor for-loop; the foreach / fused "
         "columns show what `opt.step()` would be with `foreach=True` (the CUDA default) or `fused=True`. "
         "Total = forward + backward + optimizer (peers' default); data prep and `loss.item()` are "
         "listed separately.",
         "",
         "| model | batch | param tensors | forward | backward | optimizer (for-loop) | **total** | optimizer foreach / fused | total with foreach | data + item | syncs/step (fwd+bwd) | log_prob batch | ops per log_prob batch |",
         "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in doc["results"]:
        s = r["train_step"]
        t = r["train_step_total"]
        fe = r["optimizer_variants"]["foreach=True (CUDA default)"]
        fu = r["optimizer_variants"]["fused=True"]
        tf = {k: s["forward"][k] + s["backward"][k] + fe[k] for k in ("top_level", "kernels")}

        def c(d):
            return f"{d['top_level']:.0f} / {d['kernels']:.0f}"
        di = {k: s.get("data", {}).get(k, 0) + s.get("item", {}).get(k, 0) for k in ("top_level", "kernels")}
        syncs = s["forward"]["syncs"] + s["backward"]["syncs"]
        if "logprob" in r:
            lpb, lp = str(r["logprob_batch"]), c(r["logprob"])
        else:
            lpb, lp = "— (eval chunk 50×S=100)", c(r["eval_forward"])
        L.append(f"| {r['bench']} / {r['variant']} | {r['batch']} | {r['param_tensors']} | "
                 f"{c(s['forward'])} | {c(s['backward'])} | {c(s['optimizer'])} | **{c(t)}** | "
                 f"{c(fe)} · {c(fu)} | {c(tf)} | {c(di)} | {syncs:.0f} | {lpb} | {lp} |")
    return "\n".join(L) + "\n"


if __name__ == "__main__":
    main()
