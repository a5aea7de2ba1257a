"""Reloading the registry when files in the config directory change.

A reload that fails validation is logged with the error (file, resource, field, reason) and
otherwise ignored: the last accepted input stays in force, so a typo in one file never takes a
working mesh down. The reading itself is `pilot.config_files.DirectoryReader`; this module
only decides when to call it. It owns one task (`run`), driven by inotify through watchfiles.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from watchfiles import awatch

from meshconfig import ConfigValidationError
from pilot.config_files import DirectoryReader, PilotInput
from pilot.registry import ConfigError

log = logging.getLogger(__name__)


class ConfigWatcher:
    def __init__(
        self,
        directory: Path,
        on_change: Callable[[PilotInput], None],
        *,
        settle_ms: int = 50,
    ) -> None:
        self.directory = directory
        self.last_error: str = ""
        self._on_change = on_change
        self._settle_ms = settle_ms
        self._reader = DirectoryReader()  # re-validates only the files that changed

    def load(self) -> PilotInput:
        """Read the directory now; raises so start-up can fail loudly."""
        return self._reader.read(self.directory)

    def reload(self) -> bool:
        """Read the directory and hand over the result; keep the old one if it is invalid."""
        try:
            snapshot = self.load()
        except (ConfigError, ConfigValidationError, OSError) as error:
            self.last_error = str(error)
            log.error(
                "config in %s rejected, keeping the last good config: %s", self.directory, error
            )
            return False
        self.last_error = ""
        self._on_change(snapshot)
        return True

    async def run(self) -> None:
        async for _ in awatch(self.directory, debounce=self._settle_ms, step=20, recursive=True):
            try:
                self.reload()
            except Exception:  # a bug in one reload must not end the watch
                log.exception("reloading %s failed", self.directory)
