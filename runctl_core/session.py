"""Per-command context: global options, configuration, state store, progress and loaded providers."""

from __future__ import annotations

import os
import sys
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runctl_core.config import LoadedConfig
    from runctl_core.models import ProviderContext
    from runctl_core.plugins import Provider
    from runctl_core.progress import Progress
    from runctl_core.state import Store


class Options:
    """The global options of a command or an API call (a plain class: no dataclasses import on the `--help`
    path)."""

    def __init__(
        self,
        provider: str | None = None,
        output: str = "text",
        config_path: str | None = None,
        verbose: int = 0,
        quiet: bool = False,
        no_progress: bool = False,
    ) -> None:
        self.provider = provider
        self.output = output
        self.config_path = config_path
        self.verbose = verbose
        self.quiet = quiet
        self.no_progress = no_progress


class Session:
    def __init__(self, options: Options) -> None:
        self.options = options
        self._providers: dict[str, Provider] = {}

    @property
    def json(self) -> bool:
        return self.options.output == "json"

    @cached_property
    def loaded(self) -> LoadedConfig:
        from runctl_core.config import load_config

        return load_config(Path(self.options.config_path) if self.options.config_path else None)

    @cached_property
    def store(self) -> Store:
        from runctl_core.state import Store

        return Store(on_wait=self.progress.warn)

    @cached_property
    def progress(self) -> Progress:
        from runctl_core.progress import Progress

        show = not (self.options.quiet or self.options.no_progress or self.options.output != "text")
        return Progress(
            enabled=show, quiet=self.options.quiet or self.options.output != "text", silent=self.options.output == "api"
        )

    @property
    def home(self) -> Path:
        from runctl_core.state import runctl_home

        return runctl_home()

    def provider_name(self, explicit: str | None = None) -> str:
        return (
            explicit
            or self.options.provider
            or os.environ.get("RUNCTL_PROVIDER")
            or self.loaded.config.default_provider
        )

    def context(self, name: str, settings: dict[str, object] | None = None) -> ProviderContext:
        from runctl_core.models import ProviderContext

        state_dir = self.home / "providers" / name
        state_dir.mkdir(parents=True, exist_ok=True)
        return ProviderContext(
            provider=name,
            state_dir=state_dir,
            settings=dict(settings or {}),
            owner=self.loaded.config.owner,
            interactive=sys.stdin.isatty() and sys.stderr.isatty() and self.options.output == "text",
            progress=self.progress,
        )

    def provider(self, name: str) -> Provider:
        if name not in self._providers:
            from runctl_core.config import validate_provider_settings
            from runctl_core.plugins import load_provider

            provider = load_provider(name, self.context(name))
            provider.ctx.settings = validate_provider_settings(name, provider.settings_schema(), self.loaded)
            self._providers[name] = provider
        return self._providers[name]
