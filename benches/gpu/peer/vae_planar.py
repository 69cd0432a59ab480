"""vae-planar: VAE with a K-step planar-flow posterior on dynamically binarized MNIST.

Rezende & Mohamed (2015) style.  Two variants:

  --variant normflows   the normflows library as a user would pick it:
                        nf.NormalizingFlowVAE(prior=nf.distributions.DiagGaussian(32, trainable=False),
                        q0=nf.distributions.NNDiagGaussian(nf.nets.MLP([784,512,256,64])),
                        flows=[nf.flows.Planar((32,)) x K],
                        decoder=nf.distributions.NNBernoulliDecoder(nf.nets.MLP([32,256,512,784]))).
                        Planar parameters (u, w, b) are GLOBAL learnable parameters
                        (normflows has no amortised planar flow).
  --variant amortised   paper-faithful: the encoder's last layer also emits (u, w, b)
                        for every flow step and every data point.  Encoder/decoder
                        nets are the same normflows classes (nf.nets.MLP,
                        nf.distributions.NNBernoulliDecoder, DiagGaussian prior);
                        the per-sample planar step is plain PyTorch (below), using
                        the same u-hat reparametrisation as nf.flows.Planar.

Protocol (identical for both variants):
  data        first 9000 of the 10k-digit IDX file = train, last 1000 = validation.
  train batch 128, drop_last (70 steps = 8960 images per epoch), new random
              permutation each epoch, dynamic binarization x ~ Bernoulli(pixel/255)
              per batch (inside the timed loop).
  loss        mean over batch of  log q0(z0|x) - sum_k log|det J_k| - log N(zK;0,I) - log p(x|zK),
              one z sample per image.  Adam(lr=1e-3), default betas/eps.
  timing      epoch 1 is the warm-up; throughput = images / wall time over epochs
              2..(1+throughput_epochs).  Evaluation is not timed.
  eval        validation binarized once with a fixed seed; per image S importance
              samples z ~ q_K(z|x):  log w_s = log p(x, zK_s) - log qK(zK_s|x).
              val_elbo = mean_s log w_s (averaged over images, nats),
              val_nll_iw = -(logsumexp_s log w_s - log S) (averaged over images, nats).

Prints one JSON line at the end.
"""

import argparse
import math
import statistics

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import normflows as nf

import common


class AmortisedPlanarVAE(nn.Module):
    """Encoder MLP 784-512-256-(2D + K(2D+1)), Gaussian q0, K amortised planar steps,
    Bernoulli decoder MLP D-256-512-784, standard-normal prior."""

    def __init__(self, latent=32, n_flows=10):
        super().__init__()
        self.d = latent
        self.k = n_flows
        self.encoder = nf.nets.MLP([784, 512, 256, 2 * latent + n_flows * (2 * latent + 1)])
        self.decoder = nf.distributions.NNBernoulliDecoder(nf.nets.MLP([latent, 256, 512, 784]))
        self.prior = nf.distributions.DiagGaussian(latent, trainable=False)

    def forward(self, x, num_samples=1):
        """Returns z (B,S,D), log_q (B,S), log_p (B,S) like nf.NormalizingFlowVAE."""
        b, d, k, s = x.shape[0], self.d, self.k, num_samples
        h = self.encoder(x)
        mean, logvar = h[:, :d], h[:, d:2 * d]
        fp = h[:, 2 * d:].reshape(b, 1, k, 2 * d + 1)
        u_all, w_all, b_all = fp[..., :d], fp[..., d:2 * d], fp[..., 2 * d]
        std = torch.exp(0.5 * logvar)
        eps = torch.randn(b, s, d, dtype=x.dtype, device=x.device)
        z = mean[:, None] + std[:, None] * eps
        log_q = -0.5 * d * math.log(2 * math.pi) - torch.sum(
            0.5 * logvar[:, None] + 0.5 * eps ** 2, -1)
        for i in range(k):
            u, w, bb = u_all[:, :, i], w_all[:, :, i], b_all[:, :, i]  # (B,1,D),(B,1,D),(B,1)
            wu = torch.sum(w * u, -1, keepdim=True)
            u_hat = u + (F.softplus(wu) - 1 - wu) * w / torch.sum(w ** 2, -1, keepdim=True)
            lin = torch.sum(w * z, -1) + bb  # (B,S)
            t = torch.tanh(lin)
            z = z + u_hat * t[..., None]
            log_det = torch.log(torch.abs(1 + torch.sum(w * u_hat, -1) * (1 - t ** 2)))
            log_q = log_q - log_det
        zf = z.reshape(b * s, d)
        log_p = self.prior.log_prob(zf) + self.decoder.log_prob(x, zf)
        return z, log_q, log_p.reshape(b, s)


