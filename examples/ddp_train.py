# /// script
# requires-python = ">=3.9"
# dependencies = []
# ///
"""Data-parallel training whose ranks really synchronise: linear regression by full-batch gradient descent,
the data split across ``WORLD_SIZE`` ranks, the gradients summed across ranks every step (an all-reduce over
TCP, in pure Python) - so any number of ranks ends with exactly the weights of a single process.

Why not torch.distributed (gloo)? torch's Linux wheel on PyPI is 539 MB (torch 2.15.0, cp311) and pulls CUDA
libraries of several GB; the CPU-only wheels are only on download.pytorch.org. That is too much for every
machine and for CI; this all-reduce is the same collective, in 60 lines of stdlib. The
all-reduce is exact: each rank sums its gradient contributions as fractions (every float is a fraction), rank
0 adds the ranks' sums and rounds once, so the result does not depend on how the data was split.

Distributed variables (set by ``runctl --nodes N``, by torchrun, or by hand): ``RANK``, ``WORLD_SIZE``,
``MASTER_ADDR``, ``MASTER_PORT``. Without them it runs as a single process. Rank 0 writes ``weights.json``
into ``$RUNCTL_CHECKPOINT_DIR`` (default ``./checkpoints``): a job's checkpoints come from rank 0.

    python examples/ddp_train.py --steps 50                  # one process
    runctl run --nodes 2 examples/ddp_train.py -- --steps 50 # two ranks, same final weights
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import sys
import time
from fractions import Fraction
from pathlib import Path


def make_data(n: int, dim: int, seed: int) -> tuple[list[list[float]], list[float]]:
    rng = random.Random(seed)
    true_w = [rng.uniform(-2, 2) for _ in range(dim)]
    xs = [[rng.uniform(-1, 1) for _ in range(dim)] for _ in range(n)]
    ys = [sum(w * v for w, v in zip(true_w, x)) + rng.gauss(0, 0.1) for x in xs]
    return xs, ys


def local_gradient(w: list[float], xs: list[list[float]], ys: list[float]) -> list[Fraction]:
    """Sum over this rank's samples of d(0.5 * err^2)/dw, exactly (as fractions)."""
    grad = [Fraction(0)] * len(w)
    for x, y in zip(xs, ys):
        err = sum(wi * xi for wi, xi in zip(w, x)) - y
        for i, xi in enumerate(x):
            grad[i] += Fraction(err * xi)
    return grad


class AllReduce:
    """Sum a vector of fractions across ranks: every rank sends its vector to rank 0, rank 0 sends the sum back."""

    def __init__(self, rank: int, world: int, addr: str, port: int, timeout: float = 300.0) -> None:
        self.rank, self.world = rank, world
        self.peers: list[socket.socket] = []
        if world == 1:
            return
        if rank == 0:
            server = socket.create_server(("", port))
            server.settimeout(timeout)
            while len(self.peers) < world - 1:
                conn, _ = server.accept()
                self.peers.append(conn)
            server.close()
            self.files = [conn.makefile("rw") for conn in self.peers]
        else:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    conn = socket.create_connection((addr, port), timeout=timeout)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)  # rank 0 is not listening yet
            self.peers = [conn]
            self.files = [conn.makefile("rw")]

    @staticmethod
    def _encode(vector: list[Fraction]) -> str:
        return json.dumps([[str(v.numerator), str(v.denominator)] for v in vector]) + "\n"

    @staticmethod
    def _decode(line: str) -> list[Fraction]:
        if not line:
            raise ConnectionError("a rank went away during the all-reduce")
        return [Fraction(int(n), int(d)) for n, d in json.loads(line)]

    def sum(self, vector: list[Fraction]) -> list[Fraction]:
        if self.world == 1:
            return vector
        if self.rank == 0:
            total = list(vector)
            for fh in self.files:
                for i, v in enumerate(self._decode(fh.readline())):
                    total[i] += v
            for fh in self.files:
                fh.write(self._encode(total))
                fh.flush()
            return total
        self.files[0].write(self._encode(vector))
        self.files[0].flush()
        return self._decode(self.files[0].readline())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=50, help="gradient steps, e.g. 50")
    parser.add_argument("--samples", type=int, default=256, help="training samples in total, e.g. 256")
    parser.add_argument("--dim", type=int, default=4, help="number of weights, e.g. 4")
    parser.add_argument("--lr", type=float, default=0.5, help="learning rate, e.g. 0.5")
    parser.add_argument("--seed", type=int, default=7, help="data seed, e.g. 7")
    args = parser.parse_args(argv)

    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    xs, ys = make_data(args.samples, args.dim, args.seed)
    mine = range(rank, args.samples, world)  # a strided shard of the data per rank
    my_xs, my_ys = [xs[i] for i in mine], [ys[i] for i in mine]
    print(f"rank {rank}/{world}: {len(my_xs)} of {args.samples} samples", flush=True)
    reduce = AllReduce(rank, world, os.environ.get("MASTER_ADDR", "127.0.0.1"), int(os.environ.get("MASTER_PORT", "0")))

    w = [0.0] * args.dim
    for step in range(1, args.steps + 1):
        grad = reduce.sum(local_gradient(w, my_xs, my_ys))
        w = [wi - args.lr * float(g / args.samples) for wi, g in zip(w, grad)]
        if step % 10 == 0 or step == args.steps:
            loss = sum((sum(a * b for a, b in zip(w, x)) - y) ** 2 for x, y in zip(my_xs, my_ys)) / len(my_xs)
            print(f"rank {rank} step {step}: local loss {loss:.6f}", flush=True)
    print(f"rank {rank} final weights: {json.dumps(w)}", flush=True)
    if rank == 0:
        out = Path(os.environ.get("RUNCTL_CHECKPOINT_DIR", "checkpoints"))
        out.mkdir(parents=True, exist_ok=True)
        (out / "weights.json").write_text(json.dumps({"weights": w, "steps": args.steps, "world_size": world}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
