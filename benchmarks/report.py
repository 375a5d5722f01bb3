"""Turn measured rows into results.json, results.md (table + targets) and plot.png."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["REFERENCE_OPS", "evaluate_targets", "write"]

#: The documee-remote row each scenario's "x vs documee-remote" column divides by.
REFERENCE_OPS = {
    "save": "save_analysis",
    "load": "load_analysis",
    "incremental": "merge_file_analyses",
    "concurrent": None,  # the one documee-remote (S3Store) row
}
RAW = ("boto3-threads", "s3fs-bulk", "obstore")
DOCUMEE = "documee-remote"
#: documee-remote's S3 backends judged by the full-save targets, each by name: the
#: default (boto3) and the optional obstore one. The other targets use the default.
DOCUMEE_BACKENDS = {
    DOCUMEE: "S3Store, boto3, the default",
    "documee-remote/obstore": "ObstoreStore, backend='obstore'",
}
PORT = "sequential-port"
TARGET_FILES = (1000, 3000)
TARGET_LATENCY = 20.0
SCENARIO_ORDER = {"save": 0, "load": 1, "incremental": 2, "concurrent": 3}
CLIENT_ORDER = {
    DOCUMEE: 0,
    "documee-remote/obstore": 1,
    "documee-remote/fsspec": 2,
    PORT: 3,
    "boto3-threads": 4,
    "s3fs-bulk": 5,
    "obstore": 6,
}


def _find(rows: Iterable[dict[str, Any]], **where: Any) -> dict[str, Any] | None:
    for row in rows:
        if row.get("ok") and all(row.get(k) == v for k, v in where.items()):
            return row
    return None


def _reference(
    rows: list[dict[str, Any]], row: dict[str, Any], client: str
) -> dict[str, Any] | None:
    where = {"scenario": row["scenario"], "files": row["files"], "latency_ms": row["latency_ms"]}
    if client == DOCUMEE:
        op = REFERENCE_OPS[row["scenario"]]
        if op is None:
            return _find(rows, **where, client=DOCUMEE)
        return _find(rows, **where, client=DOCUMEE, op=op)
    return _find(rows, **where, client=client)


def _ratio(row: dict[str, Any], ref: dict[str, Any] | None) -> float | None:
    if ref is None or not row.get("ok") or not ref.get("wall_s"):
        return None
    return float(row["wall_s"]) / float(ref["wall_s"])


def _fmt(x: float | None, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.{digits}f}"


def _sort_key(row: dict[str, Any]) -> tuple[Any, ...]:
    return (
        SCENARIO_ORDER.get(row["scenario"], 9),
        row["files"],
        row["latency_ms"],
        CLIENT_ORDER.get(row["client"], 9),
        row["op"],
    )


# ----------------------------------------------------------------------------- targets


def _target(name: str, met: bool | None, detail: str, **numbers: Any) -> dict[str, Any]:
    return {"target": name, "met": met, "detail": detail, **numbers}


def _save_targets(rows: list[dict[str, Any]], n: int, at: dict[str, Any]) -> list[dict[str, Any]]:
    """The full-save targets, once per documee-remote backend measured, each named."""
    out: list[dict[str, Any]] = []
    port = _find(rows, scenario="save", client=PORT, **at)
    raws = [r for c in RAW if (r := _find(rows, scenario="save", client=c, **at))]
    best = min(raws, key=lambda r: r["wall_s"]) if raws else None
    for client, backend in DOCUMEE_BACKENDS.items():
        save = _find(rows, scenario="save", client=client, **at)
        if save is None:
            continue
        full = float(save["wall_s"])
        who = f"{client} ({backend})"
        if port is not None:
            speedup = float(port["wall_s"]) / full
            bound = ""
            if best is not None:
                bound = (
                    f"; the fastest raw client ({best['client']}) is "
                    f"{float(port['wall_s']) / float(best['wall_s']):.1f}x"
                )
            out.append(
                _target(
                    f"save {n} files, {who}: >= 8x faster than the sequential port",
                    speedup >= 8,
                    f"{speedup:.1f}x ({port['wall_s']:.2f} s vs {full:.2f} s){bound}",
                    files=n,
                    client=client,
                    value=speedup,
                )
            )
        if best is not None:
            ratio = full / float(best["wall_s"])
            out.append(
                _target(
                    f"save {n} files, {who}: within 1.25x of the fastest raw client",
                    ratio <= 1.25,
                    f"{ratio:.2f}x of {best['client']} ({full:.2f} s vs {best['wall_s']:.2f} s)",
                    files=n,
                    client=client,
                    value=ratio,
                )
            )
    return out


def evaluate_targets(rows: list[dict[str, Any]], meta: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, on the 20 ms runs of 1,000 and 3,000 files."""
    out: list[dict[str, Any]] = []
    lat = TARGET_LATENCY
    for n in TARGET_FILES:
        at = {"files": n, "latency_ms": lat}
        save = _find(rows, scenario="save", client=DOCUMEE, **at)
        if save is None:
            continue
        full = float(save["wall_s"])
        out += _save_targets(rows, n, at)
        # merge_file_analyses and save_analysis compact eagerly; append_file_analyses is
        # a merge under the deferred policy.
        for op, policy, limit in (
            ("merge_file_analyses", "eager", 0.40),
            ("save_analysis", "eager", 0.40),
            ("append_file_analyses", "deferred", 0.05),
        ):
            inc = _find(rows, scenario="incremental", client=DOCUMEE, op=op, **at)
            if inc is None:
                continue
            share = float(inc["wall_s"]) / full
            reqs = int(inc["requests"])
            out.append(
                _target(
                    f"incremental ({op}, 2 files) {n} files: <= 10 requests",
                    reqs <= 10,
                    f"{reqs} requests {inc.get('methods', {})}",
                    files=n,
                    value=reqs,
                )
            )
            out.append(
                _target(
                    f"incremental ({op}, 2 files) {n} files: < {limit:.0%} of a full save "
                    f"({policy})",
                    share < limit,
                    f"{share:.1%} ({inc['wall_s']:.2f} s vs {full:.2f} s)",
                    files=n,
                    value=share,
                )
            )
        load = _find(rows, scenario="load", client=DOCUMEE, **at)
        raw_loads = [r for c in RAW if (r := _find(rows, scenario="load", client=c, **at))]
        if load is not None and raw_loads:
            best = min(raw_loads, key=lambda r: r["wall_s"])
            ratio = float(load["wall_s"]) / float(best["wall_s"])
            out.append(
                _target(
                    f"load {n} files: within 1.3x of raw GET + json.loads",
                    ratio <= 1.3,
                    f"{ratio:.2f}x of {best['client']} ({load['wall_s']:.2f} s vs "
                    f"{best['wall_s']:.2f} s)",
                    files=n,
                    value=ratio,
                )
            )
        conc = [
            r
            for r in rows
            if r["scenario"] == "concurrent"
            and r["client"] == DOCUMEE
            and r["files"] == n
            and r["latency_ms"] == lat
        ]
        for r in conc:
            w = len(r.get("writers") or [])
            ratio = float(r.get("wall_s", math.nan)) / full
            out.append(
                _target(
                    f"concurrent {w} writers {n} files: wall within 2x of one full save",
                    bool(r.get("wall_s")) and ratio <= 2,
                    f"{ratio:.2f}x ({r.get('wall_s', math.nan):.2f} s vs {full:.2f} s)",
                    files=n,
                    value=ratio,
                )
            )
            lost = r.get("lost_updates")
            out.append(
                _target(
                    f"concurrent {w} writers {n} files: zero lost updates",
                    lost == 0 and not r.get("errors"),
                    f"{lost} lost files, {r.get('lost_graph_nodes')} lost graph nodes, "
                    f"{r.get('lost_hashes')} lost hashes, {len(r.get('errors') or [])} failed "
                    "writers",
                    files=n,
                    value=lost,
                )
            )
    duration = meta.get("duration_s")
    default_run = sorted(meta.get("files", [])) == [100, 1000, 3000] and sorted(
        meta.get("latency_ms", [])
    ) == [0.0, 20.0]
    if duration is not None and default_run:
        out.append(
            _target(
                "default run (make bench) under 10 minutes",
                duration < 600,
                f"{duration:.0f} s",
                value=duration,
            )
        )
    return out


