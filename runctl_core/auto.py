"""``--provider auto`` (or a job file's list of providers): the cheapest fitting offer, falling over to the next
one when a provider refuses for capacity; a recovery that has to move resumes from the interrupted attempt's
checkpoints."""

from __future__ import annotations

from datetime import datetime, timezone

from runctl_core.choose import Candidate, Skipped, rank, require_candidates
from runctl_core.errors import CapacityError
from runctl_core.preflight import resolve_script
from runctl_core.run_models import InstanceRequest, LogSink, RunRequest, RunResult
from runctl_core.session import Session
from runctl_core.workflow import execute_run


def candidates_for(
    session: Session,
    request: InstanceRequest,
    preference: list[str] | None = None,
    *,
    dry_run: bool = False,
    nodes: int = 1,
) -> tuple[list[Candidate], list[Skipped]]:
    """Fitting offers in the order they are tried: cheapest first, or with ``preference`` (a job file's
    ``provider: [a, b]``) by the providers' order, cheapest first within each."""
    candidates, skipped = rank(session, request, dry_run=dry_run, nodes=nodes)
    if preference:
        from runctl_core.plugins import installed_providers, not_installed

        installed = {info.name for info in installed_providers()}
        for name in preference:
            if name not in installed:
                raise not_installed(name, " (in the list of providers to try)")
        order = {name: i for i, name in enumerate(preference)}
        skipped = [s for s in skipped if s.provider in order]
        candidates = sorted((c for c in candidates if c.provider in order), key=lambda c: (order[c.provider], c.hourly))
    require_candidates(candidates, skipped, request)
    return candidates, skipped


def execute_auto(
    session: Session, request: RunRequest, *, sink: LogSink | None, preference: list[str] | None = None
) -> RunResult:
    """Run on the first candidate that has capacity; the last capacity error when none had."""
    resolve_script(request.project_root, request.script)  # a missing script fails before any provider is asked
    candidates, _skipped = candidates_for(session, request.instance, preference, nodes=request.nodes)
    started = datetime.now(timezone.utc)
    last_error: CapacityError | None = None
    for number, candidate in enumerate(candidates):
        from runctl_core.jobs import newest_resumable

        resume = newest_resumable(session, started) or request.resume_from  # a recovery that moved offers
        pinned = request.model_copy(update={"instance": candidate.request_for(request.instance), "resume_from": resume})
        provider = session.provider(candidate.provider)
        session.progress.step(
            f"auto: {candidate.provider} {candidate.offer.instance_type} at "
            f"${candidate.hourly:.4f}/h (cheapest of {len(candidates) - number} left)"
        )
        try:
            return execute_run(session, provider, pinned, sink=sink)
        except CapacityError as exc:
            last_error = exc
            session.progress.warn(
                f"{candidate.provider} refused {candidate.offer.instance_type} for capacity "
                f"({exc.message}); trying the next offer"
            )
    assert last_error is not None
    raise last_error
