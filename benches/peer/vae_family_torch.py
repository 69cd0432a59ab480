"""The VAE-posterior family in PyTorch, written from the papers (not from train-vae's code):
an independent implementation of train-vae's MLP protocol, to tell a property of the data
from a defect of ours when train-vae's order of the family differs from the literature's.

Same model and protocol as `benches/vae_family.sh` with train-vae's defaults: encoder
784-512-256 (ReLU), latent D = 32, one linear head from the 256 features to the mean, the
log-variance and every flow parameter; decoder 32-256-512-784 (ReLU), Bernoulli logits;
the first 9,000 embedded digits train (dynamic binarization), the last 1,000 validate (one
fixed binarization); batch 128, Adam 1e-3, KL warm-up `beta = min(1, t / warmup)` in
epochs, the best validation checkpoint (one-sample -ELBO), then -ELBO and IW-NLL with S
samples per image.

Posteriors (K steps; parameters from the encoder unless said):
- none: the diagonal Gaussian.
- planar (Rezende & Mohamed 2015): z + u' tanh(w.z + b), u' the invertible reparametrization.
- iaf (Kingma et al. 2016, as in the Sylvester paper's code): per step a MADE of its own
  (320 units, ELU, two masked hidden layers, the encoder's features projected to 320 and
  added after the first), the gated update z' = s z + (1 - s) m, s = sigmoid(. + 1),
  orders reversed on every second step; `--iaf-style train-vae` swaps in train-vae's MADE
  design (see `IafStep`) to tell the design from the implementation, and `--iaf-change`
  makes one of the differences at a time.
- sylvester-t / -h / -o (van den Berg et al. 2018): z + Q R tanh(R~ Q^T z + b), R and R~
  upper triangular from one full matrix per step plus tanh diagonals; Q the identity and
  the reversal alternating (T), a product of H Householder reflections (H), or M columns
  orthonormalized by the Bjorck iteration (O).

    PY=/path/to/venv/bin/python
    $PY benches/peer/vae_family_torch.py --flow sylvester-t --epochs 100 --seed 0

Prints one JSON line (the summary) on stdout; progress on stderr.
"""

import argparse
import copy
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "..", "crates", "train-vae", "data",
                    "mnist-train-10k-images-idx3-ubyte.gz")


def load_digits(path):
    import gzip
    raw = gzip.open(path).read()
    n = int.from_bytes(raw[4:8], "big")
    x = np.frombuffer(raw[16:], dtype=np.uint8).reshape(n, 784)
    return x[:9000], x[9000:10000]


class Planar:
    def params(self, d):
        return 2 * d + 1

    def step(self, z, p, k):
        d = z.shape[1]
        u, w, b = p[:, :d], p[:, d:2 * d], p[:, 2 * d:]
        wu = (w * u).sum(1, keepdim=True)
        u = u + (F.softplus(wu) - 1 - wu) * w / (w * w).sum(1, keepdim=True)
        a = (w * z).sum(1, keepdim=True) + b
        h = torch.tanh(a)
        ladj = torch.log((1 + (1 - h * h) * (u * w).sum(1, keepdim=True)).abs() + 1e-8)
        return z + u * h, ladj.squeeze(1)


def householder_q(v):
    """Q = H(v_H) ... H(v_1) for v: [n, H, D]."""
    n, hh, d = v.shape
    q = torch.eye(d, dtype=v.dtype).expand(n, d, d)
    for j in range(hh):
        vj = v[:, j, :]
        vj = vj / vj.norm(dim=1, keepdim=True)
        refl = torch.eye(d, dtype=v.dtype) - 2 * vj.unsqueeze(2) * vj.unsqueeze(1)
        q = torch.bmm(refl, q)
    return q


def bjorck(q, tol=1e-5, max_iter=100):
    """Orthonormal columns for q: [n, D, M] by Q <- Q (I + (I - Q^T Q) / 2)."""
    q = q / q.flatten(1).norm(dim=1).view(-1, 1, 1)
    eye = torch.eye(q.shape[2], dtype=q.dtype)
    for _ in range(max_iter):
        qtq = torch.bmm(q.transpose(1, 2), q)
        q = torch.bmm(q, eye + 0.5 * (eye - qtq))
        if (torch.bmm(q.transpose(1, 2), q) - eye).abs().max() < tol:
            break
    return q


