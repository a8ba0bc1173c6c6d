"""runctl's machine-side commands run in THIS process: a :class:`~runctl_core.remote.jobs.JobHost` whose machine is
this one (``inline=True``: the local provider) calls ``runner.py``'s functions directly - the same code as on a
remote machine, without starting an interpreter per call (a status poll, a sync, a launch). Only the job's
supervisor is a process of its own: it must outlive runctl."""

from __future__ import annotations

import contextlib
import functools
import io
from collections.abc import Mapping, Sequence
from typing import Any

from runctl_core.remote.transport import CommandResult, Transport


def run_inline(argv: list[str], data: bytes | None = None, launch: dict[str, Any] | None = None) -> CommandResult:
    """``runner.py ARGV`` in this process (``data``: through bootstrap.py first, whose arguments lead ARGV;
    ``launch``: how ``runner.launch`` starts the supervisor - see :func:`launch_options`)."""
    from runctl_core.remote import bootstrap, runner

    runner_main = functools.partial(runner.main, **launch) if launch else runner.main
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = runner_main(argv) if data is None else bootstrap.main(argv, runner_main=runner_main, data=data)
    return CommandResult(exit_code=code, stdout=out.getvalue().encode(), stderr=err.getvalue().encode())


def launch_options(transport: Transport, python: Sequence[str], env: Mapping[str, str]) -> dict[str, Any] | None:
    """How an in-process ``launch`` starts the supervisor: as ``transport`` would (its starting environment plus
    ``env``; the interpreter ``python`` with its options), from the runner.py runctl itself runs - its bytecode
    is already compiled, where a fresh ``ROOT/bin`` copy would be compiled again for every new sandbox. None
    when the transport does not say what environment its commands start from: launch then goes through it."""
    base_env = getattr(transport, "base_env", None)
    if base_env is None:
        return None
    return {"launch_python": list(python), "launch_env": {**base_env, **env}}
