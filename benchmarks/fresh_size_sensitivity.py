"""How FreSh's pick moves with S (the spectrum bins compared), against grid searches already run.

    python -m benchmarks.fresh_size_sensitivity docs/img/fresh_siren_w64_a.json \\
        docs/img/fresh_siren_w64_b.json --json docs/img/fresh_size_sensitivity.json

For every image of the given ``benchmarks.fresh_study`` JSON files (same images, sizes,
networks and candidates as the study that wrote them), FreSh is re-run with S ∈ ``--sizes``
(forward passes only; S is capped at half the image's shorter side as the study does) and its
pick is scored against that study's trained grid search: grid steps from the best, PSNR gap.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("studies", nargs="+", help="fresh_study JSON files")
    ap.add_argument("--sizes", default="8,16,32,64")
    ap.add_argument("--inits", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    from app.tasks.image import image_fresh_search, read_image
    from benchmarks.fresh_study import ROOT, configure

    out: dict[str, dict] = {}
    for f in args.studies:
        d = json.loads(Path(f).read_text())
        a = d["args"]
        for r in d["rows"]:
            if r["kind"] != "image":
                continue
            image = next(p for p in a["images"].split(",") if p.endswith(r["image"]))
            path = image if Path(image).exists() else str(ROOT / image)
            cfg = configure(a["encoding"], path, a["max_side"], 1, a["arch"], a.get("width"),
                            a.get("crop", 0))
            img, _ = read_image(cfg.data)
            cands = list(r["candidates"])
            best = cands.index(r["best"])
            res = {}
            for s in (int(v) for v in args.sizes.split(",")):
                size = min(s, min(img.shape[:2]) // 2)
                search = image_fresh_search(cfg, img, candidates=tuple(cands), inits=args.inits,
                                            size=size)
                pick = search.chosen_index
                res[str(size)] = {"pick": cands[pick], "steps": abs(pick - best),
                                  "gap": round(r["psnr_best"] - r["psnr_test"][pick], 3)}
            out.setdefault(Path(f).name, {})[r["image"]] = res
            print(Path(f).name, r["image"], json.dumps(res), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
