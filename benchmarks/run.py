"""One entry point for the side-by-side benchmarks (../shared/BENCHMARKS.md).

    python -m benchmarks.run --suite cpu [--quick] [--rows B1,B8] [--json FILE]

Each row runs in a fresh subprocess (so peak memory is per row, from ``resource.getrusage``),
prints one table — benchmark | ours | peer | ratio | ceiling | % of ceiling — and writes JSON.
Ratios are ours-better-than-peer when > 1, measured in the same run.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROWS = {
    "B1": "benchmarks.rows.b1_hashgrid",
    "B2": "benchmarks.rows.b2_mlp",
    "B4": "benchmarks.rows.b4_volume",
    "B5": "benchmarks.rows.b5_trace_mesh",
    "B6": "benchmarks.rows.b6_trace_field",
    "B7": "benchmarks.rows.b7_sdf_samples",
    "B8": "benchmarks.rows.b8_meshing",
    "B9": "benchmarks.rows.b9_fit_sdf",
    "B10": "benchmarks.rows.b10_image",
    "B11": "benchmarks.rows.b11_tiny_nerf",
    "B12": "benchmarks.rows.b12_viewer",
}
SUITES = {"cpu": list(ROWS), "gpu": list(ROWS)}


def _run_row_inprocess(module: str, quick: bool, device: str) -> list[dict]:
    import resource

    import torch

    if device == "cpu":
        torch.set_num_threads(2)
    mod = importlib.import_module(module)
    rows = mod.run(quick=quick, device=device)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    out = []
    for r in rows:
        d = r.to_dict()
        d["peak_rss_mb"] = round(peak_mb, 1)
        out.append(d)
    return out


def _machine() -> dict:
    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__,
            "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "threads": torch.get_num_threads()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _fmt(v, digits=3) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v)


def print_table(rows: list[dict]) -> None:
    head = ["benchmark", "unit", "ours", "peer", "ratio", "ceiling", "% ceil", "valid", "peer is"]
    lines = [head]
    for r in rows:
        lines.append([r["benchmark"], r["unit"], _fmt(r["ours"]), _fmt(r["peer"]),
                      _fmt(r["ratio"]), _fmt(r["ceiling"]), _fmt(r["pct_of_ceiling"]),
                      "yes" if r["valid"] else "NO", r["peer_name"]])
    widths = [max(len(str(x[i])) for x in lines) for i in range(len(head))]
    for i, line in enumerate(lines):
        print(" | ".join(str(c).ljust(w) for c, w in zip(line, widths)))
        if i == 0:
            print("-+-".join("-" * w for w in widths))
    for r in rows:
        if r.get("notes"):
            print(f"  {r['benchmark']}: {r['notes']}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--suite", choices=sorted(SUITES), default="cpu")
    ap.add_argument("--rows", default=None, help="comma-separated subset, e.g. B1,B8")
    ap.add_argument("--quick", action="store_true", help="smaller workloads (smoke runs)")
    ap.add_argument("--json", default=None, help="write results here (default benchmarks/results/)")
    ap.add_argument("--_row", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    device = "cuda" if args.suite == "gpu" else "cpu"
    if args._row:  # child process: run one row, print JSON
        print("@@ROWS@@" + json.dumps(_run_row_inprocess(ROWS[args._row], args.quick, device)))
        return 0
    names = args.rows.split(",") if args.rows else SUITES[args.suite]
    results: list[dict] = []
    for name in names:
        if name not in ROWS:
            ap.error(f"unknown row {name}; known: {', '.join(ROWS)}")
        t0 = time.time()
        cmd = [sys.executable, "-m", "benchmarks.run", "--suite", args.suite, "--_row", name]
        if args.quick:
            cmd.append("--quick")
        proc = subprocess.run(cmd, capture_output=True, text=True)
        rows = []
        for line in proc.stdout.splitlines():
            if line.startswith("@@ROWS@@"):
                rows = json.loads(line[len("@@ROWS@@"):])
        if proc.returncode != 0 or not rows:
            err = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            rows = [{"benchmark": name, "unit": "", "ours": None, "peer": None, "ratio": None,
                     "ceiling": None, "pct_of_ceiling": None, "valid": False, "peer_name": "",
                     "notes": f"row failed: {err}"}]
        for r in rows:
            r["row_seconds"] = round(time.time() - t0, 1)
        results.extend(rows)
        print(f"[{name}] done in {time.time() - t0:.0f}s", file=sys.stderr, flush=True)
    print_table(results)
    out = Path(args.json or f"benchmarks/results/{args.suite}{'-quick' if args.quick else ''}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": _machine(), "suite": args.suite, "quick": args.quick,
                               "date": time.strftime("%Y-%m-%d %H:%M"), "rows": results}, indent=2))
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