def build(variant, latent, n_flows):
    if variant == "normflows":
        prior = nf.distributions.DiagGaussian(latent, trainable=False)
        q0 = nf.distributions.NNDiagGaussian(nf.nets.MLP([784, 512, 256, 2 * latent]))
        flows = [nf.flows.Planar((latent,)) for _ in range(n_flows)]
        decoder = nf.distributions.NNBernoulliDecoder(nf.nets.MLP([latent, 256, 512, 784]))
        return nf.NormalizingFlowVAE(prior, q0, flows, decoder)
    if variant == "amortised":
        return AmortisedPlanarVAE(latent, n_flows)
    raise ValueError(variant)


@torch.no_grad()
def evaluate(model, xval, samples, chunk):
    elbos, nlls = [], []
    for i in range(0, xval.shape[0], chunk):
        x = xval[i:i + chunk]
        _, log_q, log_p = model(x, num_samples=samples)
        logw = (log_p - log_q).reshape(x.shape[0], samples)
        elbos.append(logw.mean(1))
        nlls.append(-(torch.logsumexp(logw, 1) - math.log(samples)))
    return torch.cat(elbos).mean().item(), torch.cat(nlls).mean().item()


def main():
    p = common.add_common_args(argparse.ArgumentParser(description=__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter))
    p.add_argument("--variant", choices=["normflows", "amortised"], default="normflows")
    p.add_argument("--data", default=common.DEFAULT_MNIST_IMAGES)
    p.add_argument("--epochs", type=int, default=10, help="total training epochs N (>= 1 + throughput-epochs)")
    p.add_argument("--throughput-epochs", type=int, default=2)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--latent", type=int, default=32)
    p.add_argument("--flows", type=int, default=10)
    p.add_argument("--iw-samples", type=int, default=100, help="S for val ELBO / IW-NLL")
    p.add_argument("--eval-chunk", type=int, default=50, help="val images per eval forward")
    p.add_argument("--val-seed", type=int, default=1234, help="seed of the fixed val binarization")
    args = p.parse_args()
    assert args.epochs >= 1 + args.throughput_epochs
    common.setup(args)

    xtr_u8, xva_u8 = common.load_mnist_10k(args.data)
    dev = common.DEVICE
    xtr = torch.from_numpy(xtr_u8.astype(np.float32) / 255.0).to(dev)
    g = torch.Generator().manual_seed(args.val_seed)
    xva = torch.bernoulli(torch.from_numpy(xva_u8.astype(np.float32) / 255.0), generator=g).to(dev)

    model = build(args.variant, args.latent, args.flows).to(dev)
    nparam = common.n_params(model)
    common.log(f"vae-planar/{args.variant}: {nparam} trainable parameters")
    common.log(model)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)

    steps_per_epoch = xtr.shape[0] // args.batch
    epoch_times, epoch_losses = [], []
    model.train()
    for ep in range(args.epochs):
        perm = torch.randperm(xtr.shape[0], device=dev)
        tot = 0.0
        with common.Timer() as t:
            for i in range(steps_per_epoch):
                idx = perm[i * args.batch:(i + 1) * args.batch]
                x = torch.bernoulli(xtr[idx])
                _, log_q, log_p = model(x, num_samples=1)
                loss = torch.mean(log_q) - torch.mean(log_p)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                tot += loss.item()
        epoch_times.append(t.dt)
        epoch_losses.append(tot / steps_per_epoch)
        common.log(f"epoch {ep + 1}: train -ELBO {epoch_losses[-1]:.2f}  {t.dt:.2f}s "
                   f"({steps_per_epoch * args.batch / t.dt:.0f} img/s)")

    timed = epoch_times[1:1 + args.throughput_epochs]
    imgs_per_s = args.throughput_epochs * steps_per_epoch * args.batch / sum(timed)

    model.eval()
    torch.manual_seed(args.seed + 999)
    with common.Timer() as te:
        val_elbo, val_nll = evaluate(model, xva, args.iw_samples, args.eval_chunk)
    common.log(f"val ELBO {val_elbo:.2f}  val IW-NLL(S={args.iw_samples}) {val_nll:.2f}  eval {te.dt:.1f}s")

    common.emit({
        "bench": "vae-planar", "variant": args.variant,
        "planar_params": "global" if args.variant == "normflows" else "amortised",
        "params": nparam, "param_breakdown": common.param_breakdown(model),
        "batch": args.batch, "epochs": args.epochs, "steps_per_epoch": steps_per_epoch,
        "latent": args.latent, "flows": args.flows,
        "train_images_per_s": imgs_per_s,
        "train_steps_per_s": imgs_per_s / args.batch,
        "epoch_times_s": epoch_times,
        "epoch_images_per_s_median_after_warmup": statistics.median(
            steps_per_epoch * args.batch / t for t in epoch_times[1:]),
        "train_neg_elbo_last_epoch": epoch_losses[-1],
        "train_neg_elbo_per_epoch": epoch_losses,
        "val_elbo": val_elbo, "val_nll_iw": val_nll, "iw_samples": args.iw_samples,
        "eval_time_s": te.dt,
    })


if __name__ == "__main__":
    main()
