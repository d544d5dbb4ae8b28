"""Train a small classifier with DistributedDataParallel on CPU and a losslab loss with dist_sync=True.

    torchrun --standalone --nproc-per-node=2 examples/ddp_train.py

Each process holds its own shard of an imbalanced data set in which some
labels are missing (ignore_index). Without dist_sync, each process would
normalise its focal loss by its own number of labelled examples, and the
gradient DDP averages would not be the gradient of the whole batch. With
dist_sync=True the count is all-reduced, every process prints the same,
global loss, and the class weights come from the global class counts.
"""

from __future__ import annotations

import argparse
import os

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

import losslab

CLASSES = 4
IGNORE = -100


def data(rank: int, world: int, n: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's rows of one seeded, imbalanced data set with some labels missing."""
    g = torch.Generator().manual_seed(0)
    y = torch.multinomial(torch.tensor([0.6, 0.25, 0.1, 0.05]), n, replacement=True, generator=g)
    x = torch.randn(n, 8, generator=g) + torch.nn.functional.one_hot(y, 8).float() * 2.5
    y = torch.where(torch.rand(n, generator=g) < 0.2, torch.full_like(y, IGNORE), y)  # unlabelled rows
    rows = torch.arange(rank, n, world)
    return x[rows], y[rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--out", default=None, help="folder for each rank's losses and final weights")
    args = parser.parse_args()
    dist.init_process_group("gloo")  # torchrun sets RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)  # the same initial model on every rank (DDP also broadcasts rank 0's)
    model = DistributedDataParallel(torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(),
                                                        torch.nn.Linear(16, CLASSES)))
    x, y = data(rank, world)
    counts = losslab.class_counts(y, CLASSES, ignore_index=IGNORE, dist_sync=True)  # global counts
    alpha = losslab.class_weights(counts, normalize="mean")
    criterion = losslab.SoftmaxFocalLoss(gamma=2.0, alpha=alpha, ignore_index=IGNORE, dist_sync=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    losses = []
    for step in range(args.steps):
        loss = criterion(model(x), y)  # the loss of the global batch, on every rank
        optimizer.zero_grad()
        loss.backward()  # DDP averages the gradients: the global batch's gradient
        optimizer.step()
        losses.append(loss.item())
        if rank == 0 and (step % 20 == 0 or step == args.steps - 1):
            print(f"step {step:4d}  loss {loss.item():.4f}")
    if args.out:
        state = {k: v.detach().clone() for k, v in model.module.state_dict().items()}
        torch.save({"losses": losses, "state": state}, os.path.join(args.out, f"rank{rank}.pt"))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
