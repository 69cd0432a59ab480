"""Fixtures for importing PyTorch flows into flow-core:
crates/flow-core/tests/fixtures/import/<name>.{safetensors,pt,json}.

Environment (a venv; versions pinned, the fixtures' numbers depend on them):

    python3.11 -m venv pyenv
    pyenv/bin/pip install torch==2.15.0 zuko==1.6.0 nflows==0.14 numpy==2.4.6 \
        scikit-learn==1.9.1 safetensors==0.8.0
    pyenv/bin/python scripts/import_fixtures.py

Models (features = 3, small, trained 200 Adam steps on a standardized 3-D toy density so the
weights are away from their initialisation):

    zuko-maf       zuko.flows.MAF(3, transforms=3, hidden_features=(16, 16))
    zuko-nsf       zuko.flows.NSF(3, transforms=3, bins=8, hidden_features=(16, 16))
    nflows-maf     nflows MaskedAutoregressiveFlow(features=3, hidden_features=16,
                   num_layers=2, num_blocks_per_layer=2)          (residual MADE: the default)
    nflows-maf-ff  the same with use_residual_blocks=False, num_blocks_per_layer=1
                   (a plain 2-hidden-layer MADE, flow-core's structure)

Per model:
    <name>.safetensors  the state dict (float32 weights, the library's own key names; masks,
                        orders, degrees and permutations included as stored by torch)
    <name>.pt           torch.save(model.state_dict())
    <name>.json         constructor hyper-parameters, 16 inputs x (float32 values), and
                        log_prob_f64: the library's log_prob(x) with the same float32 weights
                        cast to float64 (model.double()), log_prob_f32: in float32, and
                        a per-step trace (data -> noise) for debugging an import.

The script checks the numpy reference (scripts/import_reference.py, no torch) against
log_prob_f64 (relative to max(1, |log p|): < 1e-12) and log_prob_f32 against
log_prob_f64 (relative: < 1e-5).
"""

import copy
import json
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import import_reference as reference  # noqa: E402

import nflows  # noqa: E402
import zuko  # noqa: E402
from nflows.flows.autoregressive import MaskedAutoregressiveFlow  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

torch.set_num_threads(1)
OUT = os.path.join(HERE, "..", "crates", "flow-core", "tests", "fixtures", "import")
STEPS = 200


def toy_data(n, gen):
    """A curved, correlated 3-D density, standardized with fixed constants."""
    a = torch.randn(n, generator=gen)
    b = 0.8 * a ** 2 - 0.8 + 0.4 * torch.randn(n, generator=gen)
    c = 1.5 * torch.sin(2 * a) + 0.3 * b + 0.3 * torch.randn(n, generator=gen)
    x = torch.stack([a, b, c], 1)
    return (x - torch.tensor([0.0, 0.0, 0.0])) / torch.tensor([1.0, 1.2, 1.2])


def test_inputs():
    gen = torch.Generator().manual_seed(1234)
    x = toy_data(12, gen)
    special = torch.tensor([
        [5.5, 0.3, -0.2],     # first feature beyond the spline bound 5
        [-0.4, -6.0, 1.1],    # second feature below -5
        [7.0, -5.5, 5.2],     # every feature outside
        [4.99, -4.99, 0.0],   # just inside
    ])
    return torch.cat([x, special]).to(torch.float32)


class Zuko(torch.nn.Module):
    """log_prob without a context, as zuko's lazy flows need a call first."""

    def __init__(self, flow):
        super().__init__()
        self.flow = flow

    def log_prob(self, x):
        return self.flow().log_prob(x)


def train(model, log_prob, seed):
    gen = torch.Generator().manual_seed(seed)
    data = toy_data(4096, gen)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(STEPS):
        idx = torch.randint(0, data.shape[0], (256,), generator=gen)
        loss = -log_prob(model, data[idx]).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return loss.item()


def zuko_trace(flow, x):
    """(z, ladj) after each transform, data -> noise."""
    out, z = [], x
    with torch.no_grad():
        for t in flow.transform.transforms:
            z, l = t().call_and_ladj(z)
            out.append({"z": z.tolist(), "ladj": l.tolist()})
    return out


def zuko_hyper0(flow, x):
    with torch.no_grad():
        return flow.transform.transforms[0].hyper(x).tolist()


def nflows_trace(flow, x):
    out, z = [], x
    with torch.no_grad():
        for t in flow._transform._transforms:
            z, l = t(z)
            out.append({"z": z.tolist(), "ladj": l.tolist()})
    return out


def nflows_hyper0(flow, x):
    with torch.no_grad():
        z = flow._transform._transforms[0](x)[0]  # the permutation comes first
        return flow._transform._transforms[1].autoregressive_net(z).tolist()


