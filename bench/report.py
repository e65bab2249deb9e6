"""The run's figures as JSON, a Markdown table (each figure beside its baseline, the ratio and
the target) and PNG plots of the latency distributions."""
import json

import matplotlib

matplotlib.use("Agg")  # no display: files only
import matplotlib.pyplot as plt

GUNICORN_RSS_LIMIT_MB = 150


def ratios(figures):
    """(measure, ours, baseline, ratio, target text, met) for the table and the JSON."""
    http, audit, imports, hooks = figures["http"], figures["audit"], figures["import"], figures["webhooks"]
    governed, bare = http["governed"], http["bare"]
    p99_gap = governed["p99_ms"] - bare["p99_ms"]
    rows = [
        ("GET /api/v1/persons/ throughput (req/s)", governed["throughput"], bare["throughput"],
         governed["throughput"] / bare["throughput"], "≥ 0.8 of bare", governed["throughput"] / bare["throughput"] >= 0.8),
        ("GET /api/v1/persons/ p50 latency (ms)", governed["p50_ms"], bare["p50_ms"], None, "", None),
        ("GET /api/v1/persons/ p99 latency (ms)", governed["p99_ms"], bare["p99_ms"], None,
         f"≤ bare + 5 ms (here +{p99_gap:.1f})", p99_gap <= 5),
        ("audit append (records/s)", audit["service"]["rate"], audit["raw_insert"]["rate"],
         audit["service"]["rate"] / audit["raw_insert"]["rate"], "≥ 0.8 of raw INSERT",
         audit["service"]["rate"] / audit["raw_insert"]["rate"] >= 0.8),
        ("batch import vs COPY (rows/s)", imports["governed"]["rate"], imports["copy"]["rate"],
         imports["governed"]["rate"] / imports["copy"]["rate"], "≥ 0.1 of COPY",
         imports["governed"]["rate"] / imports["copy"]["rate"] >= 0.1),
        ("batch import vs django-import-export (rows/s)", imports["governed"]["rate"], imports["import_export"]["rate"],
         imports["governed"]["rate"] / imports["import_export"]["rate"], "≥ 5×",
         imports["governed"]["rate"] / imports["import_export"]["rate"] >= 5),
        ("webhook deliveries per worker (/s)", hooks["webhook"]["rate"], hooks["noop"]["rate"],
         hooks["webhook"]["rate"] / hooks["noop"]["rate"], "≥ 0.3 of no-op tasks",
         hooks["webhook"]["rate"] / hooks["noop"]["rate"] >= 0.3),
        ("leaked persons after consent withdrawal", figures["consent"]["leaked_persons"], None, None, "0",
         figures["consent"]["leaked_persons"] == 0),
        ("largest gunicorn worker RSS (MB)", max(figures["gunicorn_rss_mb"]), None, None,
         f"< {GUNICORN_RSS_LIMIT_MB}", max(figures["gunicorn_rss_mb"]) < GUNICORN_RSS_LIMIT_MB),
    ]
    return [dict(zip(("measure", "ours", "baseline", "ratio", "target", "met"), row)) for row in rows]


def _cell(value):
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:,.2f}" if value < 100 else f"{value:,.0f}"
    return f"{value:,}"


def markdown(figures, table):
    lines = [
        f"Run of {figures['started']} ({figures['profile']}), {figures['machine']}.",
        "",
        "| measure | governed | baseline | ratio | target | met |",
        "| --- | ---: | ---: | ---: | --- | --- |",
    ]
    for row in table:
        met = "" if row["met"] is None else ("yes" if row["met"] else "**no**")
        lines.append(f"| {row['measure']} | {_cell(row['ours'])} | {_cell(row['baseline'])} | "
                     f"{_cell(row['ratio'])} | {row['target']} | {met} |")
    return "\n".join(lines) + "\n"


def plot(figures, path):
    http, audit = figures["http"], figures["audit"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, style in (("governed", "-"), ("bare", "--")):
        points = http[name]["percentiles"]
        left.plot([p for p, _ in points], [us / 1000 for _, us in points], style, label=name)
    left.set(title="GET /api/v1/persons/ latency (wrk)", xlabel="percentile", ylabel="ms", yscale="log")
    left.legend()
    for name, label, style in (("service", "audit append (service)", "-"), ("raw_insert", "raw INSERT", "--")):
        latencies = audit[name]["latencies_ms"]
        n = len(latencies)
        right.plot([100 * (i + 1) / n for i in range(n)], latencies, style, label=label)
    right.set(title="audit append latency", xlabel="percentile", ylabel="ms", yscale="log")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(figures, out):
    table = ratios(figures)
    summary = {**figures, "table": table}
    summary["audit"] = {k: ({kk: vv for kk, vv in v.items() if kk != "latencies_ms"} if isinstance(v, dict) else v)
                        for k, v in figures["audit"].items()}
    (out / "bench.json").write_text(json.dumps(summary, indent=2, default=str))
    text = markdown(figures, table)
    (out / "bench.md").write_text(text)
    plot(figures, out / "latency.png")
    return text, table
