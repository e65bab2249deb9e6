"""Where a governed request's time goes (issue #12 item 1): py-spy samples every gunicorn
worker while wrk drives the governed endpoint; each sampled stack is given to the first stage
whose code it is in (innermost first), and a stage's cost per request is its samples' time
divided by the requests served meanwhile. A second recording of the same load is written as a
flame graph (SVG) beside latency.png.

Sampling on this 2-core machine takes CPU from the server: the figures are a breakdown, the
throughput of the breakdown run is not the benchmark's."""
import re
import subprocess
import sys
from pathlib import Path

from .http_load import wrk

PY_SPY = Path(sys.executable).parent / "py-spy"
RATE = 250  # samples per second per thread

# (stage, budget in µs per request or None, markers: "file:function" fragments), innermost
# first: a stack belongs to the first stage that any of its frames names, looked up from the
# innermost frame outwards.
STAGES = [
    ("disclosure ledger (digest, release)", None, ["audit/ledger.py:commitment", "exchange/scope.py:release",
                                                   "scp_audit_verify.py:disclosures_digest"]),
    ("audit insert and commit (with the ledger row)", 300, ["audit/services.py:audit_record"]),
    ("metrics", None, ["exchange/metrics.py:observe_request", "prometheus_client"]),
    ("rate limit (Redis)", None, ["exchange/ratelimit.py"]),
    ("controls (IP, API key, mTLS)", None, ["exchange/controls.py"]),
    ("token and JWKS", 150, ["lifecycle/tokens.py:verify", "jwt/"]),
    ("integration and state", 100, ["exchange/authentication.py", "exchange/policy.py"]),
    ("masking", None, ["exchange/masking.py"]),
    ("scope and consent query (with planning)", None, ["paginate_queryset", "exchange/scope.py"]),
    ("serialization and response", None, ["rest_framework/renderers.py", "get_paginated_response",
                                          "rest_framework/response.py"]),
    ("middleware and framework", None, ["django/core/handlers", "gunicorn/workers"]),
]


def stage_costs(server, url, headers, *, seconds, connections, workdir):
    """{stage: µs per request} of the governed `url`, and the flame graph's path."""
    raw = Path(workdir) / "stacks.txt"
    stacks = _sample(server, url, headers, seconds=seconds, connections=connections, out=raw, fmt="raw")
    flame = Path(workdir) / "flame.svg"
    _sample(server, url, headers, seconds=max(2, seconds // 2), connections=connections, out=flame, fmt="flamegraph")
    requests_ = stacks["requests"]
    totals = dict.fromkeys([name for name, _budget, _markers in STAGES] + ["other"], 0)
    for line in raw.read_text(errors="replace").splitlines():
        frames, _, count = line.rpartition(" ")
        if not frames or not count.isdigit():
            continue
        totals[_stage_of(frames.split(";"))] += int(count)
    per_request = {name: round(samples / RATE / requests_ * 1e6, 1) for name, samples in totals.items()}
    budgets = {name: budget for name, budget, _markers in STAGES}
    return {
        "requests": requests_, "seconds": stacks["seconds"], "rate_hz": RATE,
        "stages": [{"stage": name, "us_per_request": us, "budget_us": budgets.get(name)}
                   for name, us in per_request.items()],
        "total_us": round(sum(per_request.values()), 1),
    }, flame


_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")


def _matches(frame, marker):
    """`marker` is "file fragment:function" or a fragment of either."""
    found = _FRAME.match(frame)
    function, file = (found["function"], found["file"]) if found else (frame, "")
    if ":" in marker:
        fragment, wanted = marker.rsplit(":", 1)
        return fragment in file and function == wanted
    return marker in file or marker == function


def _stage_of(frames):
    for frame in reversed(frames):  # innermost first
        for name, _budget, markers in STAGES:
            if any(_matches(frame, marker) for marker in markers):
                return name
    return "other"


def _sample(server, url, headers, *, seconds, connections, out, fmt):
    spy = subprocess.Popen(
        [str(PY_SPY), "record", "--pid", str(server.pid), "--subprocesses", "--nonblocking", "--rate", str(RATE),
         "--duration", str(seconds + 1), "--format", fmt, "--output", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    run = wrk(url, seconds=seconds, connections=connections, headers=headers)
    _out, err = spy.communicate(timeout=seconds + 60)
    if spy.returncode != 0 or not out.exists():
        raise RuntimeError(f"py-spy failed ({spy.returncode}): {err[-500:]}")
    return {"requests": run["requests"], "seconds": run["duration_us"] / 1e6}