def write(name, module, state_module, log_prob, cfg, trace, hyper0, hyper_doc):
    os.makedirs(OUT, exist_ok=True)
    module.eval()
    sd = {k: v.detach().contiguous() for k, v in state_module.state_dict().items()}
    st_path = os.path.join(OUT, name + ".safetensors")
    # one metadata key: safetensors writes a map's keys in hash order (not reproducible)
    save_file(sd, st_path, metadata={"model": f"{cfg['library']}.{cfg['class']}"})
    torch.save(state_module.state_dict(), os.path.join(OUT, name + ".pt"))

    x = test_inputs()
    with torch.no_grad():
        lp32 = log_prob(module, x)
        m64 = copy.deepcopy(module).double()
        lp64 = log_prob(m64, x.double())
    x64 = x.double()
    ref = reference.log_prob(reference.load_safetensors(st_path), x64.numpy(), cfg)
    d_ref = float(np.abs(ref - lp64.numpy()).max())
    d_32 = float((lp32.double() - lp64).abs().max())
    rel = lambda d: (d.abs() / lp64.abs().clamp_min(1.0)).max().item()  # noqa: E731
    assert rel(torch.from_numpy(ref) - lp64) < 1e-12, (name, d_ref)
    assert rel(lp32.double() - lp64) < 1e-5, (name, d_32)

    cfg = dict(cfg)
    cfg.update({
        "name": name,
        "versions": {"torch": torch.__version__, "zuko": zuko.__version__,
                     "nflows": getattr(nflows, "__version__", "0.14")},
        "train": {"steps": STEPS, "optimizer": "Adam(lr=3e-3)", "batch": 256},
        "state_dict": {k: {"shape": list(v.shape), "dtype": str(v.dtype).replace("torch.", "")}
                       for k, v in sd.items()},
        "x": x.tolist(),
        "log_prob_f64": lp64.tolist(),
        "log_prob_f32": lp32.double().tolist(),
        "max_abs_diff_reference_vs_f64": d_ref,
        "max_abs_diff_f32_vs_f64": d_32,
        "tolerance_doc": "rows 0-11 are held-out samples of the training density; rows 12-15 "
                         "lie (partly) outside the spline bound [-5, 5], where the affine "
                         "flows extrapolate to large |log p|: compare with "
                         "|got - log_prob_f64| <= 1e-4 * max(1, |log_prob_f64|)",
        "trace_doc": "float64 (z, ladj) after each step of the library's transform list, "
                     "applied to x in the data -> noise direction; log_prob = "
                     "base.log_prob(z_last) + sum of ladj",
        "trace": trace(m64, x64),
        "hyper0_doc": hyper_doc,
        "hyper0_rows_0_1": hyper0(m64, x64[:2]),
    })
    with open(os.path.join(OUT, name + ".json"), "w") as f:
        json.dump(cfg, f, indent=1)
    sizes = {ext: os.path.getsize(os.path.join(OUT, name + ext)) for ext in (".safetensors", ".pt", ".json")}
    print(f"{name:14s} |ref-f64|={d_ref:.1e} |f32-f64|={d_32:.1e} "
          f"log_prob in [{lp64.min().item():.1f}, {lp64.max().item():.1f}] sizes={sizes}")


def main():
    # zuko
    for name, cls, kw, seed in [
        ("zuko-maf", "MAF", dict(transforms=3, hidden_features=[16, 16]), 1),
        ("zuko-nsf", "NSF", dict(transforms=3, bins=8, hidden_features=[16, 16]), 2),
    ]:
        torch.manual_seed(seed)
        flow = getattr(zuko.flows, cls)(3, **kw)
        model = Zuko(flow)
        lp = lambda m, x: m.log_prob(x)  # noqa: E731
        loss = train(model, lp, seed)
        cfg = {"library": "zuko", "class": cls,
               "constructor": {"features": 3, "context": 0, "randperm": False, **kw,
                               **({"slope": 1e-3} if cls == "NSF" else {})},
               "final_train_loss": loss}
        hyper_doc = ("raw MaskedMLP output of transforms.0 for x[0], x[1]: [2, D*P], "
                     "column j*P + p (feature-major)")
        write(name, model, flow, lp, cfg, lambda m, x: zuko_trace(m.flow, x),
              lambda m, x: zuko_hyper0(m.flow, x), hyper_doc)

    # nflows
    for name, kw, seed in [
        ("nflows-maf", dict(features=3, hidden_features=16, num_layers=2, num_blocks_per_layer=2,
                            use_residual_blocks=True), 3),
        ("nflows-maf-ff", dict(features=3, hidden_features=16, num_layers=2, num_blocks_per_layer=1,
                               use_residual_blocks=False), 4),
    ]:
        torch.manual_seed(seed)
        flow = MaskedAutoregressiveFlow(**kw)
        lp = lambda m, x: m.log_prob(x)  # noqa: E731
        flow.train()
        loss = train(flow, lp, seed)
        flow.eval()
        cfg = {"library": "nflows", "class": "MaskedAutoregressiveFlow", "constructor": kw,
               "final_train_loss": loss}
        hyper_doc = ("raw MADE output of _transforms.1 on the reversed x[0], x[1]: [2, 2D], "
                     "column 2j + p, p=0 unconstrained scale, p=1 shift")
        write(name, flow, flow, lp, cfg, nflows_trace, nflows_hyper0, hyper_doc)


if __name__ == "__main__":
    main()