class Sylvester:
    def __init__(self, kind, d, m, hh):
        self.kind, self.d, self.hh = kind, d, hh
        self.m = m if kind == "o" else d
        self.triu = torch.triu(torch.ones(self.m, self.m), 1)

    def params(self, d):
        m = self.m
        extra = {"o": d * m, "h": self.hh * d, "t": 0}[self.kind]
        return m * m + 3 * m + extra

    def step(self, z, p, k):
        n, d, m = z.shape[0], self.d, self.m
        full = p[:, :m * m].view(n, m, m)
        diag1 = torch.tanh(p[:, m * m:m * m + m])
        diag2 = torch.tanh(p[:, m * m + m:m * m + 2 * m])
        b = p[:, m * m + 2 * m:m * m + 3 * m]
        rest = p[:, m * m + 3 * m:]
        r1 = full * self.triu + torch.diag_embed(diag1)
        r2 = full.transpose(1, 2) * self.triu + torch.diag_embed(diag2)
        if self.kind == "t":
            zq = z.flip(1) if k % 2 == 1 else z
        else:
            if self.kind == "h":
                q = householder_q(rest.view(n, self.hh, d))
            else:
                q = bjorck(rest.view(n, d, m))
            zq = torch.bmm(z.unsqueeze(1), q).squeeze(1)  # Q^T z
        pre = torch.bmm(r2, zq.unsqueeze(2)).squeeze(2) + b
        h = torch.tanh(pre)
        out = torch.bmm(r1, h.unsqueeze(2)).squeeze(2)  # R h
        if self.kind == "t":
            out = out.flip(1) if k % 2 == 1 else out
        else:
            out = torch.bmm(q, out.unsqueeze(2)).squeeze(2)
        ladj = torch.log((1 + diag1 * diag2 * (1 - h * h)).abs()).sum(1)
        return z + out, ladj


class MaskedLinear(nn.Linear):
    def __init__(self, n_in, n_out, mask):
        super().__init__(n_in, n_out)
        self.register_buffer("mask", mask.float())

    def forward(self, x):
        return F.linear(x, self.weight * self.mask, self.bias)


class IafStep(nn.Module):
    """One IAF step: a MADE with degrees 1..D on the inputs, hidden degrees cycling 1..D-1.

    `paper` (the Sylvester paper's code): ELU, two masked hidden layers, the projected
    context added after the first. `train-vae` (train-vae's design, for attributing a
    difference): ReLU, one masked hidden layer, the encoder's features through this step's
    own bias-free maps into the hidden pre-activation and into the outputs, the output and
    context maps starting at zero.
    """

    def __init__(self, d, hidden, style, context=256, change=None):
        super().__init__()
        self.style, self.change = style, change
        din = torch.arange(1, d + 1)
        dh = torch.arange(hidden) % max(d - 1, 1) + 1
        self.l1 = MaskedLinear(d, hidden, dh[:, None] >= din[None, :])
        if style == "paper" and change != "one-layer":
            self.l2 = MaskedLinear(hidden, hidden, dh[:, None] >= dh[None, :])
        out_mask = din[:, None] > dh[None, :]
        self.mean = MaskedLinear(hidden, d, out_mask)
        self.gate = MaskedLinear(hidden, d, out_mask)
        if style == "train-vae" or change == "context":
            self.ctx_hidden = nn.Linear(context, hidden, bias=False)
            self.ctx_out = nn.Linear(context, 2 * d, bias=False)
        if style == "train-vae":
            for layer in (self.mean, self.gate, self.ctx_hidden, self.ctx_out):
                nn.init.zeros_(layer.weight)
                if layer.bias is not None:
                    nn.init.zeros_(layer.bias)
        if change == "zero-init":
            for layer in (self.mean, self.gate):
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)

    def forward(self, z, ctx):
        if self.change == "context":
            h = F.elu(self.l1(z) + self.ctx_hidden(ctx))
            h = F.elu(self.l2(h))
            cm, cs = self.ctx_out(ctx).chunk(2, dim=1)
            m, s = self.mean(h) + cm, self.gate(h) + cs
        elif self.style == "paper":
            act = F.relu if self.change == "relu" else F.elu
            h = act(self.l1(z)) + ctx
            if self.change != "one-layer":
                h = act(self.l2(h))
            m, s = self.mean(h), self.gate(h)
        else:
            h = F.relu(self.l1(z) + self.ctx_hidden(ctx))
            cm, cs = self.ctx_out(ctx).chunk(2, dim=1)
            m, s = self.mean(h) + cm, self.gate(h) + cs
        s = torch.sigmoid(s + 1.0)
        z = s * z + (1 - s) * m
        return z, torch.log(s).sum(1)


