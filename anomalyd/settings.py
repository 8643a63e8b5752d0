"""Settings: one frozen Struct, read from defaults < TOML file < ANOMALYD_* env < flags.

Every setting is documented once, in ``HELP``; the CLI builds its flags from it and a
test checks that the README mentions each one.
"""

from __future__ import annotations

import os
import tomllib
from typing import Annotated, Any, Literal

import msgspec

MiB = 1024 * 1024
GiB = 1024 * MiB
ENV_PREFIX = "ANOMALYD_"


class SettingsError(Exception):
    """A setting that cannot be used; the message names it and where it came from."""


class Settings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    bind: Annotated[
        str, msgspec.Meta(pattern=r"^(unix:.+|\[?[^\s\[\]]*\]?:\d{1,5})$")
    ] = "127.0.0.1:8000"
    workers: Annotated[int, msgspec.Meta(ge=1, le=64)] = 2
    worker_class: Literal["gthread", "sync"] = "gthread"
    threads: Annotated[int, msgspec.Meta(ge=1, le=64)] = 4
    data_dir: Annotated[str, msgspec.Meta(min_length=1)] = "./data"
    map_size: Annotated[int, msgspec.Meta(ge=MiB, le=2**44)] = 16 * GiB
    min_points: Annotated[int, msgspec.Meta(ge=2, le=1_000_000)] = 3
    max_body_bytes: Annotated[int, msgspec.Meta(ge=1024, le=4 * GiB)] = 64 * MiB
    lru_size: Annotated[int, msgspec.Meta(ge=1, le=10_000_000)] = 10_000
    api_token: str | None = None
    api_token_file: str | None = None
    log_level: Literal["debug", "info", "warning", "error", "critical"] = "info"
    timeout: Annotated[int, msgspec.Meta(ge=1, le=3600)] = 60
    keepalive: Annotated[int, msgspec.Meta(ge=0, le=3600)] = 5
    # Streams (anomalyd.online's proposed defaults; tests/test_streams_domain.py checks).
    stream_threshold: Annotated[float, msgspec.Meta(gt=0, le=1)] = 0.51
    stream_warmup: Annotated[int, msgspec.Meta(ge=0, le=1_000_000_000)] = 200
    stream_history: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 2000
    stream_direction: Literal["upper", "lower", "both"] = "both"


HELP: dict[str, str] = {
    "bind": "HOST:PORT (or unix:PATH) to listen on",
    "workers": "number of gunicorn worker processes",
    "worker_class": "gunicorn worker: gthread (default, keep-alive, threads) or sync",
    "threads": "threads per worker (gthread)",
    "data_dir": "LMDB directory (default $STATE_DIRECTORY under systemd, else ./data)",
    "map_size": "LMDB map size in bytes: the most the store may hold",
    "min_points": "fewest points a fit accepts",
    "max_body_bytes": "largest request body accepted (413 beyond)",
    "lru_size": "models cached per worker",
    "api_token": "bearer token every route but /healthcheck and /metrics requires",
    "api_token_file": "file whose content (stripped) is the api_token, kept out of argv",
    "log_level": "debug, info, warning, error or critical",
    "timeout": (
        "seconds a worker may be silent before the master restarts it; also the "
        "most a client may take to send one request"
    ),
    "keepalive": "seconds an idle keep-alive connection is kept open",
    "stream_threshold": (
        "score in (0, 1] from which a stream's point is an anomaly (new streams; "
        "PUT /streams/{id} changes one stream's)"
    ),
    "stream_warmup": "first points of a new stream that are never anomalies",
    "stream_history": "points kept per stream for /streams/{id}/points and plots",
    "stream_direction": (
        "deviations a new stream scores: upper, lower or both (PUT /streams/{id} "
        "changes one stream's)"
    ),
}


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def flag_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def _defaults(environ: Any) -> dict[str, Any]:
    values = {f: getattr(Settings(), f) for f in Settings.__struct_fields__}
    if environ.get("STATE_DIRECTORY"):
        # systemd may pass several directories separated by ':'; ours is the first.
        values["data_dir"] = environ["STATE_DIRECTORY"].split(":")[0]
    return values


def load(
    flags: dict[str, Any] | None = None,
    config_file: str | None = None,
    environ: dict[str, str] | None = None,
) -> tuple[Settings, dict[str, str]]:
    """Merge every source; return the settings and where each value came from."""
    environ = os.environ if environ is None else environ
    values = _defaults(environ)
    sources = {f: "default" for f in values}
    if environ.get("STATE_DIRECTORY"):
        sources["data_dir"] = "$STATE_DIRECTORY"

    config_file = (
        (flags or {}).get("config") or environ.get(env_name("config")) or (config_file)
    )
    if config_file:
        try:
            with open(config_file, "rb") as f:
                table = tomllib.load(f)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise SettingsError(f"config file {config_file}: {exc}") from None
        for key, value in table.items():
            if key not in values:
                raise SettingsError(
                    f"config file {config_file}: unknown setting {key!r}"
                )
            values[key] = value
            sources[key] = f"file {config_file}"
    for field in values:
        raw = environ.get(env_name(field))
        if raw is not None:
            values[field] = raw
            sources[field] = f"env {env_name(field)}"
    for field, value in (flags or {}).items():
        if field in values and value is not None:
            values[field] = value
            sources[field] = f"flag {flag_name(field)}"

    for field, value in values.items():
        try:
            msgspec.convert({field: value}, Settings, strict=False)
        except msgspec.ValidationError as exc:
            reason = str(exc).split(" - at ")[0]
            raise SettingsError(
                f"setting {field} ({sources[field]}) = {value!r}: {reason}"
            ) from None
    return msgspec.convert(values, Settings, strict=False), sources
