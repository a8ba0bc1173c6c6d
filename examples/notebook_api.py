"""runctl from Python, as in a notebook cell by cell (docs/python-api.md walks through it).

python examples/notebook_api.py          # from the repository root; runs on this machine (provider local)
"""

import runctl

# 1. a run: create -> sync -> train -> wait -> collect -> terminate; nothing is printed, a model comes back
result = runctl.run("examples/train.py", args=["--epochs", "2", "--samples", "200"], provider="local")
print("state:", result.job.state, "| checkpoints:", len(result.checkpoints), "| cost:", result.cost)

# 2. its log, chunk by chunk
log = "".join(runctl.logs(result.job.job_id))
print("last log line:", log.strip().splitlines()[-1])

# 3. a detached run, followed to its end
started = runctl.run("examples/train.py", args=["--epochs", "2", "--samples", "200"], detach=True)
streamed = "".join(runctl.logs(started.job.job_id, follow=True))  # ends when the job does
print("detached job:", runctl.status(started.job.job_id).state)

# 4. what it left: checkpoints, and failures as exceptions
print("files:", sorted(c.name for c in runctl.checkpoints(started.job.job_id))[-1])
try:
    runctl.run("examples/train.py", args=["--epochs", "2", "--fail-at-epoch", "2"])
except runctl.JobFailed as exc:
    print("failed as expected:", exc.message.splitlines()[0])
