"""realnvp-moons: RealNVP density estimation on 2-D two-moons.

Model (both variants): 8 affine coupling layers on x in R^2, alternating masks
(layer i keeps feature i%2, transforms the other one), conditioner MLP
1 -> 256 -> 256 -> 2 (ReLU), base N(0, I_2).
  --variant zuko    zuko.flows.RealNVP(2, transforms=8, hidden_features=[256, 256])
                    y = x * exp(a') + b,  a' = a / (1 + |a / ln(1e-3)|)   (soft-clipped log-scale)
  --variant nflows  nflows AffineCouplingTransform x 8 (+ nflows MLP conditioner), StandardNormal
                    y = x * s + b,  s = sigmoid(a + 2) + 1e-3
Data: each training step draws a fresh batch of 512 from make_moons(512, noise=0.05)
(sklearn formula, see datasets.py); batches are generated before the timed loop.
Test: 10,000 fresh points make_moons(10000, noise=0.05) with a separate seed.
Training: Adam(lr=1e-3), loss = -mean log p(x), 2000 steps; steps/s is measured
over steps warmup..steps (the first --warmup-steps are excluded).
Also reports log_prob and sampling throughput (no grad) on 10k points.
"""

import argparse

import numpy as np
import torch

import common
import datasets
import flows_lib


def throughput(fn, n_items, min_time=1.0, max_reps=50):
    fn()  # warm-up
    reps, t_tot = 0, 0.0
    while t_tot < min_time and reps < max_reps:
        with common.Timer() as t:
            fn()
        t_tot += t.dt
        reps += 1
    return n_items * reps / t_tot


def main():
    p = common.add_common_args(argparse.ArgumentParser(description=__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter))
    p.add_argument("--variant", choices=["zuko", "nflows"], default="zuko")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--warmup-steps", type=int, default=20)
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--test-n", type=int, default=10000)
    p.add_argument("--test-seed", type=int, default=4321)
    args = p.parse_args()
    common.setup(args)

    rng = np.random.default_rng(args.seed)
    dev = common.DEVICE
    train = torch.from_numpy(np.stack([datasets.make_moons(args.batch, 0.05, rng)
                                       for _ in range(args.steps)])).to(dev)
    test = torch.from_numpy(datasets.make_moons(args.test_n, 0.05,
                                                np.random.default_rng(args.test_seed))).to(dev)

    model = flows_lib.realnvp(args.variant, 2, args.layers, (args.hidden, args.hidden))
    model.module.to(dev)
    nparam = common.n_params(model.module)
    common.log(f"realnvp-moons/{args.variant}: {nparam} trainable parameters")
    opt = torch.optim.Adam(model.module.parameters(), lr=args.lr)

    losses = []
    t_start = None
    with common.Timer() as t_all:
        for step in range(args.steps):
            if step == args.warmup_steps:
                t_start = common.Timer().__enter__()
            loss = -model.log_prob(train[step]).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
            if (step + 1) % 500 == 0:
                common.log(f"step {step + 1}: loss {np.mean(losses[-100:]):.4f}")
    t_start.__exit__()
    steps_per_s = (args.steps - args.warmup_steps) / t_start.dt

    with torch.no_grad():
        test_ll = model.log_prob(test).mean().item()
        lp_tp = throughput(lambda: model.log_prob(test), args.test_n)
        smp_tp = throughput(lambda: model.sample(args.test_n), args.test_n)
    common.log(f"steps/s {steps_per_s:.1f}  test LL {test_ll:.4f}  "
               f"log_prob {lp_tp:.0f}/s  sample {smp_tp:.0f}/s")

    common.emit({
        "bench": "realnvp-moons", "variant": args.variant, "params": nparam,
        "param_breakdown": common.param_breakdown(model.module, depth=3),
        "batch": args.batch, "steps": args.steps, "warmup_steps": args.warmup_steps,
        "train_steps_per_s": steps_per_s, "train_samples_per_s": steps_per_s * args.batch,
        "train_wall_s": t_all.dt,
        "final_train_loss_avg100": float(np.mean(losses[-100:])),
        "test_ll": test_ll, "test_n": args.test_n,
        "logprob_samples_per_s": lp_tp, "sample_samples_per_s": smp_tp,
    })


if __name__ == "__main__":
    main()
