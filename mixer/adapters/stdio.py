"""stdio: the structured access log, one JSON object per logentry instance (Istio's stdio).

Params as Istio's: `logStream` (STDOUT, STDERR, FILE or ROTATED_FILE), `outputPath` (for the
file streams), `outputAsJson` (default true; otherwise `key=value` pairs), `severityLevels`
(a severity value -> INFO, WARNING or ERROR), `outputLevel` (the least level written), and for
ROTATED_FILE `maxMegabytesBeforeRotation` and `maxRotatedFiles`.

A line carries `level`, `time` (the instance's `timestamp`, else now), `instance` (its fully
qualified name) and the instance's `variables`: `{"level":"info","time":"...","instance":
"accesslog.instance.istio-system","destinationWorkload":"ratings-v1",...}`. Each handler owns
its own stdlib logger and output stream, closed with the handler. Template: logentry.
"""

from __future__ import annotations

import datetime
import ipaddress
import itertools
import json
import logging
import logging.handlers
import sys
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any, ClassVar

from pydantic import BaseModel, model_validator

from mixer.adapters.base import PARAMS_CONFIG, Environment, Handler, Instance, parse_params

_handler_ids = itertools.count(1)


class Stream(StrEnum):
    STDOUT = "STDOUT"
    STDERR = "STDERR"
    FILE = "FILE"
    ROTATED_FILE = "ROTATED_FILE"


class Level(StrEnum):
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"


_LEVELS = {Level.INFO: logging.INFO, Level.WARNING: logging.WARNING, Level.ERROR: logging.ERROR}


class StdioParams(BaseModel):
    model_config = PARAMS_CONFIG
    log_stream: Stream = Stream.STDOUT
    output_path: str = ""
    output_as_json: bool = True
    severity_levels: dict[str, Level] = {}
    output_level: Level = Level.INFO
    metric_level: Level = Level.INFO
    max_megabytes_before_rotation: int = 100
    max_rotated_files: int = 1000
    max_days_before_rotation: int = 30

    @model_validator(mode="after")
    def _path_for_files(self) -> StdioParams:
        if self.log_stream in (Stream.FILE, Stream.ROTATED_FILE) and not self.output_path:
            raise ValueError(f"logStream {self.log_stream} needs an outputPath")
        return self


def _output(params: StdioParams) -> logging.Handler:
    if params.log_stream is Stream.STDOUT:
        return logging.StreamHandler(sys.stdout)
    if params.log_stream is Stream.STDERR:
        return logging.StreamHandler(sys.stderr)
    if params.log_stream is Stream.FILE:
        return logging.FileHandler(params.output_path, encoding="utf-8")
    return logging.handlers.RotatingFileHandler(
        params.output_path,
        maxBytes=params.max_megabytes_before_rotation * 1024 * 1024,
        backupCount=params.max_rotated_files,
        encoding="utf-8",
    )


def plain(value: Any) -> Any:
    """A value as JSON can carry it: addresses dotted, times ISO 8601, durations like 1.5ms."""
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, bytes):
        if len(value) in (4, 16):
            return str(ipaddress.ip_address(value))
        return value.decode("utf-8", "replace")
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return f"{value.total_seconds() * 1000:.3f}ms"
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return str(value)


class StdioHandler(Handler):
    def __init__(self, params: StdioParams) -> None:
        self.params = params
        self._levels = {name: _LEVELS[level] for name, level in params.severity_levels.items()}
        self._logger = logging.getLogger(f"mixer.accesslog.{next(_handler_ids)}")
        self._logger.propagate = False
        self._logger.setLevel(_LEVELS[params.output_level])
        self._output = _output(params)
        self._output.setFormatter(logging.Formatter("%(message)s"))
        self._logger.addHandler(self._output)

    async def close(self) -> None:
        self._logger.removeHandler(self._output)
        self._output.close()

    def report(self, instances: Sequence[Instance]) -> None:
        for instance in instances:
            fields = instance.fields
            level = self._levels.get(str(fields.get("severity", "")), logging.INFO)
            if not self._logger.isEnabledFor(level):
                continue
            timestamp = fields.get("timestamp")
            if not isinstance(timestamp, datetime.datetime):
                timestamp = datetime.datetime.now(datetime.UTC)
            entry: dict[str, Any] = {
                "level": logging.getLevelName(level).lower(),
                "time": timestamp.isoformat(),
                "instance": instance.name,
            }
            variables = fields.get("variables") or {}
            entry.update((str(k), plain(v)) for k, v in variables.items())
            if self.params.output_as_json:
                line = json.dumps(entry, separators=(",", ":"))
            else:
                line = " ".join(f"{k}={json.dumps(v)}" for k, v in entry.items())
            self._logger.log(level, line)


class Stdio:
    name: ClassVar[str] = "stdio"
    templates: ClassVar[frozenset[str]] = frozenset({"logentry"})

    def build(self, params: Mapping[str, Any], env: Environment) -> Handler:
        return StdioHandler(parse_params(StdioParams, params))


ADAPTER = Stdio()
