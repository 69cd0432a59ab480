"""nsf-mog: rational-quadratic neural spline coupling flow on a fixed 8-D mixture of Gaussians.

Model: 4 RQ-spline coupling layers, 8 bins, conditioner MLP (ReLU, 2 hidden
layers of 128), half/half split alternating (even layers transform x[4:8] given
x[0:4], odd layers x[0:4] given x[4:8]), base N(0, I_8).
  --variant zuko    zuko.flows.NSF(8, transforms=4, bins=8, passes=2, hidden_features=[128,128])
                    (masked MLP 8 -> 128 -> 128 -> 8*23; spline domain [-5,5], identity outside;
                    the conditioning half gets an unconditional spline from the output biases)
  --variant nflows  nflows PiecewiseRationalQuadraticCouplingTransform(num_bins=8,
                    tails='linear', tail_bound=3.0), MLP 4 -> 128 -> 128 -> 4*23
Data: datasets.MoG8 (formula in datasets.py); fresh batch of 512 per step
(pre-generated before the timed loop); test = 10,000 points, separate seed; the
exact test log-density of the mixture is reported for reference.
Training: Adam(lr=1e-3), loss = -mean log p(x); steps/s measured after --warmup-steps.
Also reports log_prob throughput (no grad, 10k points in one call) and sampling throughput.
"""

import argparse

import numpy as np
import torch

import common
import datasets
import flows_lib
from realnvp_moons import throughput


def main():
    p = common.add_common_args(argparse.ArgumentParser(description=__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter))
    p.add_argument("--variant", choices=["zuko", "nflows"], default="zuko")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--warmup-steps", type=int, default=20)
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--bins", type=int, default=8)
    p.add_argument("--test-n", type=int, default=10000)
    p.add_argument("--test-seed", type=int, default=4321)
    args = p.parse_args()
    common.setup(args)

    mog = datasets.MoG8()
    rng = np.random.default_rng(args.seed)
    train = torch.from_numpy(mog.sample(args.steps * args.batch, rng)).reshape(
        args.steps, args.batch, mog.D).to(common.DEVICE)
    test_np = mog.sample(args.test_n, np.random.default_rng(args.test_seed))
    test = torch.from_numpy(test_np).to(common.DEVICE)
    true_ll = float(mog.log_prob(test_np).mean())

    model = flows_lib.nsf(args.variant, mog.D, args.layers, (args.hidden, args.hidden), args.bins)
    model.module.to(common.DEVICE)
    nparam = common.n_params(model.module)
    common.log(f"nsf-mog/{args.variant}: {nparam} trainable parameters")
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
            if (step + 1) % 250 == 0:
                common.log(f"step {step + 1}: loss {np.mean(losses[-100:]):.4f}")
    t_start.__exit__()
    steps_per_s = (args.steps - args.warmup_steps) / t_start.dt

    with torch.no_grad():
        test_ll = model.log_prob(test).mean().item()
        lp_tp = throughput(lambda: model.log_prob(test), args.test_n)
        smp_tp = throughput(lambda: model.sample(args.test_n), args.test_n)
    common.log(f"steps/s {steps_per_s:.1f}  test LL {test_ll:.4f} (true {true_ll:.4f})  "
               f"log_prob {lp_tp:.0f}/s  sample {smp_tp:.0f}/s")

    common.emit({
        "bench": "nsf-mog", "variant": args.variant, "params": nparam,
        "param_breakdown": common.param_breakdown(model.module, depth=3),
        "batch": args.batch, "steps": args.steps, "warmup_steps": args.warmup_steps,
        "train_steps_per_s": steps_per_s, "train_samples_per_s": steps_per_s * args.batch,
        "train_wall_s": t_all.dt,
        "final_train_loss_avg100": float(np.mean(losses[-100:])),
        "test_ll": test_ll, "test_ll_true_density": true_ll, "test_n": args.test_n,
        "logprob_samples_per_s": lp_tp, "sample_samples_per_s": smp_tp,
    })


if __name__ == "__main__":
    main()
