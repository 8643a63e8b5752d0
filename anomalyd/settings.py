"""Settings: one frozen Struct, read from defaults < TOML file < ANOMALYD_* env < flags.

Every setting is documented once, in ``HELP``; the CLI builds its flags from it and a
test checks that the README mentions each one.
"""

from __future__ import annotations

import difflib
import math
import os
import tomllib
from typing import Annotated, Any, Literal

import msgspec
import msgspec.inspect

import anomalyd
from anomalyd import alert_settings
from anomalyd.bind import normalize_bind

MiB = 1024 * 1024
GiB = 1024 * MiB
ENV_PREFIX = "ANOMALYD_"
# The systemd credential holding the token (systemd/anomalyd.service, LoadCredential=).
API_TOKEN_CRED = "anomalyd_api_token"


class SettingsError(Exception):
    """A setting that cannot be used; the message names it and where it came from."""


class Settings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    # Every form gunicorn accepts (anomalyd.bind), kept in its explicit form.
    bind: str = "127.0.0.1:8000"
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
    session_hours: Annotated[int, msgspec.Meta(ge=1, le=8760)] = 12
    write_threads: Annotated[int, msgspec.Meta(ge=1, le=64)] = 4
    max_inflight_bytes: Annotated[int, msgspec.Meta(ge=MiB, le=64 * GiB)] = 128 * MiB
    access_log: Annotated[str, msgspec.Meta(min_length=1)] | None = None
    max_large_requests: Annotated[int, msgspec.Meta(ge=0, le=64)] = 1
    # Streams (anomalyd.online's proposed defaults; tests/test_streams_domain.py checks).
    stream_threshold: Annotated[float, msgspec.Meta(gt=0, le=1)] = 0.51
    stream_warmup: Annotated[int, msgspec.Meta(ge=0, le=1_000_000_000)] = 200
    stream_history: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 2000
    stream_direction: Literal["upper", "lower", "both"] = "both"
    # Alerts (anomalyd.alerting, anomalyd.delivery; checks in anomalyd.alert_settings).
    alertmanager_url: tuple[str, ...] = ()
    webhook_url: tuple[str, ...] = ()
    webhook_secret: str | None = None
    webhook_secret_file: Annotated[str, msgspec.Meta(min_length=1)] | None = None
    alert_resolve_after: Annotated[int, msgspec.Meta(ge=0, le=315_360_000)] = 600
    alert_resend_interval: Annotated[int, msgspec.Meta(ge=1, le=3600)] = 60
    alert_timeout: Annotated[int, msgspec.Meta(ge=1, le=300)] = 10
    outbox_max_events: Annotated[int, msgspec.Meta(ge=100, le=100_000_000)] = 100_000
    public_url: str | None = None

    def __post_init__(self) -> None:
        # A ValueError here is a ValidationError of msgspec.convert, message unchanged.
        msgspec.structs.force_setattr(self, "bind", normalize_bind(self.bind))
        alert_settings.check_urls(self.alertmanager_url)
        alert_settings.check_urls(self.webhook_url)
        alert_settings.check_public_url(self.public_url)
        alert_settings.check_secret(self.webhook_secret)


