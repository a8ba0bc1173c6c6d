"""The remote-job layer: how runctl runs a job on any machine it can reach.

* :mod:`runctl_core.remote.transport` - the :class:`~runctl_core.remote.transport.Transport` protocol a provider
  implements for its machines (run a command, put/get files, read a byte range, walk, remove) and
  :class:`~runctl_core.remote.transport.LocalTransport`;
* :mod:`runctl_core.remote.records` - tags, terminal states, job record -> ``JobStatus``, atomic JSON, UTF-8-safe
  log chunks;
* ``runner.py`` - the job supervisor that runs *on the machine* (shipped as a file; stdlib only, Python >= 3.8);
* ``ranks.py`` - the multi-node launcher next to it: N ranks, torchrun-compatible variables, the job's outcome
  from every rank's (shipped with ``runner.py``).
"""

from __future__ import annotations

from pathlib import Path

RUNNER_PATH = Path(__file__).with_name("runner.py")
RANKS_PATH = Path(__file__).with_name("ranks.py")


def runner_source() -> str:
    """The job runner's source, for providers that upload it to a remote machine."""
    return RUNNER_PATH.read_text(encoding="utf-8")
