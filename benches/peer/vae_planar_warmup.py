"""The peer's amortised planar VAE (shared/peer/vae_planar.py --variant amortised) with KL
warm-up, so that it can be compared with train-vae under the same objective.

Everything except the loss comes from the peer script itself (imported, not copied): the
model, the data split, the evaluation. The loss is train-vae's warm-up objective:

    loss = mean(-log p(x|z_K)) + beta * mean(log q_K(z_K|x) - log p(z_K)),
    beta = min(1, (epoch - 1 + step / steps_per_epoch) / warmup_epochs)   (1 when warmup = 0)

with epoch counted from 1 and step from 0, as in crates/train-vae/src/training/loader.rs. With
`--warmup-epochs 0` this is exactly the peer's loss.

    python benches/peer/vae_planar_warmup.py --peer ../shared/peer --epochs 40 --warmup-epochs 10

Prints the peer's JSON line, with "warmup_epochs" added.
"""

import argparse
import statistics
import sys


def main():
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--peer", default="../shared/peer")
    known, rest = pre.parse_known_args()
    sys.path.insert(0, known.peer)
    import numpy as np
    import torch

    import common
    import vae_planar as peer

    p = common.add_common_args(argparse.ArgumentParser(description=__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter))
    p.add_argument("--data", default=common.DEFAULT_MNIST_IMAGES)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--warmup-epochs", type=int, default=0)
    p.add_argument("--throughput-epochs", type=int, default=2)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--latent", type=int, default=32)
    p.add_argument("--flows", type=int, default=10)
    p.add_argument("--iw-samples", type=int, default=100)
    p.add_argument("--eval-chunk", type=int, default=50)
    p.add_argument("--val-seed", type=int, default=1234)
    args = p.parse_args(rest)
    assert args.epochs >= 1 + args.throughput_epochs
    common.setup(args)

    xtr_u8, xva_u8 = common.load_mnist_10k(args.data)
    xtr = torch.from_numpy(xtr_u8.astype(np.float32) / 255.0)
    g = torch.Generator().manual_seed(args.val_seed)
    xva = torch.bernoulli(torch.from_numpy(xva_u8.astype(np.float32) / 255.0), generator=g)

    model = peer.build("amortised", args.latent, args.flows)
    nparam = common.n_params(model)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    steps = xtr.shape[0] // args.batch
    epoch_times, epoch_losses = [], []
    model.train()
    for ep in range(args.epochs):
        perm = torch.randperm(xtr.shape[0])
        tot = 0.0
        with common.Timer() as t:
            for i in range(steps):
                beta = 1.0
                if args.warmup_epochs > 0:
                    beta = min(1.0, (ep + i / steps) / args.warmup_epochs)
                x = torch.bernoulli(xtr[perm[i * args.batch:(i + 1) * args.batch]])
                z, log_q, log_p = model(x, num_samples=1)
                log_prior = model.prior.log_prob(z.reshape(-1, args.latent)).reshape(log_q.shape)
                recon = -(log_p - log_prior)
                loss = recon.mean() + beta * (log_q - log_prior).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                tot += (recon + log_q - log_prior).mean().item()
        epoch_times.append(t.dt)
        epoch_losses.append(tot / steps)
        common.log(f"epoch {ep + 1}: train -ELBO {epoch_losses[-1]:.2f}  {t.dt:.2f}s")

    timed = epoch_times[1:1 + args.throughput_epochs]
    imgs = args.throughput_epochs * steps * args.batch / sum(timed)
    model.eval()
    torch.manual_seed(args.seed + 999)
    val_elbo, val_nll = peer.evaluate(model, xva, args.iw_samples, args.eval_chunk)
    common.log(f"val ELBO {val_elbo:.2f}  val IW-NLL(S={args.iw_samples}) {val_nll:.2f}")
    common.emit({
        "bench": "vae-planar", "variant": "amortised", "params": nparam,
        "batch": args.batch, "epochs": args.epochs, "warmup_epochs": args.warmup_epochs,
        "latent": args.latent, "flows": args.flows,
        "train_images_per_s": imgs,
        "epoch_images_per_s_median_after_warmup": statistics.median(
            steps * args.batch / t for t in epoch_times[1:]),
        "train_neg_elbo_last_epoch": epoch_losses[-1],
        "val_elbo": val_elbo, "val_nll_iw": val_nll, "iw_samples": args.iw_samples,
    })


if __name__ == "__main__":
    main()
