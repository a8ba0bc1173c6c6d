"""Error types shared by the core and every provider, and the exit codes they map to.

Providers raise these (never bare SDK or HTTP exceptions); the CLI turns each into one message with a hint,
a JSON object in ``--output json`` mode, and the exit code documented in the README:

====  ===========================================================================
code  meaning
====  ===========================================================================
0     success
1     the user's training script failed (non-zero exit) or the job was lost
2     bad usage or bad input
3     configuration, credentials or a missing prerequisite; the job's environment could not be prepared
4     provider/API error after retries (quota, capacity, auth refused, service down)
5     timed out waiting
130   interrupted (Ctrl-C), after cleaning up what the command had created
====  ===========================================================================
"""

from __future__ import annotations

from typing import ClassVar

EXIT_OK = 0
EXIT_JOB_FAILED = 1
EXIT_USAGE = 2
EXIT_CONFIG = 3
EXIT_PROVIDER = 4
EXIT_TIMEOUT = 5
EXIT_INTERRUPTED = 130


class RunctlError(Exception):
    """Base of every error runctl reports to a user.

    ``message`` says what went wrong, ``hint`` what to do next. Neither may contain a secret.
    """

    code: ClassVar[str] = "error"
    exit_code: ClassVar[int] = EXIT_PROVIDER

    def __init__(self, message: str, hint: str = "", *, details: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details = details or {}

    def to_dict(self) -> dict[str, object]:
        body: dict[str, object] = {"code": self.code, "message": self.message, "hint": self.hint}
        if self.details:
            body["details"] = self.details
        return {"error": body}


class UsageError(RunctlError):
    """The command line or an input file is wrong (exit 2)."""

    code = "usage"
    exit_code = EXIT_USAGE


class CapabilityError(UsageError):
    """The provider declared that it cannot do what was asked (e.g. spot), before anything was done."""

    code = "unsupported"


class ConfigError(RunctlError):
    """A configuration file or value is invalid (exit 3)."""

    code = "config"
    exit_code = EXIT_CONFIG


class CredentialsError(RunctlError):
    """Credentials are missing or unusable before any call was made (exit 3)."""

    code = "credentials"
    exit_code = EXIT_CONFIG


class PrerequisiteError(RunctlError):
    """Something the provider needs (a bucket, an instance profile, a tool) is missing (exit 3)."""

    code = "prerequisite"
    exit_code = EXIT_CONFIG


class StateError(RunctlError):
    """runctl's state store (``RUNCTL_HOME/state.db``) cannot be read or written: damaged, read-only, full, or
    written by a newer runctl (exit 3). The message names the file, the hint what to do."""

    code = "state"
    exit_code = EXIT_CONFIG


class PluginError(RunctlError):
    """A provider plugin is missing, broken, or does not implement a required hook (exit 3)."""

    code = "plugin"
    exit_code = EXIT_CONFIG


class ProviderError(RunctlError):
    """The provider's API refused or failed (exit 4). Subclasses say why."""

    code = "provider"
    exit_code = EXIT_PROVIDER


class AuthError(ProviderError):
    """The provider rejected the credentials (HTTP 401/403, AuthFailure...)."""

    code = "auth"


class CapacityError(ProviderError):
    """No capacity for the requested machine (spot or on-demand) right now."""

    code = "capacity"


class SpotRefused(CapacityError):
    """Spot capacity was refused for this request; the core decides what happens next.

    A provider's ``create`` raises it (instead of falling back itself) when ``spec.spot`` is set and the market
    says no, leaving no open spot request behind, with the hourly prices it knows for the same machine. The
    core applies ``--on-demand-fallback`` (never: this error; ask: a question; always: a warning) showing
    the spot and on-demand prices side by side for every provider, and calls ``create`` again with
    ``spot=False``."""

    code = "spot_refused"

    def __init__(
        self,
        message: str,
        hint: str = "",
        *,
        spot_price: float | None = None,
        on_demand_price: float | None = None,
        details: dict[str, object] | None = None,
    ) -> None:
        super().__init__(message, hint, details=details)
        self.spot_price = spot_price
        self.on_demand_price = on_demand_price


class QuotaError(ProviderError):
    """An account limit or quota stops the request."""

    code = "quota"


class NotFoundError(ProviderError):
    """The instance, job or object does not exist (any more)."""

    code = "not_found"


class TransientError(ProviderError):
    """A failure worth retrying (throttling, HTTP 429/5xx, connection reset). Retried with backoff."""

    code = "transient"

    def __init__(
        self,
        message: str,
        hint: str = "",
        *,
        retry_after: float | None = None,
        details: dict[str, object] | None = None,
    ) -> None:
        super().__init__(message, hint, details=details)
        self.retry_after = retry_after


class WaitTimeout(RunctlError):
    """Waiting for an instance or a job took longer than allowed (exit 5)."""

    code = "timeout"
    exit_code = EXIT_TIMEOUT


class StateLocked(WaitTimeout):
    """Another runctl command held the state store's write lock for longer than ``RUNCTL_LOCK_TIMEOUT`` (exit 5)."""

    code = "state_locked"


class SetupFailed(RunctlError):
    """The job's environment could not be prepared (a dependency that does not install, a failing ``setup``
    command, no uv/venv/pip on the machine): the script never started (exit 3)."""

    code = "setup_failed"
    exit_code = EXIT_CONFIG


class JobFailed(RunctlError):
    """The user's script exited non-zero, or the job was lost (exit 1)."""

    code = "job_failed"
    exit_code = EXIT_JOB_FAILED


class JobTimedOut(JobFailed):
    """The job was killed by its ``--timeout`` (exit 1, as any failed job; the error says so)."""

    code = "job_timed_out"


class Interrupted(RunctlError):
    """The user pressed Ctrl-C; what the command created has been cleaned up (exit 130)."""

    code = "interrupted"
    exit_code = EXIT_INTERRUPTED
