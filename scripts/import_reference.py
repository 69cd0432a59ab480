"""Pure-numpy reference for the log-density of three PyTorch flow libraries, computed from a
state dict saved as .safetensors (no torch, zuko or nflows import).

Models:
  - zuko 1.6.0  zuko.flows.MAF   (MaskedAutoregressiveTransform + MonotonicAffineTransform)
  - zuko 1.6.0  zuko.flows.NSF   (MaskedAutoregressiveTransform + MonotonicRQSTransform)
  - nflows 0.14 nflows.flows.autoregressive.MaskedAutoregressiveFlow
    (ReversePermutation + MaskedAffineAutoregressiveTransform on a MADE, residual or not)

Everything is computed in float64. See SPEC.md for the formulas.

Usage:
  python reference.py model.safetensors model.json   # compares with the json's log_prob
"""

import json
import math
import struct
import sys

import numpy as np

LN_2PI = math.log(2.0 * math.pi)

_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": None,
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8,
    "BOOL": np.bool_,
}


def load_safetensors(path):
    """A .safetensors file: u64 little-endian header length N, N bytes of JSON
    {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__"?: {...}},
    then the raw little-endian, row-major (C order) tensor bytes; offsets are relative to
    the end of the header."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        dt = _DTYPES[info["dtype"]]
        out[name] = np.frombuffer(data[b:e], dtype=dt).reshape(info["shape"]).copy()
    return out


# ---------------------------------------------------------------- common pieces

def relu(x):
    return np.maximum(x, 0.0)


def masked_linear(h, sd, prefix):
    """torch: y = h (W ⊙ M)^T + b, W: [out, in], M: [out, in] (bool or 0/1 float)."""
    w = sd[prefix + ".weight"].astype(np.float64)
    m = sd[prefix + ".mask"].astype(np.float64)
    b = sd[prefix + ".bias"].astype(np.float64)
    return h @ (w * m).T + b


def softplus(x):
    # torch.nn.functional.softplus (beta=1, threshold=20): x where x > 20
    return np.where(x > 20.0, x, np.log1p(np.exp(np.minimum(x, 20.0))))


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def std_normal_log_prob(z):
    return -0.5 * (z ** 2).sum(-1) - 0.5 * z.shape[-1] * LN_2PI


def diag_normal_log_prob(z, loc, scale):
    u = (z - loc) / scale
    return (-0.5 * u ** 2 - np.log(scale) - 0.5 * LN_2PI).sum(-1)


# ---------------------------------------------------------------- zuko

def zuko_hyper(sd, t, x):
    """zuko.nn.MaskedMLP (residual=False, ReLU): Sequential of MaskedLinear at even
    indices 0, 2, ..., 2L, ReLU between them (not after the last)."""
    prefix = f"transform.transforms.{t}.hyper"
    idx = sorted({int(k[len(prefix) + 1:].split(".")[0]) for k in sd if k.startswith(prefix + ".")})
    h = x
    for n, i in enumerate(idx):
        h = masked_linear(h, sd, f"{prefix}.{i}")
        if n + 1 < len(idx):
            h = relu(h)
    return h  # [n, D*P], feature-major: column j*P + p


def zuko_n_transforms(sd):
    return 1 + max(int(k.split(".")[2]) for k in sd if k.startswith("transform.transforms."))


def zuko_affine(x, phi, slope=1e-3):
    """MonotonicAffineTransform(shift=phi[...,0], scale=phi[...,1]), data -> noise."""
    shift, a = phi[..., 0], phi[..., 1]
    log_scale = a / (1.0 + np.abs(a / math.log(slope)))
    return x * np.exp(log_scale) + shift, log_scale.sum(-1)


def zuko_rqs(x, w, h, d, bound=5.0, slope=1e-3):
    """MonotonicRQSTransform.call_and_ladj, data -> noise. x: [n, D], w, h: [n, D, K],
    d: [n, D, K-1]."""
    ls = math.log(slope)
    w = w / (1.0 + np.abs(2.0 * w / ls))
    h = h / (1.0 + np.abs(2.0 * h / ls))
    d = d / (1.0 + np.abs(d / ls))
    K = w.shape[-1]
    pad0 = lambda a: np.concatenate([np.zeros(a.shape[:-1] + (1,)), a], -1)
    xs = bound * (2.0 * np.cumsum(pad0(softmax(w)), -1) - 1.0)  # [n, D, K+1]
    ys = bound * (2.0 * np.cumsum(pad0(softmax(h)), -1) - 1.0)
    ds = np.exp(np.concatenate([np.zeros(d.shape[:-1] + (1,)), d, np.zeros(d.shape[:-1] + (1,))], -1))
    k = (xs < x[..., None]).sum(-1) - 1  # bin index; -1 or K means outside
    inside = (k >= 0) & (k < K)
    kk = np.where(inside, k, 0)
    g = lambda a, o: np.take_along_axis(a, (kk + o)[..., None], -1)[..., 0]
    x0, x1, y0, y1, d0, d1 = g(xs, 0), g(xs, 1), g(ys, 0), g(ys, 1), g(ds, 0), g(ds, 1)
    s = (y1 - y0) / (x1 - x0)
    z = np.where(inside, (x - x0) / (x1 - x0), 0.0)
    zz = z * (1.0 - z)
    den = s + (d0 + d1 - 2.0 * s) * zz
    y = y0 + (y1 - y0) * (s * z ** 2 + d0 * zz) / den
    jac = s ** 2 * (2.0 * s * zz + d0 * (1.0 - z) ** 2 + d1 * z ** 2) / den ** 2
    ladj = np.where(inside, np.log(jac), 0.0)
    return np.where(inside, y, x), ladj.sum(-1)


def zuko_log_prob(sd, x, kind, bins=8, bound=5.0, slope=1e-3, trace=None):
    """zuko MAF ("affine") or NSF ("spline"): transforms 0..T-1 applied to the data in
    order, then the DiagNormal base (buffers base.loc, base.scale)."""
    z = np.asarray(x, np.float64)
    n, D = z.shape
    total = 2 if kind == "affine" else 3 * bins - 1
    ladj = np.zeros(n)
    for t in range(zuko_n_transforms(sd)):
        phi = zuko_hyper(sd, t, z).reshape(n, D, total)  # [n, D, P]
        if kind == "affine":
            z, l = zuko_affine(z, phi, slope)
        else:
            z, l = zuko_rqs(z, phi[..., :bins], phi[..., bins:2 * bins], phi[..., 2 * bins:], bound, slope)
        ladj = ladj + l
        if trace is not None:
            trace.append({"z": z.copy(), "ladj": l.copy()})
    loc = sd["base.loc"].astype(np.float64)
    scale = sd["base.scale"].astype(np.float64)
    return diag_normal_log_prob(z, loc, scale) + ladj


# ---------------------------------------------------------------- nflows

def nflows_made(sd, prefix, x, residual):
    """nflows.transforms.made.MADE (no context, no batch norm, dropout inactive)."""
    h = masked_linear(x, sd, prefix + ".initial_layer")
    if not residual:
        h = relu(h)
    b = 0
    while f"{prefix}.blocks.{b}.linear.weight" in sd or f"{prefix}.blocks.{b}.linear_layers.0.weight" in sd:
        if residual:
            t = relu(h)
            t = masked_linear(t, sd, f"{prefix}.blocks.{b}.linear_layers.0")
            t = relu(t)
            t = masked_linear(t, sd, f"{prefix}.blocks.{b}.linear_layers.1")
            h = h + t
        else:
            h = relu(masked_linear(h, sd, f"{prefix}.blocks.{b}.linear"))
        b += 1
    return masked_linear(h, sd, prefix + ".final_layer")  # [n, 2D], column 2j + p


def nflows_log_prob(sd, x, residual=True, trace=None):
    """nflows MaskedAutoregressiveFlow: _transform._transforms.{i} applied to the data in
    order (even i: Permutation with buffer _permutation, odd i: affine MADE), then
    StandardNormal."""
    z = np.asarray(x, np.float64)
    n, D = z.shape
    ladj = np.zeros(n)
    i = 0
    while True:
        pkey = f"_transform._transforms.{i}._permutation"
        mkey = f"_transform._transforms.{i}.autoregressive_net"
        if pkey in sd:
            z = z[:, sd[pkey]]  # index_select(inputs, 1, perm)
            if trace is not None:
                trace.append({"z": z.copy(), "ladj": np.zeros(n)})
        elif mkey + ".initial_layer.weight" in sd:
            p = nflows_made(sd, mkey, z, residual).reshape(n, D, 2)
            u, shift = p[..., 0], p[..., 1]
            scale = softplus(u) + 1e-3
            z = scale * z + shift
            l = np.log(scale).sum(-1)
            ladj = ladj + l
            if trace is not None:
                trace.append({"z": z.copy(), "ladj": l.copy()})
        else:
            break
        i += 1
    return std_normal_log_prob(z) + ladj


# ---------------------------------------------------------------- entry points

def log_prob(sd, x, cfg, trace=None):
    lib, cls = cfg["library"], cfg["class"]
    c = cfg["constructor"]
    if lib == "zuko" and cls == "MAF":
        return zuko_log_prob(sd, x, "affine", trace=trace)
    if lib == "zuko" and cls == "NSF":
        return zuko_log_prob(sd, x, "spline", bins=c.get("bins", 8), bound=5.0,
                             slope=c.get("slope", 1e-3), trace=trace)
    if lib == "nflows" and cls == "MaskedAutoregressiveFlow":
        return nflows_log_prob(sd, x, residual=c.get("use_residual_blocks", True), trace=trace)
    raise ValueError(f"unknown model {lib}.{cls}")


def main(st_path, json_path):
    sd = load_safetensors(st_path)
    cfg = json.load(open(json_path))
    x = np.array(cfg["x"], np.float32).astype(np.float64)
    lp = log_prob(sd, x, cfg)
    for key in ("log_prob_f64", "log_prob_f32"):
        if key in cfg:
            print(f"{json_path}: max |reference - {key}| = {np.abs(lp - np.array(cfg[key])).max():.3e}")
    return lp


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
