"""``anomalyd replay FILE.csv --series ID``: a CSV file into a running service's stream.

The file is read and checked whole first (``anomalyd.replay_file``: a bad line stops
the replay before anything is sent, and is named). Its points go in batches (1,000 by
default) through ``POST /observe/{id}/batch``, each with an ``Idempotency-Key`` made
from the file's digest and the batch's exact body: a batch sent again, by a retry or
by replaying the same file again, gets the service's first answer and learns nothing
twice (while the service remembers it: a stream's last 1,000 keyed requests).
Connection errors, timeouts and ``503`` with ``Retry-After`` are retried, with a
growing wait (``anomalyd.replay_http``). Anything else the service refuses stops the
replay, saying which lines were learned. At the end it prints the anomaly episodes of
the stream from the file's first timestamp on (``GET /streams/{id}/anomalies``, every
page) and a summary.

Exit status: 0 done, 1 refused (by the service, or it could not be reached), 2 usage
(bad arguments, a file that cannot be read or has a bad line: nothing was sent).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import sys
from typing import IO
from urllib.parse import quote, urlencode

import msgspec

from anomalyd.replay_file import BadFile, Rows, read
from anomalyd.replay_http import Client, Refused, description
from anomalyd.schemas import SERIES_ID_RE

DONE, REFUSED, USAGE = 0, 1, 2
# What to do about a refusal, after the service's description.
HINTS = {
    401: " (give the service's api_token: ANOMALYD_API_TOKEN in the environment, "
    "--token-file or --token)",
    409: " (these points come before what the stream has already learned: replay "
    "into a new --series, or DELETE /streams/ID first)",
}
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.decode


class Progress:
    """A one-line bar on stderr, redrawn in place; silent when not on a terminal."""

    def __init__(self, total: int, out: IO[str], shown: bool) -> None:
        self._total, self._out, self.shown = total, out, shown

    def draw(self, done: int, anomalies: int) -> None:
        if not self.shown:
            return
        width = 30
        filled = width * done // self._total
        self._out.write(
            f"\r[{'#' * filled}{'.' * (width - filled)}] {done:,}/{self._total:,} "
            f"points, {anomalies:,} anomalous"
        )
        self._out.flush()

    def clear(self) -> None:
        if self.shown:
            self._out.write("\r\x1b[K")
            self._out.flush()


def token_of(args: argparse.Namespace) -> str | None:
    """The first of --token, --token-file, ANOMALYD_API_TOKEN and
    ANOMALYD_API_TOKEN_FILE (the service's own settings, so one environment serves
    both)."""
    if args.token:
        return args.token
    path = args.token_file
    if not path:
        if os.environ.get("ANOMALYD_API_TOKEN"):
            return os.environ["ANOMALYD_API_TOKEN"]
        path = os.environ.get("ANOMALYD_API_TOKEN_FILE")
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            token = f.read().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"the token file {path!r} cannot be read ({exc})") from None
    if not token:
        raise ValueError(f"the token file {path!r} is empty")
    return token


def batch_key(rows: Rows, body: bytes) -> str:
    """The batch's Idempotency-Key: the file it comes from and its exact body."""
    digest = hashlib.blake2b(body, digest_size=16, key=bytes.fromhex(rows.digest))
    return f"replay-{digest.hexdigest()}"


def _lines_of(description: str, rows: Rows, start: int) -> str:
    """A service description with each ``$.timestamps[i]`` given its line."""

    def line(match: re.Match) -> str:
        i = start + int(match.group(2))
        where = f" (line {rows.lines[i]})" if i < len(rows.lines) else ""
        return match.group(0) + where

    return re.sub(r"\$\.(timestamps|values)\[(\d+)\]", line, description)