class Vae(nn.Module):
    def __init__(self, flow, k, d=32, m=16, hh=8, iaf_hidden=320, iaf_style="paper",
                 iaf_change=None):
        super().__init__()
        self.flow, self.k, self.d = flow, k, d
        self.step = {"planar": Planar(), "sylvester-t": Sylvester("t", d, m, hh),
                     "sylvester-h": Sylvester("h", d, m, hh),
                     "sylvester-o": Sylvester("o", d, m, hh)}.get(flow)
        self.per_step = self.step.params(d) if self.step else 0
        self.enc = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU())
        self.head = nn.Linear(256, 2 * d + k * self.per_step)
        self.dec = nn.Sequential(nn.Linear(d, 256), nn.ReLU(), nn.Linear(256, 512), nn.ReLU(),
                                 nn.Linear(512, 784))
        if flow == "iaf":
            # The paper's code projects the features once for every step; train-vae's
            # steps read the features themselves.
            paper_ctx = iaf_style == "paper" and iaf_change != "context"
            self.ctx = nn.Linear(256, iaf_hidden) if paper_ctx else nn.Identity()
            self.iaf = nn.ModuleList(IafStep(d, iaf_hidden, iaf_style, change=iaf_change)
                                     for _ in range(k))

    def posterior(self, x, samples=1):
        """z_K and ln q(z_K|x), `samples` per image (image-major rows)."""
        h = self.enc(x)
        out = self.head(h)
        mu, logvar = out[:, :self.d], out[:, self.d:2 * self.d]
        rep = lambda t: t.repeat_interleave(samples, 0)
        mu, logvar = rep(mu), rep(logvar)
        eps = torch.randn_like(mu)
        z = mu + torch.exp(0.5 * logvar) * eps
        log_q = (-0.5 * (eps * eps + logvar + math.log(2 * math.pi))).sum(1)
        if self.step is not None:
            params = rep(out[:, 2 * self.d:])
            for k in range(self.k):
                p = params[:, k * self.per_step:(k + 1) * self.per_step]
                z, ladj = self.step.step(z, p, k)
                log_q = log_q - ladj
        elif self.flow == "iaf":
            ctx = rep(self.ctx(h))
            for k, step in enumerate(self.iaf):
                if k % 2 == 1:
                    z = z.flip(1)
                z, ladj = step(z, ctx)
                log_q = log_q - ladj
        return z, log_q

    def terms(self, x, samples=1):
        z, log_q = self.posterior(x, samples)
        logits = self.dec(z)
        xr = x.repeat_interleave(samples, 0)
        recon = F.binary_cross_entropy_with_logits(logits, xr, reduction="none").sum(1)
        log_p = (-0.5 * (z * z + math.log(2 * math.pi))).sum(1)
        return recon, log_q - log_p


