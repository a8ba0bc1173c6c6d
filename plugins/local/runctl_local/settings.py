from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class LocalSettings(BaseModel):
    """The ``[providers.local]`` table of ``.runctl.toml``."""

    model_config = ConfigDict(extra="forbid")

    use_uv: bool = Field(default=True, description="run scripts with `uv run` when uv is on PATH")
    python: str | None = Field(default=None, description="interpreter when uv is not used (default: runctl's own)")
    grace_period: float = Field(default=10.0, ge=0, description="seconds between SIGTERM and SIGKILL")
