"""maf-mnist: MAF on dequantised MNIST in logit space (784-D).

Model (both variants): 5 MADE affine autoregressive transforms, the variable
order reversed between consecutive transforms, each MADE a masked MLP
784 -> 512 -> 512 -> 2*784 (ReLU; sequential, non-random degrees), base N(0, I_784).
  --variant zuko    zuko.flows.MAF(784, transforms=5, hidden_features=[512, 512])
                    z = x * exp(a') + b,  a' = a / (1 + |a / ln(1e-3)|)
  --variant nflows  nflows.flows.MaskedAutoregressiveFlow(features=784, hidden_features=512,
                    num_layers=5, num_blocks_per_layer=1, use_residual_blocks=False)
                    (ReversePermutation before every MADE), z = x * s + b, s = softplus(a) + 1e-3
Data: first 9000 images of the 10k file = train, last 1000 = validation.
  dequantise  x = (pixel + u) / 256, u ~ U(0,1) fresh per batch (fixed seed for validation)
  logit       y = logit(alpha + (1 - 2 alpha) x), alpha = 1e-6   (MAF paper)
Training: batch 128, new permutation each epoch, Adam(lr=1e-4), loss = -mean log p(y).
  steps/s = (steps - warmup) / time of the steps after --warmup-steps.
log_prob throughput: no grad, the 1000 validation images, batch --logprob-batch.
sampling throughput: no grad, --sample-batch samples (each MADE inverse = 784 sequential passes).
Reports val log-likelihood in logit space (nats) and bits/dim of the pixel-space
density on [0,256)^784 (change of variables through the logit map).
"""

import argparse
import math

import numpy as np
import torch

import common
import flows_lib

ALPHA = 1e-6


def to_logit(pixels_u8, noise):
    x = (pixels_u8 + noise) / 256.0
    s = ALPHA + (1 - 2 * ALPHA) * x
    y = torch.log(s) - torch.log1p(-s)
    # log |dy/dpixel| summed over dims: y = logit(s), s = alpha + (1-2alpha) p/256
    logdet = (math.log(1 - 2 * ALPHA) - math.log(256.0)
              - torch.log(s) - torch.log1p(-s)).sum(-1)
    return y, logdet


def main():
    p = common.add_common_args(argparse.ArgumentParser(description=__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter))
    p.add_argument("--variant", choices=["zuko", "nflows"], default="zuko")
    p.add_argument("--data", default=common.DEFAULT_MNIST_IMAGES)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--warmup-steps", type=int, default=5)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--layers", type=int, default=5)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--logprob-batch", type=int, default=1000)
    p.add_argument("--sample-batch", type=int, default=64)
    p.add_argument("--val-seed", type=int, default=1234)
    args = p.parse_args()
    common.setup(args)

    xtr_u8, xva_u8 = common.load_mnist_10k(args.data)
    dev = common.DEVICE
    xtr = torch.from_numpy(xtr_u8.astype(np.float32)).to(dev)
    xva_pix = torch.from_numpy(xva_u8.astype(np.float32))
    g = torch.Generator().manual_seed(args.val_seed)
    yva, va_logdet = to_logit(xva_pix, torch.rand(xva_pix.shape, generator=g))
    yva, va_logdet = yva.to(dev), va_logdet.to(dev)

    model = flows_lib.maf(args.variant, 784, args.layers, args.hidden, 2)
    model.module.to(dev)
    nparam = common.n_params(model.module)
    common.log(f"maf-mnist/{args.variant}: {nparam} trainable parameters")
    opt = torch.optim.Adam(model.module.parameters(), lr=args.lr)

    n_tr = xtr.shape[0]
    spe = n_tr // args.batch
    perm = torch.randperm(n_tr, device=dev)
    losses = []
    t_start = None
    with common.Timer() as t_all:
        for step in range(args.steps):
            if step == args.warmup_steps:
                t_start = common.Timer().__enter__()
            i = step % spe
            if i == 0 and step > 0:
                perm = torch.randperm(n_tr, device=dev)
            pix = xtr[perm[i * args.batch:(i + 1) * args.batch]]
            y, _ = to_logit(pix, torch.rand(pix.shape, device=dev))
            loss = -model.log_prob(y).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
            if (step + 1) % 25 == 0:
                common.log(f"step {step + 1}: loss {np.mean(losses[-25:]):.1f}")
    t_start.__exit__()
    steps_per_s = (args.steps - args.warmup_steps) / t_start.dt

    with torch.no_grad():
        def lp_all():
            return torch.cat([model.log_prob(yva[i:i + args.logprob_batch])
                              for i in range(0, yva.shape[0], args.logprob_batch)])
        lp = lp_all()  # also the warm-up
        with common.Timer() as t_lp:
            lp = lp_all()
        lp_tp = yva.shape[0] / t_lp.dt
        val_ll = lp.mean().item()
        val_bpd = (-(lp + va_logdet).mean().item()) / (784 * math.log(2))
        model.sample(2)  # warm-up
        with common.Timer() as t_s:
            smp = model.sample(args.sample_batch)
        smp_tp = args.sample_batch / t_s.dt
        assert smp.shape == (args.sample_batch, 784)
    common.log(f"steps/s {steps_per_s:.2f}  log_prob {lp_tp:.0f}/s  sample {smp_tp:.2f}/s  "
               f"val LL(logit) {val_ll:.1f}  bpd {val_bpd:.3f}")

    common.emit({
        "bench": "maf-mnist", "variant": args.variant, "params": nparam,
        "param_breakdown": common.param_breakdown(model.module, depth=3),
        "batch": args.batch, "steps": args.steps, "warmup_steps": args.warmup_steps,
        "train_steps_per_s": steps_per_s, "train_samples_per_s": steps_per_s * args.batch,
        "train_wall_s": t_all.dt,
        "final_train_loss_avg25": float(np.mean(losses[-25:])),
        "logprob_samples_per_s": lp_tp, "logprob_batch": args.logprob_batch,
        "sample_samples_per_s": smp_tp, "sample_batch": args.sample_batch,
        "sample_time_s": t_s.dt,
        "val_ll_logit_nats": val_ll, "val_bits_per_dim_pixel": val_bpd,
    })


if __name__ == "__main__":
    main()