def send(
    client: Client, series_id: str, rows: Rows, size: int, progress: Progress
) -> int:
    """Every batch, in order; the anomalous points of the answers."""
    path = f"/observe/{quote(series_id)}/batch"
    anomalous = 0
    n = len(rows.values)
    for start in range(0, n, size):
        stop = min(n, start + size)
        body = _encode(
            {
                "timestamps": rows.timestamps[start:stop].tolist(),
                "values": rows.values[start:stop].tolist(),
            }
        )
        status, data = client.call("POST", path, body, batch_key(rows, body))
        if status != 200:
            first, last = int(rows.lines[start]), int(rows.lines[stop - 1])
            learned = (
                f"the stream has learned the lines before {first}"
                if start
                else "nothing of this file was learned"
            )
            hint = HINTS.get(status, "")
            raise Refused(
                f"line {first}: the service refused the batch of lines {first} to "
                f"{last} ({status}): "
                f"{_lines_of(description(data), rows, start)}{hint}; {learned}"
            )
        anomalous += sum(_decode(data)["anomaly"])
        progress.draw(stop, anomalous)
    return anomalous


def stream_points(client: Client, series_id: str) -> int:
    status, data = client.call("GET", f"/streams/{quote(series_id)}")
    if status == 404:
        return 0
    if status != 200:
        raise Refused(
            f"GET /streams/{series_id} answered {status}: {description(data)}"
            + HINTS.get(status, "")
        )
    return int(_decode(data)["points"])


def episodes(client: Client, series_id: str, since: int) -> list[dict]:
    found: list[dict] = []
    after = None
    while True:
        query = {"since": str(since), "limit": "1000"} | (
            {"after": after} if after else {}
        )
        path = f"/streams/{quote(series_id)}/anomalies?{urlencode(query)}"
        status, data = client.call("GET", path)
        if status != 200:
            raise Refused(
                f"GET {path} answered {status}: {description(data)}"
                + HINTS.get(status, "")
            )
        page = _decode(data)
        found += page["anomalies"]
        after = page["next"]
        if after is None:
            return found


def _t(iso: str) -> str:
    return iso.replace("T", " ").removesuffix("Z")


def _ranges(lines: list[int], most: int = 10) -> str:
    """``line 7``, ``lines 3 to 9, 12``: runs of consecutive lines, the first few."""
    runs: list[list[int]] = []
    for line in lines:
        if runs and line == runs[-1][1] + 1:
            runs[-1][1] = line
        else:
            runs.append([line, line])
    text = ", ".join(f"{a}" if a == b else f"{a} to {b}" for a, b in runs[:most])
    if len(runs) > most:
        text += f" and {len(runs) - most:,} more runs"
    return ("line " if len(lines) == 1 else "lines ") + text


def report(
    out: IO[str], rows: Rows, learned: int, total: int, found: list[dict], since: int
) -> None:
    n = len(rows.values)
    print(
        f"{n:,} points sent; {learned:,} learned; the stream has {total:,}.", file=out
    )
    if learned == 0:
        print(
            "Nothing new was learned: the service had answered these batches before "
            "(this file was replayed into this stream already).",
            file=out,
        )
    elif learned < n:
        print(
            f"{n - learned:,} points had been learned before (batches of an earlier "
            "replay of this file).",
            file=out,
        )
    for lines, what in (
        (rows.moved, "sent with the timestamp of the row before (earlier than it)"),
        (rows.skipped, "left out (earlier than the row before)"),
    ):
        if lines:
            print(f"{len(lines):,} rows {what}: {_ranges(lines)}.", file=out)
    start = str(rows.timestamps[0].astype("datetime64[s]")).replace("T", " ")
    if not found:
        print(f"No anomaly episode since {start} UTC.", file=out)
        return
    word = "episode" if len(found) == 1 else "episodes"
    print(f"{len(found):,} anomaly {word} since {start} UTC:", file=out)
    print(
        f"  {'start (UTC)':<19}  {'end':<19}  {'points':>6}  {'peak score':>10}  "
        f"{'peak value':>12}",
        file=out,
    )
    for e in found:
        print(
            f"  {_t(e['start']):<19}  {_t(e['end']):<19}  {e['points']:>6}  "
            f"{e['peak_score']:>10.3f}  {e['peak_value']:>12.6g}"
            + ("  open" if e["open"] else ""),
            file=out,
        )