# ----------------------------------------------------------------------------- markdown


def _table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| scenario | files | latency ms | client | op | wall s | ÷ documee-remote | "
        "÷ seq. port | requests | MB | CPU s | peak MB | notes |",
        "|---|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in sorted(rows, key=_sort_key):
        notes = []
        if not row.get("ok"):
            notes.append(f"**FAILED**: {str(row.get('error', ''))[:120]}")
        if row.get("reused"):
            notes.append("copied from save (not re-run)")
        if "lost_updates" in row:
            notes.append(f"lost updates: {row['lost_updates']}")
        statuses = {k: v for k, v in (row.get("statuses") or {}).items() if not k.startswith("2")}
        if statuses:
            notes.append("non-2xx: " + ", ".join(f"{k} x{v}" for k, v in statuses.items()))
        if row.get("writers"):
            attempts = [w.get("attempts") for w in row["writers"] if w.get("attempts")]
            if attempts:
                notes.append(f"commit attempts {min(attempts)}-{max(attempts)}")
            compacted = [w.get("compacted") for w in row["writers"]]
            if any(c is not None for c in compacted):
                notes.append(f"{sum(1 for c in compacted if c)} writer(s) compacted")
        methods = row.get("methods") or {}
        if methods:
            notes.append(" ".join(f"{k}:{v}" for k, v in sorted(methods.items())))
        doc = _ratio(row, _reference(rows, row, DOCUMEE))
        port = _ratio(row, _reference(rows, row, PORT))
        lines.append(
            "| {scenario} | {files} | {lat:g} | {client} | {op} | {wall} | {doc} | {port} | "
            "{req} | {mb} | {cpu} | {peak} | {notes} |".format(
                scenario=row["scenario"],
                files=row["files"],
                lat=row["latency_ms"],
                client=row["client"],
                op=row["op"],
                wall=_fmt(row.get("wall_s")),
                doc=_fmt(doc),
                port=_fmt(port),
                req=row.get("requests", "-"),
                mb=_fmt(row.get("mb"), 1),
                cpu=_fmt(row.get("cpu_s")),
                peak=_fmt(row.get("peak_mb"), 0),
                notes="; ".join(notes),
            )
        )
    return lines


