"""``anomalyd serve | check-config | backup DEST | restore BACKUP | replay FILE.csv |
--version``."""

from __future__ import annotations

import argparse
import os
import socket
import sys

import msgspec

from anomalyd import __version__, alert_settings, replay
from anomalyd import settings as settings_module
from anomalyd.auth import read_token, warn_if_open
from anomalyd.bind import parse_bind
from anomalyd.settings import HELP, Settings, SettingsError, flag_name


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="anomalyd", description="Anomaly detection for time series over HTTP."
    )
    parser.add_argument(
        "--version", action="version", version=f"anomalyd {__version__}"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP service (gunicorn)")
    check = commands.add_parser(
        "check-config", help="print the effective settings as TOML (--config reads it)"
    )
    backup = commands.add_parser("backup", help="copy the store, compacted, to DEST")
    backup.add_argument("dest", metavar="DEST", help="directory to write the copy into")
    restore = commands.add_parser(
        "restore",
        help="roll the store in --data-dir back to BACKUP (service stopped); "
        "version labels are never reused",
    )
    restore.add_argument(
        "backup", metavar="BACKUP", help="a backup directory (or its data.mdb)"
    )
    restore.add_argument(
        "--yes", action="store_true", help="do it (without: only say what it would do)"
    )
    replay.add_parser(commands)
    for command in (serve, check, backup, restore):
        command.add_argument("--config", metavar="FILE", help="TOML settings file")
        for field in Settings.__struct_fields__:
            # A list setting's flag may be repeated (settings.LIST_FIELDS).
            repeat = "append" if field in settings_module.LIST_FIELDS else "store"
            command.add_argument(
                flag_name(field), dest=field, help=HELP[field], action=repeat
            )
    return parser


def _load(args: argparse.Namespace) -> tuple[Settings, dict[str, str]]:
    flags = {f: getattr(args, f) for f in Settings.__struct_fields__}
    flags["config"] = args.config
    for warning in settings_module.unknown_environment():
        print(f"anomalyd: warning: {warning}", file=sys.stderr)
    found, sources = settings_module.load(flags)
    data_dir = os.path.abspath(found.data_dir)
    if args.command == "backup":
        # Reads an existing store: creating an empty one would hide a wrong data_dir.
        return found, sources
    try:
        os.makedirs(data_dir, mode=0o700, exist_ok=True)
    except OSError as exc:
        raise SettingsError(
            f"setting data_dir ({sources['data_dir']}) = {found.data_dir!r}: the "
            f"directory cannot be created ({exc.strerror or exc})"
        ) from None
    if not os.access(data_dir, os.W_OK):
        raise SettingsError(
            f"setting data_dir ({sources['data_dir']}) = {found.data_dir!r}: this user "
            "cannot write to the directory"
        )
    check_bind_resolves(found.bind, sources["bind"])
    token = read_token(found)
    if token is not None and token != found.api_token:
        found = msgspec.structs.replace(found, api_token=token)
        sources["api_token"] = f"read from api_token_file {found.api_token_file}"
    found = alert_settings.resolve(found, sources)
    return found, sources


def check_bind_resolves(bind: str, source: str) -> None:
    """A host name that does not resolve is refused here, in words, not by gunicorn."""
    address = parse_bind(bind)
    if address.kind != "tcp":
        return
    try:
        socket.getaddrinfo(address.host, address.port, type=socket.SOCK_STREAM)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise SettingsError(
            f"setting bind ({source}) = {bind!r}: the host {address.host!r} cannot be "
            f"resolved ({reason})"
        ) from None


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "replay":  # a client of a running service: no settings
        return replay.run(args)
    try:
        found, sources = _load(args)
    except SettingsError as exc:
        print(f"anomalyd: {exc}", file=sys.stderr)
        return 2
    if args.command == "check-config":
        # Valid TOML that --config reads back to the same settings.
        sys.stdout.write(settings_module.to_toml(found, sources))
        return 0
    if args.command == "backup":
        from anomalyd.backup import BackupError, backup

        try:
            print(backup(found, args.dest))
        except BackupError as exc:
            print(f"anomalyd: {exc}", file=sys.stderr)
            return 1
        return 0
    if args.command == "restore":
        from anomalyd.restore import RestoreError, restore

        try:
            return restore(
                args.backup,
                os.path.abspath(found.data_dir),
                found.map_size,
                args.yes,
                sys.stdout,
            )
        except RestoreError as exc:
            print(f"anomalyd: {exc}", file=sys.stderr)
            return 1
    from anomalyd.server import Service
    from anomalyd.supervise import StartupError

    warn_if_open(found, found.api_token)
    try:
        service = Service(found)
    except StartupError as exc:
        print(f"anomalyd: {exc}", file=sys.stderr)
        return 1
    service.run()
    return 0
