"""Bitácora from Python: one function per batch step, and SQL over the lake as ``pyarrow`` tables.

Each step function runs the same Rust code as the step binary, with the GIL released, and returns
the report the binary prints (a ``dict``)::

    import bitacora

    bitacora.extract("2026-11-02", config="bitacora.toml")
    bitacora.transform("2026-11-02", config="bitacora.toml")
    bitacora.catalog("2026-11-02", config="bitacora.toml")
    table = bitacora.query("SELECT event_type, count(*) AS n FROM bitacora.events GROUP BY 1")

``config`` is a path to a TOML file, a ``dict`` with the same sections (read like a file with that
content in the working directory; a key set to ``None`` is left unset), or ``None`` for the binaries' lookup order (``BITACORA_CONFIG``,
``./bitacora.toml``, then the embedded defaults). ``BITACORA_*`` environment overrides apply in
every case. Dates are ``datetime.date`` objects or ``YYYY-MM-DD`` strings; an aware ``datetime``
(Airflow's ``data_interval_start``) counts by its UTC day.

The module is safe to import before a ``fork()`` (Airflow's workers): the Rust runtime and the AWS
clients are created lazily in each process. While a step runs, the GIL is released; signals such as
Ctrl-C are handled when it returns. Logs go to stderr (``BITACORA_LOG``, default ``warn``).
"""

from __future__ import annotations

import datetime as _dt
import json as _json
import os as _os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Union

from bitacora import _bitacora
from bitacora.errors import (
    BitacoraError,
    CatalogError,
    ConfigError,
    QueryError,
    SourceError,
    StorageError,
)

if TYPE_CHECKING:
    import pyarrow

__version__: str = _bitacora.__version__

__all__ = [
    "BitacoraError",
    "CatalogError",
    "ConfigError",
    "QueryError",
    "SourceError",
    "StorageError",
    "catalog",
    "extract",
    "generate",
    "named_queries",
    "normalize_lines",
    "named_query",
    "query",
    "run",
    "transform",
]

DateLike = Union[str, _dt.date]
"""A UTC day: ``datetime.date``, an aware ``datetime`` (its UTC day) or ``"YYYY-MM-DD"``."""

ConfigLike = Union[str, "_os.PathLike[str]", Mapping[str, Any], None]
"""A configuration: path to a TOML file, a mapping of sections, or None for the default lookup."""

Report = dict[str, Any]
"""A step's report: the JSON object its binary prints, as a dict."""


def _day(value: DateLike, name: str = "date") -> str:
    if isinstance(value, _dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(_dt.timezone.utc)
        return value.date().isoformat()
    if isinstance(value, _dt.date):
        return value.isoformat()
    if isinstance(value, str):
        return value
    raise TypeError(f"{name} must be a datetime.date or a 'YYYY-MM-DD' string, not {type(value).__name__}")


def _without_none(value: Any) -> Any:
    # TOML has no null: a key set to None means "not set" (its default applies).
    if isinstance(value, Mapping):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    return value


def _config(config: ConfigLike) -> dict[str, str]:
    if config is None:
        return {}
    if isinstance(config, (str, _os.PathLike)):
        return {"config_path": _os.fspath(config)}
    if isinstance(config, Mapping):
        return {"config_doc": _json.dumps(_without_none(config), default=_os.fspath)}
    raise TypeError(f"config must be a path, a mapping or None, not {type(config).__name__}")


def extract(date: DateLike, config: ConfigLike = None, *, force: bool = False) -> Report:
    """Copies day ``date`` from the log source into the raw zone (encrypted). ``force`` extracts a
    day whose logs may still be arriving (``source.settle_minutes``)."""
    return _json.loads(_bitacora.extract(_day(date), force=force, **_config(config)))


def transform(date: DateLike, config: ConfigLike = None) -> Report:
    """Normalises and deduplicates day ``date`` of the raw zone into ``events`` and ``quarantine``."""
    return _json.loads(_bitacora.transform(_day(date), **_config(config)))


def catalog(date: DateLike, config: ConfigLike = None) -> Report:
    """Registers day ``date`` of the curated zone in the catalog (tables and partitions)."""
    return _json.loads(_bitacora.catalog(_day(date), **_config(config)))


def run(start: DateLike, end: DateLike, config: ConfigLike = None) -> Report:
    """Runs extract → transform → catalog for every day of ``[start, end]``, in order."""
    return _json.loads(_bitacora.run(_day(start, "start"), _day(end, "end"), **_config(config)))


def generate(
    date: DateLike,
    events: int,
    out: str | _os.PathLike[str],
    *,
    seed: int = 42,
    streams: int = 8,
) -> Report:
    """Writes synthetic mobile-app logs for a day into ``out`` (file-source format; deterministic for a seed)."""
    return _json.loads(_bitacora.generate(_day(date), events, _os.fspath(out), seed=seed, streams=streams))


def query(sql: str, config: ConfigLike = None) -> pyarrow.Table:
    """Runs a read-only SQL statement over ``bitacora.events`` and ``bitacora.quarantine``."""
    return _bitacora.query(sql, **_config(config))


def named_query(name: str, date: DateLike | None = None, config: ConfigLike = None) -> pyarrow.Table:
    """Runs a stakeholder query by name (see :func:`named_queries`), for one day or every day."""
    day = None if date is None else _day(date)
    return _bitacora.named_query(name, day, **_config(config))


def named_queries() -> list[dict[str, str]]:
    """The stakeholder queries: ``name``, ``description`` and ``audience`` of each."""
    return _json.loads(_bitacora.named_queries())


def normalize_lines(
    lines: pyarrow.Array, log_group: str = "/mobile/app", max_record_bytes: int = 262144
) -> tuple[pyarrow.RecordBatch, pyarrow.RecordBatch]:
    """The transform's normalisation of raw-zone NDJSON lines (a string array): ``(events,
    quarantine)`` record batches, events with their delivery provenance (``_source_timestamp``,
    ``_source_event_id``) for the dedup. The Spark transform runs it inside ``mapInArrow``."""
    return _bitacora.normalize_lines(lines, log_group, max_record_bytes)
