"""The run's figures as JSON, a Markdown table (each figure beside its baseline, the ratio and
the target) and PNG plots of the latency distributions."""
import json

import matplotlib

matplotlib.use("Agg")  # no display: files only
import matplotlib.pyplot as plt

GUNICORN_RSS_LIMIT_MB = 150


def _row(measure, ours, baseline=None, *, at_least=None, target="", met=None):
    """One table row; with `at_least`, the ratio ours/baseline is the verdict."""
    ratio = ours / baseline if at_least is not None else None
    if ratio is not None:
        met = ratio >= at_least
    return {"measure": measure, "ours": ours, "baseline": baseline, "ratio": ratio, "target": target, "met": met}


def ratios(figures):
    """The table's rows (measure, ours, baseline, ratio, target, met), also kept in the JSON."""
    http, audit, imports, hooks = figures["http"], figures["audit"], figures["import"], figures["webhooks"]
    governed, bare = http["governed"], http["bare"]
    p99_gap = governed["p99_ms"] - bare["p99_ms"]
    leaked, rss = figures["consent"]["leaked_persons"], max(figures["gunicorn_rss_mb"])
    return [
        _row("GET /api/v1/persons/ throughput (req/s)", governed["throughput"], bare["throughput"],
             at_least=0.8, target="≥ 0.8 of bare"),
        _row("GET /api/v1/persons/ p50 latency (ms)", governed["p50_ms"], bare["p50_ms"]),
        _row("GET /api/v1/persons/ p99 latency (ms)", governed["p99_ms"], bare["p99_ms"],
             target=f"≤ bare + 5 ms (here +{p99_gap:.1f})", met=p99_gap <= 5),
        _row("GET /api/v1/persons/ first run on the fresh database vs the second (req/s)",
             figures["first_run"]["first"]["throughput"], figures["first_run"]["second"]["throughput"],
             at_least=0.9, target="within 10 % of the second"),
        _row("GET /api/v1/persons/ with the disclosure ledger vs without (req/s)", http["ledger_on"]["throughput"], http["ledger_off"]["throughput"],
             at_least=0.9, target="≥ 0.9 (the ledger costs ≤ 10 %)"),
        _row("audit append (records/s)", audit["service"]["rate"], audit["raw_insert"]["rate"],
             at_least=0.8, target="≥ 0.8 of raw INSERT"),
        _row("batch import vs COPY (rows/s)", imports["governed"]["rate"], imports["copy"]["rate"],
             at_least=0.1, target="≥ 0.1 of COPY"),
        _row("batch import vs django-import-export (rows/s)", imports["governed"]["rate"], imports["import_export"]["rate"],
             at_least=5, target="≥ 5×"),
        *_records_floor_row(imports),
        _row("webhook deliveries per worker (/s)", hooks["webhook"]["rate"], hooks["noop"]["rate"],
             at_least=0.3, target="≥ 0.3 of no-op tasks"),
        _row("leaked persons after consent withdrawal", leaked, target="0", met=leaked == 0),
        _row("largest gunicorn worker RSS (MB)", rss, target=f"< {GUNICORN_RSS_LIMIT_MB}", met=rss < GUNICORN_RSS_LIMIT_MB),
    ]


def _records_floor_row(imports):
    """The import beside the same rows written into the records table by SQL alone (no target:
    it shows how much of the distance to a bare COPY is the table's own indexes and keys)."""
    floor = imports.get("records_floor")
    if floor is None:
        return []
    row = _row("batch import vs SQL alone into the records table (rows/s)", imports["governed"]["rate"], floor["rate"])
    return [{**row, "ratio": imports["governed"]["rate"] / floor["rate"]}]


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


def stages_markdown(stages):
    lines = [
        f"Where a governed GET /api/v1/persons/ spends its time: py-spy at {stages['rate_hz']} Hz over "
        f"{stages['requests']:,} requests ({stages['seconds']:.0f} s), µs of worker time per request; flame graph: flame.svg.",
        "",
        "| stage | µs per request | budget | met |",
        "| --- | ---: | ---: | --- |",
    ]
    for row in stages["stages"]:
        budget = row["budget_us"]
        met = "" if budget is None else ("yes" if row["us_per_request"] <= budget else "**no**")
        lines.append(f"| {row['stage']} | {row['us_per_request']:,.0f} | {'' if budget is None else f'{budget:,}'} | {met} |")
    lines.append(f"| total | {stages['total_us']:,.0f} |  |  |")
    return "\n".join(lines) + "\n"


def multi_markdown(multi):
    """The checks across processes (bench/multi.py) as a list: they are right or wrong, not fast."""
    rate, jobs, chain = multi["rate_limit"], multi["jobs"], multi["audit_chain"]
    verdict = lambda ok: "correct" if ok else "**WRONG**"  # noqa: E731
    instances = ", ".join(f"instance {'ab'[n]}: " + " ".join(f"{n_}×{code}" for code, n_ in sorted(counts.items()))
                          for n, counts in enumerate(rate["by_instance"]))
    by_worker = ", ".join(f"{worker.split('@')[0]}: {n}" for worker, n in sorted(jobs["jobs_by_worker"].items()))
    return "\n".join([
        "## More than one machine, shown on one",
        "",
        f"{multi['gunicorn_instances']} gunicorn instances ({multi['gunicorn_workers_each']} worker(s) each) and "
        f"{multi['celery_workers']} Celery workers, separate processes on the same PostgreSQL and Redis.",
        "",
        f"- rate limit across instances: allowance {rate['allowance']} a minute (rate + burst), {rate['fired']} "
        f"requests alternately to both: {rate['allowed']} served, {rate['refused']} refused (429) "
        f"({instances}) — {verdict(rate['correct'])}",
        f"- job claims: {jobs['jobs']} imports of {jobs['rows_each']} rows, each queued twice to both workers: "
        f"{jobs['completed_once']} ran exactly once with every row written once ({by_worker}) — {verdict(jobs['correct'])}",
        f"- audit chain of `{chain['chain']}` after both (sealers in both workers during the load): "
        f"{chain['records_checked']:,} records verify, {chain['unsealed_after']} unsealed"
        + (f", broken: {chain['broken']}" if chain["broken"] else "") + f" — {verdict(chain['ok'])}",
    ]) + "\n"


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
    """Write bench.json (without the per-append latencies: they are in the plot), bench.md and
    latency.png to `out`; returns the Markdown table."""
    table = ratios(figures)
    audit = {k: {kk: vv for kk, vv in v.items() if kk != "latencies_ms"} if isinstance(v, dict) else v
             for k, v in figures["audit"].items()}
    (out / "bench.json").write_text(json.dumps({**figures, "audit": audit, "table": table}, indent=2, default=str))
    text = markdown(figures, table) + "\n" + multi_markdown(figures["multi"])
    (out / "bench.md").write_text(text)
    stages = stages_markdown(figures["stages"])
    (out / "stages.md").write_text(stages)
    plot(figures, out / "latency.png")
    return text + "\n" + stages
