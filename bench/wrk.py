"""wrk as the load generator: a Lua script cycles through request paths and reports the
latency percentiles as JSON, so single-connection p50/p99 and 32-connection throughput come
from the same C client, pinned to the core the server does not use.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.processes import CLIENT_CORE, taskset

_SCRIPT = """
local paths = {%(paths)s}
local i = 0
wrk.headers["Authorization"] = "Bearer %(token)s"
wrk.headers["Accept"] = "application/fhir+json"
request = function()
  i = i + 1
  return wrk.format("GET", paths[(i %% #paths) + 1])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\\nWRKJSON{"p50_us":%%d,"p90_us":%%d,"p99_us":%%d,"mean_us":%%f,"requests":%%d,'
    .. '"duration_us":%%d,"errors":%%d,"non2xx":%%d,"bytes":%%d}\\n',
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean,
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    summary.bytes))
end
"""


@dataclass
class WrkResult:
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    requests: int
    rps: float
    errors: int
    non2xx: int
    bytes_per_response: float


def available() -> bool:
    return shutil.which("wrk") is not None


def run(
    port: int,
    paths: list[str],
    *,
    token: str,
    connections: int = 1,
    threads: int = 1,
    seconds: float = 10.0,
) -> WrkResult:
    """Hit ``paths`` round-robin for ``seconds`` with ``connections`` keep-alive connections."""
    quoted = ",".join(json.dumps(p) for p in paths)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(_SCRIPT % {"paths": quoted, "token": token})
        script = Path(f.name)
    try:
        cmd = [
            *taskset(CLIENT_CORE),
            "wrk",
            "-t",
            str(min(threads, connections)),
            "-c",
            str(connections),
            "-d",
            f"{max(int(seconds), 1)}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}",
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=seconds + 60)
    finally:
        script.unlink(missing_ok=True)
    line = next(x for x in out.stdout.splitlines() if x.startswith("WRKJSON"))
    d = json.loads(line.removeprefix("WRKJSON"))
    seconds_run = d["duration_us"] / 1e6
    return WrkResult(
        p50_ms=d["p50_us"] / 1000,
        p90_ms=d["p90_us"] / 1000,
        p99_ms=d["p99_us"] / 1000,
        mean_ms=d["mean_us"] / 1000,
        requests=d["requests"],
        rps=d["requests"] / seconds_run if seconds_run else 0.0,
        errors=d["errors"],
        non2xx=d["non2xx"],
        bytes_per_response=d["bytes"] / d["requests"] if d["requests"] else 0.0,
    )
