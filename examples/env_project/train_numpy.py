"""A job whose dependency comes from the project's requirements.txt (numpy): runctl installs it on the machine.

    runctl run --project examples/env_project train_numpy.py -- --steps 200
"""

import argparse
import json
import os

import numpy as np

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=100)
args = parser.parse_args()
print(f"numpy {np.__version__} imported from {os.path.dirname(np.__file__)}", flush=True)

# least squares by gradient descent on a fixed synthetic problem
rng = np.random.default_rng(0)
x = rng.normal(size=(256, 4))
true_w = np.array([1.5, -2.0, 0.5, 3.0])
y = x @ true_w + 0.01 * rng.normal(size=256)
w = np.zeros(4)
for _ in range(args.steps):
    w -= 0.1 * (2 / len(x)) * x.T @ (x @ w - y)
loss = float(np.mean((x @ w - y) ** 2))
print(f"loss {loss:.6f} after {args.steps} steps", flush=True)
out = os.environ.get("RUNCTL_CHECKPOINT_DIR", ".")
with open(os.path.join(out, "weights.json"), "w") as fh:
    json.dump({"weights": w.tolist(), "loss": loss}, fh)