HELP: dict[str, str] = {
    "bind": (
        "one address to listen on: HOST:PORT, HOST (port 8000), [IPv6]:PORT, "
        "unix:PATH or fd://FD"
    ),
    "workers": "number of gunicorn worker processes",
    "worker_class": "gunicorn worker: gthread (default, keep-alive, threads) or sync",
    "threads": "threads per worker (gthread)",
    "data_dir": "LMDB directory (default $STATE_DIRECTORY under systemd, else ./data)",
    "map_size": "LMDB map size in bytes: the most the store may hold",
    "min_points": "fewest points a fit accepts",
    "max_body_bytes": "largest request body accepted (413 beyond)",
    "lru_size": "models cached per worker",
    "api_token": "bearer token every route but /healthcheck and /metrics requires",
    "api_token_file": (
        "file whose content (stripped) is the api_token, kept out of argv (default "
        "$CREDENTIALS_DIRECTORY/anomalyd_api_token under systemd, if there)"
    ),
    "log_level": "debug, info, warning, error or critical",
    "timeout": (
        "seconds a worker may be silent before the master restarts it; also the "
        "most a client may take to send one request"
    ),
    "keepalive": "seconds an idle keep-alive connection is kept open",
    "session_hours": (
        "hours a browser's dashboard session lasts after logging in with the "
        "api_token (only with a token)"
    ),
    "write_threads": (
        "threads per worker for requests that write (fit, delete); the other "
        "requests have the threads pool to themselves"
    ),
    "max_inflight_bytes": (
        "most bytes of request bodies a worker holds in memory at once (503 beyond)"
    ),
    "access_log": "access log: '-' for stderr (the journal), or a file; off if unset",
    "max_large_requests": (
        "requests with a body over 1 MiB one worker runs at once (at most threads "
        "- 1); more get 503 with Retry-After. 0: no limit"
    ),
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
    "alertmanager_url": (
        "Alertmanager base URL(s) to send alerts to; several: repeat the flag or "
        "separate them with spaces"
    ),
    "webhook_url": (
        "URL(s) each alert event is POSTed to, signed; several: repeat the flag or "
        "separate them with spaces"
    ),
    "webhook_secret": "the webhooks' signing secret, whsec_ + base64 (never sent)",
    "webhook_secret_file": "file holding the webhook_secret, kept out of argv",
    "alert_resolve_after": (
        "seconds of stream time without an anomaly after which an alert resolves"
    ),
    "alert_resend_interval": "seconds between re-sends of firing alerts to Alertmanager",
    "alert_timeout": "seconds one delivery attempt to a receiver may take",
    "outbox_max_events": "alert events kept at most (the oldest go first)",
    "public_url": "the URL people reach this service at, for the plot links in alerts",
}

# Lists: TOML arrays; in the environment and in a flag's value, separated by white
# space (which no URL contains); a flag may also be repeated.
LIST_FIELDS = frozenset({"alertmanager_url", "webhook_url"})


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def flag_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def _defaults(environ: Any) -> dict[str, Any]:
    values = {f: getattr(Settings(), f) for f in Settings.__struct_fields__}
    if environ.get("STATE_DIRECTORY"):
        # systemd may pass several directories separated by ':'; ours is the first.
        values["data_dir"] = environ["STATE_DIRECTORY"].split(":")[0]
    credential = os.path.join(environ.get("CREDENTIALS_DIRECTORY", ""), API_TOKEN_CRED)
    if environ.get("CREDENTIALS_DIRECTORY") and os.path.exists(credential):
        values["api_token_file"] = credential  # systemd's LoadCredential=
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
    if values["api_token_file"] is not None:
        sources["api_token_file"] = "$CREDENTIALS_DIRECTORY"

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
            msgspec.convert({field: _as_list(field, value)}, Settings, strict=False)
        except msgspec.ValidationError as exc:
            raise SettingsError(
                f"setting {field} ({sources[field]}) = {value!r}: "
                f"{requirement(field, exc)}"
            ) from None
    values = {field: _as_list(field, value) for field, value in values.items()}
    return msgspec.convert(values, Settings, strict=False), sources


def _as_list(field: str, value: Any) -> Any:
    """A list setting given as one string (env), or as strings (repeated flags),
    each holding items separated by white space; anything else as given."""
    if field not in LIST_FIELDS:
        return value
    if isinstance(value, str):
        return tuple(value.split())
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return tuple(item for v in value for item in v.split())
    return value


# -- messages for a person -----------------------------------------------------------

_SECONDS = {"timeout", "keepalive"}
_HOURS = {"session_hours"}


def _unit(field: str) -> str:
    """The unit of an integer setting, from its name: ``*_bytes`` and ``map_size``
    are bytes, so a new setting named that way is worded without a list to update."""
    if field == "map_size" or field.endswith("_bytes"):
        return "bytes"
    if field in _SECONDS or field.startswith("alert_"):  # alert_*: all seconds
        return "seconds"
    return "hours" if field in _HOURS else ""


_FIELD_TYPES = {f.name: f.type for f in msgspec.inspect.type_info(Settings).fields}


def _amount(field: str, number: int) -> str:
    if _unit(field) == "bytes":
        for unit, size in (("TiB", 1024 * GiB), ("GiB", GiB), ("MiB", MiB)):
            if number >= size and number % size == 0:
                return f"{number} ({number // size} {unit})"
        if number >= 1024 and number % 1024 == 0:
            return f"{number} ({number // 1024} KiB)"
    return str(number)


