"""A record: the same command profiled N times by one collector, every run kept.

One Profile says what one run measured; a record keeps all N so that the
spread between runs is known and a later comparison can tell a change from
noise.  The file is versioned JSON (schema ``stprof-record/1``)::

    {
      "schema": "stprof-record/1",
      "command": ["dd", "if=/dev/zero", "of=/dev/null", "bs=1M", "count=64"],
      "collector": "ebpf",
      "settings": {"repeat": 5, "warmup": 1, "requested_collector": "auto",
                   "kernel_stacks": "off", "follow": true},
      "created": "2026-11-26T00:40:00+00:00",
      "stprof_version": "0.1.0",
      "host": {"hostname": "...", "kernel": "...", "machine": "...", "cpus": "2"},
      "runs": [<Profile as to_dict() writes it>, ...]
    }

The loader refuses every other schema version, a bare profile and anything
truncated or foreign, each as one ``InputError`` (exit status 2).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from profiler.errors import InputError, shown
from profiler.model import (
    SCHEMA as PROFILE_SCHEMA,
)
from profiler.model import (
    Profile,
    describe_error,
    describe_host,
    load_json_text,
    read_input_file,
    write_text_atomically,
)
from profiler.version import stprof_version

RECORD_SCHEMA = "stprof-record/1"


@dataclass(frozen=True)
class Settings:
    """How the runs were made, so that ``stprof check`` can make them the same way."""

    repeat: int = 5
    warmup: int = 1
    requested_collector: str = "auto"
    kernel_stacks: str = "off"
    follow: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "repeat": self.repeat,
            "warmup": self.warmup,
            "requested_collector": self.requested_collector,
            "kernel_stacks": self.kernel_stacks,
            "follow": self.follow,
        }

    @classmethod
    def from_dict(cls, data: Any) -> Settings:
        if not isinstance(data, dict):
            raise TypeError("settings is not an object")
        settings = cls(
            repeat=int(data["repeat"]),
            warmup=int(data.get("warmup", 0)),
            requested_collector=str(data.get("requested_collector", "auto")),
            kernel_stacks=str(data.get("kernel_stacks", "off")),
            follow=bool(data.get("follow", True)),
        )
        if settings.repeat < 1 or settings.warmup < 0:
            raise ValueError("repeat must be >= 1 and warmup >= 0")
        return settings


@dataclass
class Record:
    command: list[str]
    collector: str
    settings: Settings
    runs: list[Profile]
    created: str = ""
    stprof_version: str = ""
    host: dict[str, str] = field(default_factory=dict)
    schema: str = RECORD_SCHEMA

    def exit_statuses(self) -> list[int | None]:
        return [run.exit_status for run in self.runs]

    # ---- serialisation
    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": self.schema,
            "command": list(self.command),
            "collector": self.collector,
            "settings": self.settings.to_dict(),
            "created": self.created,
            "stprof_version": self.stprof_version,
            "host": dict(self.host),
            "runs": [run.to_dict() for run in self.runs],
        }

    def save(self, path: str | os.PathLike[str]) -> None:
        import json

        write_text_atomically(Path(path), json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def from_dict(cls, data: Any, source: str = "record") -> Record:
        _check_schema(data, source)
        try:
            runs_data = data["runs"]
            if not isinstance(runs_data, list) or not runs_data:
                raise ValueError("no runs")
            command, collector, host = data["command"], data["collector"], data.get("host") or {}
            if not (isinstance(command, list) and all(isinstance(word, str) for word in command)):
                raise TypeError("command is not a list of strings")
            if not isinstance(collector, str) or not isinstance(host, dict):
                raise TypeError("collector is not a string or host not an object")
            record = cls(
                command=command,
                collector=collector,
                settings=Settings.from_dict(data["settings"]),
                runs=[Profile.from_dict(run, f"{source}: run {index + 1}")
                      for index, run in enumerate(runs_data)],
                created=str(data.get("created", "")),
                stprof_version=str(data.get("stprof_version", "")),
                host={str(k): str(v) for k, v in host.items()},
            )
        except InputError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
            raise InputError(f"{source}: malformed stprof record ({describe_error(exc)})") from None
        return record

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Record:
        source = shown(path)
        return cls.from_dict(load_json_text(read_input_file(path), source), source)


def _check_schema(data: Any, source: str) -> None:
    if not isinstance(data, dict) or "schema" not in data:
        raise InputError(f"{source}: not a stprof record (no \"schema\": {RECORD_SCHEMA!r})")
    schema = data["schema"]
    if schema == PROFILE_SCHEMA:
        raise InputError(
            f"{source}: a single profile ({PROFILE_SCHEMA}), not a record of runs "
            "(make one with `stprof record`)"
        )
    if schema != RECORD_SCHEMA:
        raise InputError(
            f"{source}: unsupported record schema {schema!r} (this stprof reads {RECORD_SCHEMA!r})"
        )


# ---------------------------------------------------------------- recording
def new_record(command: list[str], collector: str, settings: Settings,
               runs: list[Profile]) -> Record:
    """A record of ``runs`` stamped with the time, the stprof version and the host."""
    return Record(
        command=list(command),
        collector=collector,
        settings=settings,
        runs=runs,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        stprof_version=stprof_version(),
        host=describe_host(),
    )
