"""Shared helpers for the peer (Python) benchmarks.

This copy (flow-rs benches/gpu/peer) adds `--device` (cpu or cuda) to the original in
../shared/peer: `DEVICE` holds it after `setup`, and `Timer` synchronises CUDA at both
ends so that a timed region covers the GPU work it launched.

Every benchmark script imports this module, calls ``setup(args)`` first
(threads + seeds) and ends with ``emit(result)``, which prints exactly one
JSON line on stdout.  Human-readable progress goes to stderr.
"""

import datetime
import gzip
import importlib.metadata
import json
import os
import platform
import random
import struct
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
_MNIST = "mnist-train-10k-images-idx3-ubyte.gz"
# Layouts: <repo>/peer/<this file> with <repo>/shared/data/, or a copy living in
# shared/peer/ next to shared/data/.  The first existing candidate is the default.
_CANDIDATES = [os.path.normpath(os.path.join(HERE, "..", "shared", "data", _MNIST)),
               os.path.normpath(os.path.join(HERE, "..", "data", _MNIST))]
DEFAULT_MNIST_IMAGES = next((c for c in _CANDIDATES if os.path.exists(c)), _CANDIDATES[0])


def add_common_args(p):
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    return p


DEVICE = torch.device("cpu")


def setup(args):
    global DEVICE
    DEVICE = torch.device(args.device)
    if DEVICE.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: torch sees no CUDA device")
        # Plain f32 matmuls, as on the Rust side (no TF32).
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)


def sync():
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def versions():
    out = {"python": platform.python_version(), "torch": torch.__version__}
    for name in ("numpy", "zuko", "nflows", "normflows"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def load_avg():
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def emit(result):
    result = dict(result)
    result["argv"] = sys.argv[1:]
    result["versions"] = versions()
    result["threads"] = torch.get_num_threads()
    result["device"] = str(DEVICE)
    if DEVICE.type == "cuda":
        result["gpu"] = torch.cuda.get_device_name(DEVICE)
    result["loadavg_1m_at_end"] = load_avg()
    result["date_utc"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    print(json.dumps(result, sort_keys=True), flush=True)


def n_params(module):
    return int(sum(p.numel() for p in module.parameters() if p.requires_grad))


def param_breakdown(module, depth=2):
    """Parameter counts grouped by the first `depth` components of the name."""
    out = {}
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        key = ".".join(name.split(".")[:depth])
        out[key] = out.get(key, 0) + p.numel()
    return out


class Timer:
    def __enter__(self):
        sync()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        sync()
        self.dt = time.perf_counter() - self.t0


def read_idx(path):
    """Read an IDX file (optionally .gz): returns a numpy uint8 array."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype, ndim = data[0:2], data[2], data[3]
    assert zero == b"\x00\x00" and dtype == 0x08, "only unsigned-byte IDX supported"
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    return arr.reshape(dims)


def load_mnist_10k(path):
    """Returns (train, val) uint8 arrays of shape (9000, 784) and (1000, 784)."""
    x = read_idx(path).reshape(-1, 784)
    assert x.shape[0] == 10000, x.shape
    return x[:9000], x[9000:]