def requirement(field: str, exc: Exception | None = None) -> str:
    """What a value of ``field`` must be, in words (from the field's type and bounds).

    The ``bind`` checks word their own message (``anomalyd.bind``); a type this does
    not know falls back to msgspec's message.
    """
    kind = _FIELD_TYPES[field]
    if isinstance(kind, msgspec.inspect.UnionType):  # X | None: None is "not set"
        kind = next(
            t for t in kind.types if not isinstance(t, msgspec.inspect.NoneType)
        )
    if isinstance(kind, msgspec.inspect.IntType):
        unit = f" of {_unit(field)}" if _unit(field) else ""
        low = kind.ge if kind.ge is not None else kind.gt + 1
        high = kind.le if kind.le is not None else kind.lt - 1
        return (
            f"must be a whole number{unit} from {_amount(field, low)} "
            f"to {_amount(field, high)}"
        )
    if isinstance(kind, msgspec.inspect.FloatType):
        bounds = [
            f"{word} {limit:g}"
            for word, limit in (
                ("above", kind.gt),
                ("from", kind.ge),
                ("up to", kind.le),
                ("below", kind.lt),
            )
            if limit is not None
        ]
        return (
            "must be a number"
            + "".join(f" {b}" for b in bounds[:1])
            + "".join(f" and {b}" for b in bounds[1:])
        )
    if isinstance(kind, msgspec.inspect.LiteralType):
        return "must be one of " + ", ".join(str(v) for v in kind.values)
    if isinstance(kind, msgspec.inspect.BoolType):
        return "must be true or false"
    if isinstance(kind, msgspec.inspect.VarTupleType):
        if exc is not None and "Expected" not in str(exc):
            return str(exc).split(" - at ")[0]
        return (
            "must be a list of http:// or https:// URLs (a TOML array; in the "
            "environment, separated by spaces)"
        )
    if isinstance(kind, msgspec.inspect.StrType):
        if exc is not None and "Expected" not in str(exc):
            return str(exc).split(" - at ")[0]
        if kind.min_length:
            return "must be a non-empty string"
        return "must be a string"
    return str(exc).split(" - at ")[0] if exc is not None else "is not valid"


def unknown_environment(environ: dict[str, str] | None = None) -> list[str]:
    """A warning for each ``ANOMALYD_*`` variable that names no setting (a typo is
    otherwise silently ignored), with the closest setting's variable."""
    environ = os.environ if environ is None else environ
    known = [f.upper() for f in Settings.__struct_fields__] + ["CONFIG"]
    warnings = []
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or name[len(ENV_PREFIX) :] in known:
            continue
        # Compared without the prefix, which every name shares.
        close = difflib.get_close_matches(name[len(ENV_PREFIX) :], known, n=1)
        hint = (
            f"did you mean {ENV_PREFIX}{close[0]}?"
            if close
            else "the variables are ANOMALYD_ and a setting's name in capitals "
            "(see anomalyd check-config)"
        )
        warnings.append(f"{name} is not a setting and is ignored; {hint}")
    return warnings


# -- check-config: the settings as TOML ----------------------------------------------

SECRETS = frozenset({"api_token", "webhook_secret"})


def toml_value(value: object) -> str:
    """``value`` as a TOML value: a basic string with every control character escaped."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return repr(value)  # the shortest form that reads back as the same float
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if not isinstance(value, str):
        raise TypeError(f"no TOML form for {value!r}")
    escaped = []
    for char in value:
        if char in '"\\':
            escaped.append("\\" + char)
        elif char < " " or char == "\x7f":
            escaped.append(f"\\u{ord(char):04x}")
        else:
            escaped.append(char)
    return '"' + "".join(escaped) + '"'


def to_toml(settings: Settings, sources: dict[str, str]) -> str:
    """The settings in effect as a TOML file ``--config`` reads back to the same
    settings: each value's source as a comment, unset ones and secrets commented out
    (a secret masked: give it again through its variable or ``api_token_file``)."""
    lines = [
        f"# anomalyd {anomalyd.__version__}: the settings in effect, as TOML. Save this",
        "# and pass it with --config FILE; the comment after each value is its source.",
    ]
    for field in Settings.__struct_fields__:
        value = getattr(settings, field)
        # A comment runs to the end of its line: no control character may end it early.
        source = "".join(c if c >= " " else "?" for c in sources[field])
        if value is None:
            lines.append(f"# {field} = (not set)  # {source}")
        elif field in SECRETS:
            lines.append(
                f'# {field} = "********"  # {source}; secret, not shown: set it with '
                f"{env_name(field)} or {field}_file"
            )
        else:
            lines.append(f"{field} = {toml_value(value)}  # {source}")
    return "\n".join(lines) + "\n"
