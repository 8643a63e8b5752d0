"""The alert settings' own checks: receiver URLs, the webhook secret and its file.

Called from ``Settings.__post_init__`` (one field at a time: a ``ValueError`` whose
message ``anomalyd.settings.requirement`` shows as is) and, for what spans several
settings, from the CLI before gunicorn starts (``resolve``).
"""

from __future__ import annotations

import base64
import binascii
import re
from urllib.parse import urlsplit

# A host name or IPv4 address (an IPv6 address is recognised by its colons).
_HOST = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")

# The Standard Webhooks form of a symmetric secret: whsec_ and base64 of 24 to 64
# random bytes (https://www.standardwebhooks.com).
SECRET_PREFIX = "whsec_"
SECRET_BYTES = (24, 64)
MAKE_SECRET = (
    'python3 -c \'import base64, os; print("whsec_" + '
    "base64.b64encode(os.urandom(32)).decode())'"
)


def check_urls(values: tuple[str, ...]) -> None:
    """Each must be an absolute http:// or https:// URL with a host."""
    for url in values:
        problem = url_problem(url)
        if problem is not None:
            raise ValueError(
                f"{url!r} is not a receiver URL: {problem} (several URLs: separate "
                "them with spaces in the environment, repeat the flag, or give a "
                "TOML array)"
            )


def check_public_url(url: str | None) -> None:
    problem = None if url is None else url_problem(url)
    if problem is not None:
        raise ValueError(f"{url!r} is not a URL this service is reached at: {problem}")


def url_problem(url: str) -> str | None:
    if any(c.isspace() for c in url):
        return "it contains white space"
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        return str(exc)
    try:
        parts.port  # noqa: B018 - raises ValueError when the port is not a number
    except ValueError:
        return "its port is not a number from 0 to 65535"
    if parts.scheme not in ("http", "https"):
        return "it must start with http:// or https://"
    host = parts.hostname
    if not host:
        return "it has no host"
    if ":" not in host and _HOST.fullmatch(host) is None:
        return f"{host!r} is not a host name or address"
    if parts.fragment:
        return "it has a fragment (#...), which is never sent"
    return None


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_`` secret; ValueError in words when it is not one."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(
            f"must be {SECRET_PREFIX} followed by base64 of {SECRET_BYTES[0]} to "
            f"{SECRET_BYTES[1]} random bytes, as Standard Webhooks receivers expect; "
            f"make one with: {MAKE_SECRET}"
        )
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(
            f"the part after {SECRET_PREFIX} is not base64; make one with: "
            f"{MAKE_SECRET}"
        ) from None
    if not SECRET_BYTES[0] <= len(key) <= SECRET_BYTES[1]:
        raise ValueError(
            f"holds {len(key)} bytes once decoded, must be {SECRET_BYTES[0]} to "
            f"{SECRET_BYTES[1]}; make one with: {MAKE_SECRET}"
        )
    return key


def check_secret(secret: str | None) -> None:
    if secret is not None:
        secret_key(secret)


def read_secret(path: str) -> str:
    """The stripped content of ``webhook_secret_file``; ValueError in words."""
    try:
        with open(path, encoding="utf-8") as f:
            secret = f.read().strip()
    except OSError as exc:
        raise ValueError(f"the file cannot be read ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise ValueError("the file is not UTF-8 text") from None
    if not secret:
        raise ValueError("the file is empty")
    secret_key(secret)
    return secret


def resolve(settings, sources: dict[str, str]):
    """The settings with ``webhook_secret`` read from ``webhook_secret_file`` when
    given that way; a ``SettingsError`` when webhooks are configured without a
    secret (they are always signed)."""
    import msgspec

    from anomalyd.settings import SettingsError

    secret = settings.webhook_secret
    if secret is None and settings.webhook_secret_file:
        path = settings.webhook_secret_file
        try:
            secret = read_secret(path)
        except ValueError as exc:
            raise SettingsError(
                f"setting webhook_secret_file ({sources['webhook_secret_file']}) = "
                f"{path!r}: {exc}"
            ) from None
        settings = msgspec.structs.replace(settings, webhook_secret=secret)
        sources["webhook_secret"] = f"read from webhook_secret_file {path}"
    if settings.webhook_url and secret is None:
        raise SettingsError(
            f"setting webhook_url ({sources['webhook_url']}): webhooks are signed, so "
            "they need webhook_secret or webhook_secret_file (a whsec_ secret; make "
            f"one with: {MAKE_SECRET})"
        )
    return settings
