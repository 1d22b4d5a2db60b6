"""Training throughput with 1 and N data-parallel processes on this machine.

    python -m benchmarks.ddp_throughput [--preset spot-sdf] [--steps 200] [--nproc 2]

Runs ``fields-app train PRESET`` once as one process with all cores and once under ``--nproc N``
with ``cores / N`` threads each (same global batch), and reports steps/s and samples/s (the
global batch times steps/s) from the runs' ``metrics.jsonl`` after a warm-up. On one machine the
processes share the cores, so the gain is bounded by them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _batch(preset: str) -> tuple[str, int]:
    from app.presets import get_preset

    d = get_preset(preset).data
    for name in ("batch_size", "batch_rays", "shapes_per_step"):
        if hasattr(d, name):
            return name, int(getattr(d, name))
    raise SystemExit(f"{preset}: no batch size to report")


def _run(preset: str, steps: int, nproc: int, out: Path, extra: list[str]) -> dict:
    cores = os.cpu_count() or 1
    env = dict(os.environ, OMP_NUM_THREADS=str(max(1, cores // nproc)))
    cmd = [sys.executable, "-m", "app.cli", "train", preset, "--steps", str(steps), "--out",
           str(out), "--no-progress", "--trainer.log-every", "10", *extra]
    if nproc > 1:
        cmd += ["--nproc", str(nproc)]
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    warm = [r for r in rows if r["step"] > steps // 4]
    t = warm[-1]["elapsed_s"] - warm[0]["elapsed_s"]
    return {"steps_per_s": (warm[-1]["step"] - warm[0]["step"]) / t}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="spot-sdf")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--nproc", type=int, default=2)
    p.add_argument("--json")
    args, extra = p.parse_known_args(argv)
    name, batch = _batch(args.preset)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in (1, args.nproc):
            r = _run(args.preset, args.steps, n, Path(tmp) / f"n{n}", extra)
            r.update({"processes": n, "threads_each": max(1, (os.cpu_count() or 1) // n),
                      "global_batch": f"{batch} ({name})",
                      "samples_per_s": r["steps_per_s"] * batch})
            rows.append(r)
            print(json.dumps(r))
    if args.json:
        Path(args.json).write_text(json.dumps({"preset": args.preset, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