def _markdown(
    meta: dict[str, Any], rows: list[dict[str, Any]], targets: list[dict[str, Any]]
) -> str:
    lines = ["# documee-remote benchmarks", ""]
    versions = ", ".join(f"{k} {v}" for k, v in meta.get("versions", {}).items())
    lines += [
        f"Run {meta.get('started')} in {meta.get('duration_s')} s on "
        f"{meta.get('machine', {}).get('cpus')} CPUs ({meta.get('machine', {}).get('platform')}); "
        f"load average (1/5/15 min) {meta.get('machine', {}).get('loadavg_before')} before, "
        f"{meta.get('machine', {}).get('loadavg_after')} after.",
        f"Versions: {versions}.",
        f"Server: {meta.get('server')}.",
        "",
        "Datasets (synthetic; see benchmarks/synth.py):",
        "",
        "| files | per-file MB | median KB | p95 KB | max KB | graph MB | analysis.json MB |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n, st in sorted(meta.get("datasets", {}).items(), key=lambda kv: int(kv[0])):
        lines.append(
            f"| {n} | {st['file_bytes_total'] / 1e6:.1f} | {st['file_bytes_median'] / 1e3:.1f} | "
            f"{st['file_bytes_p95'] / 1e3:.1f} | {st['file_bytes_max'] / 1e3:.0f} | "
            f"{st['graph_bytes'] / 1e6:.1f} | {st['analysis_json_bytes'] / 1e6:.1f} |"
        )
    if meta.get("datasets"):
        sm = next(iter(meta["datasets"].values()))["size_model"]
        lines += [
            "",
            f"Per-file sizes: log-normal, median {sm['median']} B, sigma {sm['sigma']}, clipped "
            f"to [{sm['low']}, {sm['high']}] B ({sm['source']}). Graph = "
            f"{next(iter(meta['datasets'].values()))['graph_ratio']}x the per-file bytes "
            "(Django 5.1: 30 MB of graph, 22 MB of file analyses).",
        ]
    if meta.get("skipped"):
        lines += ["", "Not run, to keep the default run under 10 minutes (`--full` runs them):", ""]
        lines += [f"- {text}" for text in meta["skipped"]]
    lines += [
        "",
        "## Targets",
        "",
        "On the 20 ms server, 1,000 and 3,000 files. documee-remote is `PersistenceManager` on "
        "`S3Store` (boto3, the default backend); the full-save targets are also judged for "
        "`documee-remote/obstore`, the same `PersistenceManager` on `ObstoreStore` "
        "(`backend='obstore'`), and each line names the backend it is about. The other "
        "targets use the default backend and its full save.",
        "",
        "| target | met | measured |",
        "|---|---|---|",
    ]
    for t in targets:
        met = "n/a" if t["met"] is None else ("**met**" if t["met"] else "**NOT met**")
        lines.append(f"| {t['target']} | {met} | {t['detail']} |")
    if not targets:
        lines.append("| (no 20 ms run of 1,000 or 3,000 files) | n/a | |")
    lines += [
        "",
        "## Results",
        "",
        "wall = elapsed time of the operation; ÷ columns = this wall time divided by "
        "documee-remote's (save_analysis, load_analysis, merge_file_analyses for incremental, "
        "the 8 merges for concurrent) and by the sequential port's, same scenario, files and "
        "latency; requests and MB (request + response bodies) counted by the server; CPU s = "
        "client process CPU, all threads (summed over the 8 processes for concurrent); peak MB "
        "= resident memory the operation added on top of its inputs (the largest writer for "
        "concurrent).",
        "",
        *_table(rows),
        "",
    ]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- plot


def _plot(path: Path, rows: list[dict[str, Any]]) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    ok = [r for r in rows if r.get("ok") and r.get("wall_s")]
    if not ok:
        return False
    latencies = sorted({r["latency_ms"] for r in ok})
    lat = TARGET_LATENCY if TARGET_LATENCY in latencies else latencies[-1]
    scenarios = [s for s in SCENARIO_ORDER if any(r["scenario"] == s for r in ok)]
    cols = min(2, len(scenarios))
    nrows = math.ceil(len(scenarios) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(6.5 * cols, 4.8 * nrows), squeeze=False)
    colors = plt.get_cmap("tab10")
    for ax in axes.flat[len(scenarios) :]:
        ax.set_visible(False)
    for ax, scenario in zip(axes.flat, scenarios, strict=False):
        mine = [r for r in ok if r["scenario"] == scenario and r["latency_ms"] == lat]
        series: dict[tuple[str, str], list[tuple[int, float]]] = {}
        for r in mine:
            series.setdefault((r["client"], r["op"]), []).append((r["files"], r["wall_s"]))
        ops: dict[str, list[str]] = {}
        for client, op in sorted(series, key=lambda k: (CLIENT_ORDER.get(k[0], 9), k[1])):
            ops.setdefault(client, []).append(op)
        for (client, op), points in sorted(
            series.items(), key=lambda kv: (CLIENT_ORDER.get(kv[0][0], 9), kv[0][1])
        ):
            points.sort()
            xs, ys = zip(*points, strict=True)
            nth = ops[client].index(op)
            label = client if scenario in ("save", "load") else f"{client}: {op}"
            ax.plot(
                xs,
                ys,
                ["-", ":", "-."][nth % 3],
                marker="o" if client.startswith(DOCUMEE) else "s",
                color=colors(CLIENT_ORDER.get(client, 9)),
                linewidth=2.2 if client == DOCUMEE else 1.4,
                label=label,
                markersize=4,
            )
        if scenario == "concurrent":
            # The target's yardstick: one writer saving everything, and twice that.
            ref = sorted(
                (r["files"], r["wall_s"])
                for r in ok
                if r["scenario"] == "save" and r["client"] == DOCUMEE and r["latency_ms"] == lat
            )
            if ref:
                xs, ys = zip(*ref, strict=True)
                ax.plot(xs, ys, "--", color="grey", label="documee-remote: one full save")
                ax.plot(xs, [2 * y for y in ys], ":", color="grey", label="target: 2x that")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"{scenario} ({lat:g} ms added latency)")
        ax.set_xlabel("files")
        ax.set_ylabel("wall time (s)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write(
    out: Path, meta: dict[str, Any], rows: list[dict[str, Any]], *, plot: bool = True
) -> list[Path]:
    """Write results.json, results.md and (with matplotlib) plot.png under ``out``."""
    targets = evaluate_targets(rows, meta)
    rows = sorted(rows, key=_sort_key)
    for row in rows:
        row["x_vs_documee"] = _ratio(row, _reference(rows, row, DOCUMEE))
        row["x_vs_port"] = _ratio(row, _reference(rows, row, PORT))
    out.mkdir(parents=True, exist_ok=True)
    written = []
    json_path = out / "results.json"
    json_path.write_text(
        json.dumps({"meta": meta, "targets": targets, "rows": rows}, indent=2, default=str) + "\n"
    )
    written.append(json_path)
    md_path = out / "results.md"
    md_path.write_text(_markdown(meta, rows, targets))
    written.append(md_path)
    if plot and _plot(out / "plot.png", rows):
        written.append(out / "plot.png")
    return written