def run(
    args: argparse.Namespace, out: IO[str] | None = None, err: IO[str] | None = None
) -> int:
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err

    def fail(code: int, message: str) -> int:
        print(f"anomalyd replay: {message}", file=err)
        return code

    if SERIES_ID_RE.fullmatch(args.series) is None:
        return fail(
            USAGE,
            f"--series must be 1 to 200 characters from [A-Za-z0-9._:-], got {args.series!r}",
        )
    try:
        token = token_of(args)
        client = Client(
            args.url,
            token,
            args.timeout,
            lambda m: print(f"\nanomalyd replay: {m}", file=err),
        )
    except ValueError as exc:
        return fail(USAGE, str(exc))
    try:
        if args.file == "-":
            data = sys.stdin.buffer.read()
        else:
            with open(args.file, "rb") as f:
                data = f.read()
        rows = read(data, args.out_of_order)
    except OSError as exc:
        return fail(USAGE, f"{args.file}: {exc.strerror or exc}")
    except BadFile as exc:
        return fail(USAGE, f"{args.file}: {exc}")
    progress = Progress(len(rows.values), err, out.isatty() and err.isatty())
    try:
        before = stream_points(client, args.series)
        try:
            send(client, args.series, rows, args.batch, progress)
        finally:
            progress.clear()
        total = stream_points(client, args.series)
        since = int(rows.timestamps[0])
        found = episodes(client, args.series, since)
    except Refused as exc:
        return fail(REFUSED, str(exc))
    finally:
        client.close()
    try:
        print(
            f"Replayed {args.file} into stream {args.series} at {client.url}.", file=out
        )
        report(out, rows, total - before, total, found, since)
        out.flush()
    except BrokenPipeError:  # `| head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())
    return DONE


def add_parser(commands) -> None:
    """The ``replay`` command's arguments (``anomalyd.cli``)."""
    replay = commands.add_parser(
        "replay",
        help="send a CSV of timestamp,value rows to a running service's stream, "
        "then print its anomaly episodes",
        description="Send a CSV file of timestamp,value rows to a running anomalyd "
        "in batches (POST /observe/{id}/batch), then print the stream's anomaly "
        "episodes. Exit status: 0 done, 1 refused, 2 usage.",
    )
    replay.add_argument("file", metavar="FILE.csv", help="the CSV file ('-': stdin)")
    replay.add_argument("--series", required=True, metavar="ID", help="the stream's id")
    replay.add_argument(
        "--url",
        default="http://127.0.0.1:8000",
        help="the service (default: http://127.0.0.1:8000)",
    )
    replay.add_argument(
        "--token",
        help="the api_token (better: --token-file, or ANOMALYD_API_TOKEN in the "
        "environment: a command line is seen by every user of the host)",
    )
    replay.add_argument("--token-file", metavar="FILE", help="a file holding the token")
    replay.add_argument(
        "--batch",
        type=_batch_size,
        default=1000,
        metavar="N",
        help="points per request, 1 to 100000 (default: 1000)",
    )
    replay.add_argument(
        "--out-of-order",
        choices=("stop", "clamp", "skip"),
        default="stop",
        help="a row earlier than the row before it: stop before sending anything "
        "(default), send it with the timestamp of the row before (clamp), or leave "
        "it out (skip)",
    )
    replay.add_argument(
        "--timeout",
        type=_seconds,
        default=60.0,
        metavar="SECONDS",
        help="for each request (default: 60); a timeout is retried",
    )


def _batch_size(raw: str) -> int:
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= 100_000:
        raise argparse.ArgumentTypeError(
            f"must be an integer from 1 to 100000, got {raw!r}"
        )
    return int(raw)


def _seconds(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"must be seconds from 0 to 3600, got {raw!r}")
    return value
