# /// script
# requires-python = ">=3.9"
# dependencies = []
# ///
"""A small but real training job: logistic regression by mini-batch SGD on generated data, in pure Python.

* Writes a checkpoint per epoch (``ckpt-NNNN.json``: weights, epoch, RNG state) and ``metrics.json`` into
  ``$RUNCTL_CHECKPOINT_DIR`` (default ``./checkpoints``); keeps the newest ``--keep`` checkpoints.
* Resumes from the newest checkpoint when restarted, so an interrupted run ends with the same result as an
  uninterrupted one (the data and the shuffling are seeded and the RNG state is checkpointed).
* Exits 0 when trained; exits 3 if ``--fail-at-epoch`` is reached (to show failures end to end).

    python examples/train.py --epochs 5
    runctl run examples/train.py -- --epochs 5
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from pathlib import Path


def make_data(n: int, dim: int, seed: int) -> tuple[list[list[float]], list[int]]:
    rng = random.Random(seed)
    true_w = [rng.uniform(-2, 2) for _ in range(dim)]
    xs, ys = [], []
    for _ in range(n):
        x = [rng.gauss(0, 1) for _ in range(dim)]
        margin = sum(w * v for w, v in zip(true_w, x)) + rng.gauss(0, 0.5)
        xs.append(x)
        ys.append(1 if margin > 0 else 0)
    return xs, ys


def sigmoid(z: float) -> float:
    if z < -60:
        return 0.0
    return 1.0 / (1.0 + math.exp(-z))


def evaluate(w: list[float], b: float, xs: list[list[float]], ys: list[int]) -> tuple[float, float]:
    loss, correct = 0.0, 0
    for x, y in zip(xs, ys):
        p = min(max(sigmoid(sum(wi * xi for wi, xi in zip(w, x)) + b), 1e-12), 1 - 1e-12)
        loss -= y * math.log(p) + (1 - y) * math.log(1 - p)
        correct += int((p > 0.5) == bool(y))
    return loss / len(xs), correct / len(xs)


def newest_checkpoint(directory: Path) -> Path | None:
    found = sorted(directory.glob("ckpt-*.json"))
    return found[-1] if found else None


def save_json(path: Path, payload: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=1))
    os.replace(tmp, path)  # atomic: a checkpoint is never half written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--dim", type=int, default=8)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=int, default=3, help="checkpoints to keep")
    parser.add_argument("--sleep", type=float, default=0.0, help="extra seconds per epoch (to watch it run)")
    parser.add_argument("--fail-at-epoch", type=int, default=0, help="exit 3 when this epoch starts (demo)")
    args = parser.parse_args(argv)

    ckpt_dir = Path(os.environ.get("RUNCTL_CHECKPOINT_DIR", "checkpoints"))
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    xs, ys = make_data(args.samples, args.dim, args.seed)
    split = int(len(xs) * 0.8)
    train_x, train_y, val_x, val_y = xs[:split], ys[:split], xs[split:], ys[split:]

    w, b, start_epoch = [0.0] * args.dim, 0.0, 0
    rng = random.Random(args.seed + 1)
    latest = newest_checkpoint(ckpt_dir)
    if latest is not None:
        state = json.loads(latest.read_text())
        w, b, start_epoch = state["w"], state["b"], state["epoch"]
        rng.setstate((state["rng"][0], tuple(state["rng"][1]), state["rng"][2]))
        print(f"resumed from {latest.name} (epoch {start_epoch})", flush=True)

    job = os.environ.get("RUNCTL_JOB_ID", "-")
    print(f"job {job}: training on {len(train_x)} samples, {args.dim} features, epochs {start_epoch}->{args.epochs}",
          flush=True)
    history = []
    for epoch in range(start_epoch, args.epochs):
        if args.fail_at_epoch and epoch + 1 == args.fail_at_epoch:
            print(f"epoch {epoch + 1}: failing on purpose (--fail-at-epoch)", file=sys.stderr, flush=True)
            return 3
        order = list(range(len(train_x)))  # a fresh permutation each epoch: resumable from the RNG state alone
        rng.shuffle(order)
        for start in range(0, len(order), args.batch):
            batch = order[start:start + args.batch]
            grad_w, grad_b = [0.0] * args.dim, 0.0
            for i in batch:
                x = train_x[i]
                err = sigmoid(sum(wi * xi for wi, xi in zip(w, x)) + b) - train_y[i]
                for j in range(args.dim):
                    grad_w[j] += err * x[j]
                grad_b += err
            w = [wi - args.lr * gw / len(batch) for wi, gw in zip(w, grad_w)]
            b -= args.lr * grad_b / len(batch)
        train_loss, train_acc = evaluate(w, b, train_x, train_y)
        val_loss, val_acc = evaluate(w, b, val_x, val_y)
        history.append({"epoch": epoch + 1, "train_loss": train_loss, "val_loss": val_loss, "val_acc": val_acc})
        print(f"epoch {epoch + 1}/{args.epochs} train_loss={train_loss:.4f} train_acc={train_acc:.3f} "
              f"val_loss={val_loss:.4f} val_acc={val_acc:.3f}", flush=True)
        state = {"epoch": epoch + 1, "w": w, "b": b, "rng": list(rng.getstate())}
        save_json(ckpt_dir / f"ckpt-{epoch + 1:04d}.json", state)
        for old in sorted(ckpt_dir.glob("ckpt-*.json"))[:-args.keep]:
            old.unlink()
        if args.sleep:
            time.sleep(args.sleep)

    val_loss, val_acc = evaluate(w, b, val_x, val_y)
    save_json(ckpt_dir / "metrics.json", {"epochs": args.epochs, "val_loss": val_loss, "val_acc": val_acc,
                                           "weights": w, "bias": b, "history": history})
    print(f"done: val_acc={val_acc:.3f} val_loss={val_loss:.4f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