@torch.no_grad()
def evaluate(model, x, samples, chunk=10):
    """Mean -ELBO and IW-NLL over x with `samples` posterior samples per image."""
    elbo, nll = [], []
    for i in range(0, x.shape[0], chunk):
        xb = x[i:i + chunk]
        recon, kl = model.terms(xb, samples)
        lw = -(recon + kl).view(xb.shape[0], samples)
        elbo.append(lw.mean(1))
        nll.append(-(torch.logsumexp(lw, 1) - math.log(samples)))
    return -torch.cat(elbo).mean().item(), torch.cat(nll).mean().item()


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--flow", default="none",
                   choices=["none", "planar", "iaf", "sylvester-t", "sylvester-h", "sylvester-o"])
    p.add_argument("--n-flows", type=int, default=None)
    p.add_argument("--iaf-style", default="paper", choices=["paper", "train-vae"],
                   help="the IAF step's MADE: the Sylvester paper's code or train-vae's design")
    p.add_argument("--iaf-change", default=None, choices=["relu", "one-layer", "zero-init", "context"],
                   help="one change to the paper's IAF, towards train-vae's design: ReLU for "
                        "ELU, one masked hidden layer for two, the outputs starting at zero, "
                        "or the features fed to each step's hidden pre-activation and outputs")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--warmup-epochs", type=int, default=10)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--iw-samples", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--val-seed", type=int, default=1234)
    args = p.parse_args()
    k = args.n_flows if args.n_flows is not None else {"none": 0, "iaf": 8}.get(args.flow, 16)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)

    xtr_u8, xva_u8 = load_digits(DATA)
    xtr = torch.from_numpy(xtr_u8.astype(np.float32) / 255.0)
    g = torch.Generator().manual_seed(args.val_seed)
    xva = torch.bernoulli(torch.from_numpy(xva_u8.astype(np.float32) / 255.0), generator=g)

    if args.iaf_change and (args.flow != "iaf" or args.iaf_style != "paper"):
        p.error("--iaf-change applies to --flow iaf with --iaf-style paper")
    model = Vae(args.flow, k, iaf_style=args.iaf_style, iaf_change=args.iaf_change)
    params = sum(t.numel() for t in model.parameters())
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    steps = xtr.shape[0] // args.batch
    best, best_state, best_epoch, rates = math.inf, None, 0, []
    for ep in range(args.epochs):
        model.train()
        perm = torch.randperm(xtr.shape[0])
        tot, t0 = 0.0, time.time()
        for i in range(steps):
            beta = min(1.0, (ep + i / steps) / args.warmup_epochs) if args.warmup_epochs else 1.0
            x = torch.bernoulli(xtr[perm[i * args.batch:(i + 1) * args.batch]])
            recon, kl = model.terms(x)
            loss = recon.mean() + beta * kl.mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            tot += (recon + kl).mean().item()
        rates.append(steps * args.batch / (time.time() - t0))
        model.eval()
        with torch.no_grad():
            recon, kl = model.terms(xva)
            val = (recon + kl).mean().item()
        if not math.isfinite(val):
            sys.exit(f"diverged in epoch {ep + 1}")
        if val < best:
            best, best_epoch, best_state = val, ep + 1, copy.deepcopy(model.state_dict())
        print(f"epoch {ep + 1}: train {tot / steps:.2f} valid {val:.2f} "
              f"({rates[-1]:.0f} images/s)", file=sys.stderr, flush=True)
    model.load_state_dict(best_state)
    model.eval()
    torch.manual_seed(args.seed + 999)
    t0 = time.time()
    neg_elbo, nll = evaluate(model, xva, args.iw_samples)
    print(json.dumps({
        "flow": args.flow, "k": k, "iaf_style": args.iaf_style if args.flow == "iaf" else None,
        "iaf_change": args.iaf_change, "seed": args.seed, "epochs": args.epochs,
        "warmup_epochs": args.warmup_epochs, "params": params, "best_epoch": best_epoch,
        "valid_neg_elbo_one_sample": best, "neg_elbo": neg_elbo, "nll": nll,
        "iw_samples": args.iw_samples, "eval_s": time.time() - t0,
        "train_images_per_s_median": float(np.median(rates[1:] or rates)),
        "torch": torch.__version__, "threads": args.threads,
    }))


if __name__ == "__main__":
    main()
