"""The remote-job layer: how runctl runs a job on any machine it can reach.

* :mod:`runctl_core.remote.transport` - the :class:`~runctl_core.remote.transport.Transport` protocol a provider
  implements for its machines (run a command, put/get files, read a byte range, walk, remove) and
  :class:`~runctl_core.remote.transport.LocalTransport`;
* :mod:`runctl_core.remote.records` - tags, terminal states, job record -> ``JobStatus``, atomic JSON, UTF-8-safe
  log chunks;
* ``runner.py`` - the job supervisor that runs *on the machine* (stdlib only, Python >= 3.8), shipped with its
  modules ``runner_procs.py``, ``runner_records.py``, ``runner_supervise.py``, ``runner_files.py`` as files in one
  directory (:data:`RUNNER_PATHS`);
* ``ranks.py`` - the multi-node launcher next to it: N ranks, torchrun-compatible variables, the job's outcome
  from every rank's (shipped with ``runner.py``).
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

RUNNER_PATH = Path(__file__).with_name("runner.py")
RANKS_PATH = Path(__file__).with_name("ranks.py")
# runner.py and the modules it imports, shipped together in one directory (runctl_core.remote.jobs.TOOLS)
RUNNER_PATHS = (
    RUNNER_PATH,
    *(RUNNER_PATH.with_name(f"runner_{part}.py") for part in ("procs", "records", "supervise", "files")),
)
# each runner module's import of its siblings: "try: from .x import ...  except ImportError: from x import ..."
_SIBLING_IMPORT = re.compile(
    r"^try:  # in the runctl_core\.remote package.*\n(?:    .*\n|except ImportError:.*\n)+",
    re.M,
)


def runner_source() -> str:
    """The job runner as ONE self-contained file (deprecated: ship the files of ``RUNNER_PATHS`` instead).

    Providers written before the runner was split into modules upload this text as ``runner.py``; it is the
    modules joined in dependency order (their imports of one another removed), so it keeps working."""
    warnings.warn(
        "runctl_core.remote.runner_source() is deprecated: the runner is several files now; ship every file of "
        "runctl_core.remote.RUNNER_PATHS (or runctl_core.remote.jobs.TOOLS) into one directory",
        DeprecationWarning,
        stacklevel=2,
    )
    parts = [path.read_text(encoding="utf-8") for path in (*RUNNER_PATHS[1:], RUNNER_PATH)]
    return "\n\n".join(_SIBLING_IMPORT.sub("", part) for part in parts)
