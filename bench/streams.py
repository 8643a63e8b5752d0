"""``make bench``, streams: observes against predicts, batches, state and scale figures.

Starts, side by side, with the settings a user gets by default (``ANOMALYD_*``
cleared, 127.0.0.1, temporary data directories):

- anomalyd on a store of ``BENCH_SERIES`` fitted series and as many streams (default
  1,000 each), so predicts and observes run against the same service;
- anomalyd on a store of ``BENCH_SCALE_STREAMS`` streams (default 1,000,000).

Each stream has learned 64 points (its record and one history block), written
directly with ``bench/fill_streams.py``. Then, in ``BENCH_ROUNDS`` interleaved rounds
of ``BENCH_WRK_SECONDS`` (order rotated every round): single-point predicts and
single-point observes on the first service, single-point observes on the second, and
1,000-point batch observes on the first. Ratios are medians of per-round ratios (the
runs of a round share the machine's load of that moment). In-service times come from
the services' own /metrics histograms; state and history sizes from the stores
themselves once the services are stopped. Prints a report and writes
``bench/results/streams.md``.

    .venv/bin/python bench/streams.py
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import lmdb

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from fill import fill
from fill_streams import fill_streams
from run import (
    CONNECTIONS,
    ROUNDS,
    SERIES,
    WARMUP_LIMIT,
    WRK_SECONDS,
    anomalyd,
    env_int,
    histogram_delta,
    log,
    machine,
    median_run,
    metrics,
    wrk,
)

from anomalyd import online
from anomalyd.store import MAX_DBS
from anomalyd.store.streams import ROW, decode_record

SCALE_STREAMS = env_int("BENCH_SCALE_STREAMS", 1_000_000)
BATCH_POINTS = 1000
BATCH_CONNECTIONS = env_int("BENCH_BATCH_CONNECTIONS", 8)
BATCH_STREAMS = 100


def last_txnid(data_dir: Path) -> int:
    """Transactions committed so far (a reader of the live store's lock table)."""
    env = lmdb.open(str(data_dir), readonly=True, max_dbs=MAX_DBS)
    try:
        return env.info()["last_txnid"]
    finally:
        env.close()


def store_figures(data_dir: Path) -> dict:
    """Record sizes, history bytes per point, and the data file, of a stopped store."""
    env = lmdb.open(str(data_dir), readonly=True, lock=False, max_dbs=MAX_DBS)
    try:
        psize = env.stat()["psize"]
        with env.begin() as txn:
            streams = env.open_db(b"streams", txn=txn, create=False)
            history = env.open_db(b"stream_history", txn=txn, create=False)
            sizes = [len(v) for _, v in txn.cursor(db=streams)]
            sample = next(iter(txn.cursor(db=streams)))
            record = decode_record(bytes(sample[1]), bytes(sample[0]))
            rows = sum(len(v) for _, v in txn.cursor(db=history)) // ROW.size

            def pages(db) -> int:
                s = txn.stat(db)
                return s["branch_pages"] + s["leaf_pages"] + s["overflow_pages"]

            stream_pages, history_pages = pages(streams), pages(history)
    finally:
        env.close()
    data = data_dir / "data.mdb"
    return {
        "streams": len(sizes),
        "record_avg": statistics.mean(sizes),
        "record_max": max(sizes),
        "labels": len(record.config.labels),
        "history_rows": rows,
        "history_bytes_per_point": history_pages * psize / rows,
        "streams_table_per_stream": stream_pages * psize / len(sizes),
        "history_per_stream": history_pages * psize / len(sizes),
        "data_file_bytes": data.stat().st_blocks * 512,
    }


def rss(server) -> list[tuple[float, float]]:
    return server.worker_rss_mib()


def main() -> int:
    started = time.time()
    load_before = os.getloadavg()
    workdir = Path(tempfile.mkdtemp(prefix="anomalyd-bench-streams-"))
    servers = []
    try:
        small_dir, large_dir = workdir / "data-small", workdir / "data-large"
        t_series = fill(str(small_dir), SERIES)
        t_small = fill_streams(str(small_dir), SERIES)
        t_large = fill_streams(str(large_dir), SCALE_STREAMS)
        log(
            f"filled {SERIES:,} series in {t_series:.1f} s, {SERIES:,} streams in "
            f"{t_small:.1f} s, {SCALE_STREAMS:,} streams in {t_large:.1f} s"
        )
        small = anomalyd("anomalyd", small_dir, workdir)
        large = anomalyd("anomalyd-1M-streams", large_dir, workdir)
        for server in (small, large):
            server.start()
            servers.append(server)
        scale_env = {"SERIES": str(SCALE_STREAMS)}
        small_env = {"SERIES": str(SERIES)}
        batch_env = {"SERIES": str(BATCH_STREAMS), "POINTS": str(BATCH_POINTS)}
        for url, script, env, c in (
            (small.url, "predict.lua", small_env, CONNECTIONS),
            (small.url, "observe.lua", small_env, CONNECTIONS),
            (small.url, "observe_batch.lua", batch_env, BATCH_CONNECTIONS),
            (large.url, "observe.lua", scale_env, CONNECTIONS),
        ):
            wrk(url, script, 1, c, env)
        # As bench/run.py: warm the large service until its mapped store stops growing.
        warm_started = time.monotonic()
        mapped = large.worker_file_rss_mib()
        while time.monotonic() - warm_started < WARMUP_LIMIT:
            wrk(large.url, "observe.lua", 3, CONNECTIONS, scale_env)
            now = large.worker_file_rss_mib()
            if now < mapped * 1.02:
                break
            mapped = now
        log(f"warmed the {SCALE_STREAMS:,}-stream service ({mapped:.0f} MiB mapped)")

        targets = [
            ("predict", small, "predict.lua", small_env, CONNECTIONS),
            ("observe", small, "observe.lua", small_env, CONNECTIONS),
            ("observe-1M", large, "observe.lua", scale_env, CONNECTIONS),
            ("batch", small, "observe_batch.lua", batch_env, BATCH_CONNECTIONS),
        ]
        runs: dict[str, list[dict]] = {name: [] for name, *_ in targets}
        commits = dict.fromkeys(runs, 0)  # durable commits of each scenario
        before, before_large = metrics(small.url), metrics(large.url)
        for r in range(ROUNDS):
            for name, server, script, env, c in targets[r % 4 :] + targets[: r % 4]:
                data_dir = small_dir if server is small else large_dir
                txn = last_txnid(data_dir)
                runs[name].append(wrk(server.url, script, WRK_SECONDS, c, env))
                commits[name] += last_txnid(data_dir) - txn
            log(
                f"round {r + 1}/{ROUNDS}: "
                + ", ".join(f"{k} {v[-1]['rps']:,.0f}/s" for k, v in runs.items())
            )
        after, after_large = metrics(small.url), metrics(large.url)
        # What a request costs inside the service when it does not queue behind
        # others: one connection, one request at a time.
        alone_batch = wrk(small.url, "observe_batch.lua", 2 * WRK_SECONDS, 1, batch_env)
        mid = metrics(small.url)
        alone_single = wrk(small.url, "observe.lua", 2 * WRK_SECONDS, 1, small_env)
        end = metrics(small.url)
        alone_batch_in = histogram_delta(
            after, mid, "anomalyd_batch_observe_latency_seconds"
        )
        alone_single_in = histogram_delta(mid, end, "anomalyd_observe_latency_seconds")
        observe_in = histogram_delta(before, after, "anomalyd_observe_latency_seconds")
        batch_in = histogram_delta(
            before, after, "anomalyd_batch_observe_latency_seconds"
        )
        predict_in = histogram_delta(
            before, after, "anomalyd_inference_latency_seconds"
        )
        large_in = histogram_delta(
            before_large, after_large, "anomalyd_observe_latency_seconds"
        )
        rss_small, rss_large = rss(small), rss(large)
    finally:
        for server in servers:
            server.stop()
    small_store = store_figures(small_dir)
    large_store = store_figures(large_dir)
    shutil.rmtree(workdir, ignore_errors=True)

    def per_round(a: str, b: str) -> list[float]:
        return [x["rps"] / y["rps"] for x, y in zip(runs[a], runs[b], strict=True)]

    r_observe = per_round("observe", "predict")
    r_scale = per_round("observe-1M", "observe")
    med = {name: median_run(v) for name, v in runs.items()}
    batch_points = [x["rps"] * BATCH_POINTS for x in runs["batch"]]

    def per_commit(name: str, histogram: dict) -> str:
        n = histogram["_count"]
        return f"{n:,.0f} in {commits[name]:,} commits ({n / max(commits[name], 1):.1f} each)"

    def avg_us(h: dict, per: int = 1) -> float:
        return h["_sum"] / h["_count"] / per * 1e6

    def ok(met: bool) -> str:
        return "**met**" if met else "**missed**"

    ratio_observe = statistics.median(r_observe)
    ratio_scale = statistics.median(r_scale)
    points_s = statistics.median(batch_points)
    us_point = avg_us(alone_batch_in, BATCH_POINTS)
    us_point_loaded = avg_us(batch_in, BATCH_POINTS)
    lines = [
        "# anomalyd streams benchmark",
        "",
        (
            f"- date: {dt.datetime.fromtimestamp(started, dt.UTC):%Y-%m-%d %H:%M} UTC, "
            f"took {time.time() - started:.0f} s"
        ),
        (
            f"- machine: {machine()}; load average before {load_before[0]:.2f}, after "
            f"{os.getloadavg()[0]:.2f} (shared machine: read the ratios)"
        ),
        (
            f"- command: `.venv/bin/python bench/streams.py` (BENCH_ROUNDS={ROUNDS}, "
            f"BENCH_WRK_SECONDS={WRK_SECONDS}, BENCH_CONNECTIONS={CONNECTIONS}, "
            f"BENCH_BATCH_CONNECTIONS={BATCH_CONNECTIONS})"
        ),
        (
            "- anomalyd with its default settings (2 workers, gthread, 4 threads); stores "
            f"filled directly: {SERIES:,} series and {SERIES:,} streams; "
            f"{SCALE_STREAMS:,} streams ({t_large:.0f} s); each stream had learned 64 points"
        ),
        "",
        "| scenario | req/s | p50 ms | p95 ms | p99 ms | errors |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, label in (
        ("predict", f"single-point predicts, {SERIES:,} series"),
        ("observe", f"single-point observes, {SERIES:,} streams"),
        ("observe-1M", f"single-point observes, {SCALE_STREAMS:,} streams"),
        ("batch", f"{BATCH_POINTS:,}-point batch observes, {BATCH_STREAMS} streams"),
    ):
        m = med[name]
        lines.append(
            f"| {label} | {m['rps']:,.0f} | {m['p50']:.2f} | {m['p95']:.2f} | "
            f"{m['p99']:.2f} | {m['errors']} |"
        )
    lines += [
        "",
        "| figure | measured | goal | |",
        "|---|---:|---:|---|",
        (
            f"| single-point observes/s / predicts/s (same service, same run) | "
            f"{ratio_observe:.2f} (rounds: {', '.join(f'{x:.2f}' for x in r_observe)}) "
            f"| ≥ 0.5 | {ok(ratio_observe >= 0.5)} |"
        ),
        (
            f"| {BATCH_POINTS:,}-point batch observes, points/s (2 workers) | "
            f"{points_s:,.0f} | ≥ 100,000 | {ok(points_s >= 100_000)} |"
        ),
        (
            f"| in-service µs per point, batches of {BATCH_POINTS:,}, one at a time "
            f"(/metrics, decode to durable commit) | {us_point:.1f} | ≤ 20 | "
            f"{ok(us_point <= 20)} |"
        ),
        (
            f"| the same under the {BATCH_CONNECTIONS}-connection load above (queueing "
            f"for the GIL and the writer included) | {us_point_loaded:.1f} | "
            "reported | |"
        ),
        (
            f"| observes/s with {SCALE_STREAMS:,} streams / with {SERIES:,} | "
            f"{ratio_scale:.2f} (rounds: {', '.join(f'{x:.2f}' for x in r_scale)}) | "
            f"≥ 0.9 | {ok(ratio_scale >= 0.9)} |"
        ),
        (
            f"| stored record per stream (state {online.STATE_SIZE} B inside) | "
            f"{small_store['record_avg']:.0f} B avg, {small_store['record_max']} B max | "
            f"≤ 4,096 | {ok(small_store['record_max'] <= 4096)} |"
        ),
        (
            f"| history per retained point | {ROW.size} B raw, "
            f"{small_store['history_bytes_per_point']:.1f} B in LMDB pages | reported | |"
        ),
        "",
        (
            "In-service times (/metrics, over the rounds): single-point observe "
            f"{avg_us(observe_in):.0f} µs avg ({observe_in['_count']:,.0f} observes; "
            f"single-point predict {avg_us(predict_in):.0f} µs avg); "
            f"{BATCH_POINTS:,}-point batch {avg_us(batch_in) / 1000:.1f} ms avg; with "
            f"{SCALE_STREAMS:,} streams, single-point observe {avg_us(large_in):.0f} µs "
            f"avg. Group commit: {per_commit('observe', observe_in)}; with "
            f"{SCALE_STREAMS:,} streams {per_commit('observe-1M', large_in)}; "
            f"batches {per_commit('batch', batch_in)}. One request at a time: "
            f"single-point observe {avg_us(alone_single_in):.0f} µs avg in the service "
            f"({alone_single['rps']:,.0f}/s, the durable commit's fsync each time), "
            f"{BATCH_POINTS:,}-point batch {avg_us(alone_batch_in) / 1000:.1f} ms avg "
            f"({alone_batch['rps']:,.1f}/s)."
        ),
        "",
        (
            f"{SCALE_STREAMS:,} streams: data.mdb "
            f"{large_store['data_file_bytes'] / 2**30:.2f} GiB on disk "
            f"({large_store['data_file_bytes'] / large_store['streams']:,.0f} B per "
            f"stream: records {large_store['streams_table_per_stream']:,.0f} B and "
            "history "
            f"{large_store['history_per_stream']:,.0f} B per stream in LMDB pages, with "
            f"64 points of history each; each retained point adds about "
            f"{large_store['history_bytes_per_point']:.0f} B, so the default "
            f"stream_history of 2,000 would take about "
            f"{2000 * large_store['history_bytes_per_point'] / 1024:.0f} KiB per stream). "
            "Worker memory after the rounds: RSS "
            f"{', '.join(f'{r:.0f}' for r, _ in rss_large)} MiB, of which private "
            f"(RssAnon) {', '.join(f'{a:.0f}' for _, a in rss_large)} MiB; with "
            f"{SERIES:,} streams: RSS {', '.join(f'{r:.0f}' for r, _ in rss_small)} MiB, "
            f"private {', '.join(f'{a:.0f}' for _, a in rss_small)} MiB. The rest of RSS "
            "is the store's file mapped read-only (page cache shared by the workers, "
            "reclaimable). No stream is held in worker memory between requests."
        ),
        "",
        "Rounds, req/s: " + "; ".join(f"{k} {v['rounds']}" for k, v in med.items()),
    ]
    report = "\n".join(lines) + "\n"
    print(report)
    results = BENCH / "results"
    results.mkdir(exist_ok=True)
    (results / "streams.md").write_text(report)
    log(f"written to {results / 'streams.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
