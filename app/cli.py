"""``fields-app``: train, export, render and evaluate neural fields from the command line.

    fields-app train PRESET [--data PATH] [--steps N] [--out RUN_DIR] [--device cpu|cuda|auto]
                            [--encoding hashgrid|rbf|fourier|siren] [--fresh] [--quantize R]
                            [--restart] [--section.field VALUE ...]
    fields-app fresh PRESET [--data PATH] [--encoding fourier|siren|hashgrid] [--inits N]
                            [--size S] [--json FILE]
    fields-app export RUN_DIR --out FILE.ply|FILE.obj [--resolution R]
    fields-app render RUN_DIR --out FILE.png|FILE.mp4 [--mode shaded|normals|depth]
                              [--frames K] [--size WxH]
    fields-app eval RUN_DIR [--reference MESH] [--mesh FILE]
    fields-app presets
    fields-app [view [PRESET|RUN_DIR]] [--no-train] [--screenshot PNG --frames N] [--xvfb]

Any config field of the preset can be overridden after the known flags, e.g.
``fields-app train spot-sdf --trainer.lr 5e-3 --data.batch-size 4096`` (``--help-config`` lists
them). Errors are one line naming the file and the problem, with a non-zero exit; ``--debug``
shows the traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
import warnings
from pathlib import Path

__all__ = ["main"]


def _parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size {text!r}: expected WxH, e.g. 512x512") from None
    if w <= 0 or h <= 0 or w > 8192 or h > 8192:
        raise argparse.ArgumentTypeError(f"--size {text!r}: sizes must be in 1..8192")
    return w, h


def _parse_resolution(text: str) -> tuple[int, int]:
    """``N`` (square) or ``WxH``."""
    if "x" not in text.lower():
        try:
            n = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"--resolution {text!r}: expected N or WxH, e.g. "
                                             "128 or 37x53") from None
        if not 1 <= n <= 8192:
            raise argparse.ArgumentTypeError(f"--resolution {text!r}: must be in 1..8192")
        return n, n
    return _parse_size(text)


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    common.add_argument("--device", default=None, help="cpu, cuda or auto")

    p = argparse.ArgumentParser(
        prog="fields-app", description="A workbench for neural fields: fit, render, export.",
        parents=[common],
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    t = sub.add_parser("train", parents=[common], help="fit a preset (resumes an existing --out)",
                       description="Fit a preset. Extra --section.field VALUE flags override "
                       "any config field (see --help-config).")
    t.add_argument("preset", nargs="?", default=None, help="preset name (fields-app presets)")
    t.add_argument("--data", help="input data (e.g. a mesh for sdf presets)")
    t.add_argument("--steps", type=_positive_int, help="training steps")
    t.add_argument("--out", help="run directory (default: outputs/PRESET)")
    t.add_argument("--quantize", type=_positive_int, metavar="R",
                   help="CQ-NIR: snap network inputs to a lattice of R points per axis "
                   "(neus presets; 25600 is the official setting)")
    t.add_argument("--encoding", choices=["hashgrid", "rbf", "fourier", "siren"],
                   help="the field's encoding (image presets: all four; default: the preset's)")
    t.add_argument("--fresh", action="store_true",
                   help="FreSh: choose the encoding's frequency hyper-parameter (fourier σ, siren "
                   "ω₀, hashgrid finest resolution) from spectra at initialisation before "
                   "training (image presets); the choice is saved in config.json")
    t.add_argument("--restart", action="store_true", help="ignore existing checkpoints in --out")
    t.add_argument("--nproc", type=_positive_int, default=None,
                   help="data-parallel processes on this machine (launches torchrun: "
                   "torch.distributed, gloo on CPU / nccl on GPU; the batch is split)")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("--help-config", action="store_true", help="list every config override")

    e = sub.add_parser("export", parents=[common], help="export a mesh (.ply or .obj)")
    e.add_argument("run_dir")
    e.add_argument("--out", required=True, help="FILE.ply or FILE.obj")
    e.add_argument("--resolution", type=_positive_int, help="grid points per axis (default 256)")
    e.add_argument("--method", choices=["coarse_to_fine", "dense"], default=None)
    e.add_argument("--level", type=float, default=0.0,
                   help="iso level to mesh, in the field's normalised units (default 0)")

    r = sub.add_parser("render", parents=[common], help="render images or a turntable video",
                       description="Render a run directory, or a scene file (.toml / .json, "
                       "see docs/scenes.md) that places several runs and shapes.")
    r.add_argument("run_dir", help="a run directory or a scene file (.toml / .json)")
    r.add_argument("--out", required=True,
                   help="FILE.png, FILE.mp4 or FILE.exr (linear radiance, no tone mapping)")
    r.add_argument("--mode", default=None,
                   help="sdf: shaded, normals, depth, steps, slice; nerf: rgb, depth, normals, "
                   "shaded, opacity; neus: rgb, normals, shaded, depth, opacity, slice "
                   "(default: the task's first)")
    r.add_argument("--frames", type=_positive_int, default=None,
                   help="turntable frames (default: 1 for .png, 48 for .mp4; a .png with more "
                   "than one frame is a contact sheet)")
    r.add_argument("--size", type=_parse_size, default=(512, 512), help="WxH (default 512x512)")
    r.add_argument("--elevation", type=float, default=None,
                   help="camera elevation in degrees (default 20, or the scene file's)")
    r.add_argument("--azimuth", type=float, default=None,
                   help="first camera azimuth in degrees (default 30, or the scene file's)")
    r.add_argument("--radius", type=float, default=None,
                   help="camera distance from the centre (default 3.2; scenes: framing "
                   "their bounds, or the scene file's)")
    r.add_argument("--fov", type=float, default=None,
                   help="vertical field of view in degrees (default 40, or the scene file's)")
    r.add_argument("--fps", type=_positive_int, default=24)
    r.add_argument("--envmap", default=None,
                   help="relight runs: an equirectangular .hdr (or .png/.jpg) environment map; "
                   "the camera stays and the map turns once over the frames")

    v = sub.add_parser("eval", parents=[common], help="quality metrics as JSON")
    v.add_argument("run_dir")
    v.add_argument("--reference", help="reference mesh (default: the training mesh)")
    v.add_argument("--mesh", help="evaluate this exported mesh instead of extracting one")
    v.add_argument("--resolution", type=_positive_int, help="extraction grid (default 256)")
    v.add_argument("--samples", type=_positive_int, default=100_000,
                   help="surface samples per mesh (default 100000)")
    v.add_argument("--generated", type=_positive_int, default=256,
                   help="ddmi runs: samples drawn for MMD/COV (default 256; 3-D at most 64)")
    v.add_argument("--json-out", help="also write the JSON here")

    f = sub.add_parser("fresh", parents=[common],
                       help="FreSh: score frequency hyper-parameters on untrained fields",
                       description="FreSh (Kania et al., ICLR 2025): for each candidate value of "
                       "the encoding's frequency hyper-parameter, compare the spectrum of the "
                       "untrained field with the image's; print value, mean W1 and standard "
                       "error per candidate, then the chosen value. Image presets only.")
    f.add_argument("preset", help="preset name (an image preset, e.g. astronaut-image)")
    f.add_argument("--data", help="the image (default: the preset's)")
    f.add_argument("--encoding", choices=["fourier", "siren", "hashgrid"],
                   help="the field whose hyper-parameter is tuned (default: the preset's)")
    f.add_argument("--inits", type=_positive_int, default=None,
                   help="untrained fields per candidate (default 10)")
    f.add_argument("--size", type=_positive_int, default=None,
                   help="S, spectrum bins compared (default 64)")
    f.add_argument("--json", help="also write the table and both spectra here")

    ev = sub.add_parser("evolve", parents=[common],
                        help="naisr runs: an image strip of one covariate swept over [-1, 1]")
    ev.add_argument("run_dir")
    ev.add_argument("--covariate", required=True, help="the covariate's name or index")
    ev.add_argument("--out", required=True, help="FILE.png")
    ev.add_argument("--steps", type=_positive_int, default=5, help="values in [-1, 1] (5)")
    ev.add_argument("--size", type=_positive_int, default=160, help="pixels per frame (160)")

    sm = sub.add_parser("sample", parents=[common],
                        help="ddmi runs: draw new fields; images at any resolution or meshes")
    sm.add_argument("run_dir")
    sm.add_argument("--n", type=_positive_int, default=16, help="samples (16)")
    sm.add_argument("--seed", type=int, default=0, help="DDIM seed: the same seed gives the "
                    "same samples (0)")
    sm.add_argument("--resolution", type=_parse_resolution, default=None,
                    help="2-D: WxH or N of the written images (default 4× the training "
                    "raster); 3-D: N, the marching-cubes grid (default 128)")
    sm.add_argument("--steps", type=_positive_int, default=None,
                    help="DDIM steps (default: the run's model.ddim_steps)")
    sm.add_argument("--prior", action="store_true",
                    help="decode z ~ N(0, I) instead (the VAE prior; a baseline)")
    sm.add_argument("--out", required=True, help="DIR for sample_NNN.png|.ply and samples.png")

    rc = sub.add_parser("reconstruct", parents=[common],
                        help="naisr runs: fit the codes of unseen shapes (networks frozen)")
    rc.add_argument("run_dir")
    rc.add_argument("--shapes", default="held-out",
                    help="'held-out' (default: the held-out subjects' shapes), 'all', or shape "
                    "indices like 3,7,12")
    rc.add_argument("--steps", type=_positive_int, default=200, help="code steps (200)")
    rc.add_argument("--out", help="DIR: a mesh (3-D, .ply) or picture (2-D, .png) of each "
                    "reconstruction, its code (codes.safetensors) and reconstruct.json")

    tr = sub.add_parser("transfer", parents=[common],
                        help="naisr runs: fit a subject's code on its first visit, predict the "
                        "later visits (or given covariates)")
    tr.add_argument("run_dir")
    tr.add_argument("--subject", required=True, help="the subject's name or index")
    tr.add_argument("--covariates", action="append", default=None,
                    help="target covariates as raw values NAME=V,NAME=V (repeatable; default: "
                    "the subject's later visits, scored against them)")
    tr.add_argument("--out", help="DIR: the predicted shapes (.ply / .png) and transfer.json")

    sub.add_parser("presets", parents=[common], help="list the presets")
    for name in ("view", "viewer"):
        w = sub.add_parser(name, parents=[common], help="the desktop viewer (default command)"
                           if name == "view" else argparse.SUPPRESS,
                           description="Open the viewer on a preset (a fresh field, training "
                           "starts), a saved run directory or a scene file (.toml / .json).")
        _viewer_args(w)
    return p


def _viewer_args(w: argparse.ArgumentParser) -> None:
    w.add_argument("target", nargs="?", default=None,
                   help="preset name, run directory or scene file (.toml / .json; default: "
                   "spot-sdf)")
    w.add_argument("--out", help="run directory for a preset's checkpoints "
                   "(default: outputs/viewer/PRESET)")
    w.add_argument("--no-train", action="store_true", help="do not start training at once")
    w.add_argument("--screenshot", help="save a PNG of the window after --frames frames, exit")
    w.add_argument("--frames", type=_positive_int, default=None,
                   help="frames to show before exiting (default: until the window closes)")
    w.add_argument("--size", type=_parse_size, default=(1280, 800), help="window WxH")
    w.add_argument("--xvfb", action="store_true",
                   help="open the window on a private virtual display (Xvfb), e.g. on a server")


def _cmd_presets(args) -> int:
    from app.presets import DEFAULT_PRESET, PRESETS

    width = max(len(n) for n in PRESETS)
    for name, preset in PRESETS.items():
        cfg = preset.make()
        mark = " (default)" if name == DEFAULT_PRESET else ""
        print(f"{name:<{width}}  [{cfg.task}] {preset.description}{mark}")
    return 0


def _launch_torchrun(nproc: int, argv: list[str]) -> int:
    """``fields-app train … --nproc N``: the same command under ``torchrun`` on this machine."""
    import os
    import subprocess

    rest, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            rest.append(a)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={nproc}", "-m", "app.cli", *rest]
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    print(f"fields-app: launching {nproc} processes: {' '.join(cmd[1:])}", file=sys.stderr)
    return subprocess.call(cmd, env=env)


def _cmd_train(args, extra: list[str], argv: list[str] | None = None) -> int:
    import os

    import tyro

    if args.nproc and args.nproc > 1 and "WORLD_SIZE" not in os.environ:
        return _launch_torchrun(args.nproc, list(argv or []))
    main_rank = os.environ.get("RANK", "0") == "0"

    from app.presets import DEFAULT_PRESET, get_preset
    from app.run import train

    preset = args.preset or DEFAULT_PRESET
    cfg = get_preset(preset)
    if args.help_config or extra:
        cfg = tyro.cli(type(cfg), default=cfg, args=["--help"] if args.help_config else extra,
                       prog=f"fields-app train {preset}")
    if args.data is not None:
        if not hasattr(cfg, "data") or not hasattr(cfg.data, "path"):
            raise SystemExit(f"fields-app: error: preset {preset!r} takes no --data")
        cfg.data.path = args.data
    if args.quantize is not None:
        if not hasattr(getattr(cfg, "model", None), "quantize"):
            raise ValueError(f"--quantize: the {cfg.task} task has no coordinate quantisation "
                             "(neus presets have)")
        cfg.model.quantize = args.quantize
    if args.encoding is not None:
        model = getattr(cfg, "model", None)
        if isinstance(getattr(model, "encoding", None), str):  # image: all four
            model.encoding = args.encoding
        elif hasattr(model, "encoding_type") and args.encoding in ("hashgrid", "rbf"):
            model.encoding_type = args.encoding  # sdf, nerf: hashgrid or rbf
        else:
            raise ValueError(f"--encoding {args.encoding}: the {cfg.task} task takes "
                             + ("hashgrid or rbf" if hasattr(model, "encoding_type") else
                                "no --encoding"))
    if args.fresh:
        if not hasattr(getattr(cfg, "model", None), "fresh"):
            raise ValueError(f"--fresh: the {cfg.task} task has no FreSh search (image presets "
                             "have)")
        cfg.model.fresh = True
    if args.steps is not None:
        cfg.trainer.steps = args.steps
    if args.device is not None:
        cfg.device = args.device
    out = Path(args.out or f"outputs/{preset}")
    task, result = train(cfg, out, restart=args.restart, progress=not args.no_progress)
    if not main_rank:
        return 130 if result.interrupted else 0
    rate = result.step / result.seconds if result.seconds > 0 else float("nan")
    print(json.dumps({
        "run_dir": str(out), "preset": preset, "steps": result.step,
        "train_seconds": round(result.seconds, 1), "steps_per_s": round(rate, 2),
        "last_loss": result.last_loss, "interrupted": result.interrupted,
        "resumed_from": result.resumed_from,
    }))
    if result.interrupted:
        return 130
    from app.tasks.base import Task

    hints = []
    if type(task).export is not Task.export:  # the task exports meshes
        hints.append(f"fields-app export {out} --out {out}/mesh.ply")
    if task.kind == "image":
        hints += [f"fields-app render {out} --out {out}/fit.png --mode rgb|error|centres",
                  f"fields-app eval {out}"]
    else:
        hints.append(f"fields-app render {out} --out {out}/turntable.mp4")
    print("next: " + "   |   ".join(hints), file=sys.stderr)
    return 0


def _cmd_fresh(args) -> int:
    from app.config import save_json_atomic
    from app.presets import get_preset
    from app.run import resolve_device
    from app.tasks.image import ImageExperiment, image_fresh_search, read_image

    cfg = get_preset(args.preset)
    if not isinstance(cfg, ImageExperiment):
        raise ValueError(f"fresh: preset {args.preset!r} is a {cfg.task!r} task; FreSh "
                         "supports image presets only so far (e.g. astronaut-image)")
    if args.data is not None:
        cfg.data.path = args.data
    if args.encoding is not None:
        cfg.model.encoding = args.encoding
    image, path = read_image(cfg.data)
    device = resolve_device(args.device or cfg.device)
    h, w = image.shape[:2]
    inits = args.inits or cfg.model.fresh_inits
    size = args.size or cfg.model.fresh_size
    print(f"FreSh on {path} ({h}×{w}), {cfg.model.encoding}: S = {size}, {inits} untrained "
          "fields per candidate; columns: value, mean W1, standard error", file=sys.stderr)
    result = image_fresh_search(cfg, image, device=device, inits=inits, size=size,
                                log=lambda line: print(f"fresh: {line}", file=sys.stderr,
                                                       flush=True))
    print(f"fresh: {len(result.candidates)} candidates × {inits} fields in "
          f"{result.seconds:.1f} s", file=sys.stderr)
    for value, mean, se in result.rows():
        print(f"{value:>8g}  {mean:.4f}  {se:.4f}")
    if args.json:
        save_json_atomic(Path(args.json), {"preset": args.preset, "image": str(path),
                                           "encoding": cfg.model.encoding, **result.to_dict()})
    print(f"chosen {result.hyperparameter} = {result.chosen:g}")
    return 0


def _cmd_export(args) -> int:
    from app.run import load_run

    run = load_run(args.run_dir, device=args.device or "cpu")
    info = run.export(args.out, resolution=args.resolution, method=args.method, progress=True,
                      level=args.level)
    print(json.dumps(info))
    return 0


def _cmd_render(args) -> int:
    import numpy as np

    from app.imaging import contact_sheet, save_image, save_video
    from app.run import load_run
    from app.scene_file import SCENE_SUFFIXES
    from renderer.cameras import Camera

    out = Path(args.out)
    suffix = out.suffix.lower()
    if suffix not in (".png", ".mp4", ".jpg", ".jpeg", ".exr"):
        raise SystemExit(f"fields-app: error: {out}: --out must end in .png, .jpg, .mp4 or "
                         ".exr")
    frames = args.frames or (48 if suffix == ".mp4" else 1)
    if suffix == ".exr" and frames != 1:
        raise SystemExit(f"fields-app: error: {out}: an .exr holds one frame (--frames 1)")
    w, h = args.size
    target = Path(args.run_dir)
    linear = None
    if target.suffix.lower() in SCENE_SUFFIXES and not target.is_dir():
        if args.envmap:
            raise SystemExit("fields-app: error: --envmap: scene files set their lights in the "
                             "file ([[lights]] type = \"environment\")")
        render, cams = _scene_frames(args, target, frames, w, h)
    else:
        run = load_run(args.run_dir, device=args.device or "cpu")
        task = run.task
        if args.envmap and task.kind != "relight":
            raise SystemExit(f"fields-app: error: --envmap: only relight runs take an "
                             f"environment map (this is a {task.kind} run)")
        args.mode = args.mode or ("env" if args.envmap else task.render_modes[0])
        if args.mode not in task.render_modes:
            raise SystemExit(f"fields-app: error: --mode {args.mode!r}: the {task.kind} "
                             f"task renders {', '.join(task.render_modes)}")
        if args.envmap:  # a fixed camera; the map turns once over the frames
            cams = Camera.turntable(1, _or(args.elevation, 15.0), _or(args.radius, 3.0),
                                    width=w, height=h, fov_y_deg=_or(args.fov, 40.0),
                                    start_azimuth_deg=_or(args.azimuth, 30.0)) * frames
            render, linear = _relight_frames(task, args.envmap, frames)
        else:
            cams = Camera.turntable(frames, _or(args.elevation, 20.0), _or(args.radius, 3.2),
                                    width=w, height=h, fov_y_deg=_or(args.fov, 40.0),
                                    start_azimuth_deg=_or(args.azimuth, 30.0))
            render = run.render
            if hasattr(task, "render_linear"):
                linear = lambda cam, mode: task.render_linear(cam, mode)  # noqa: E731
    if suffix == ".exr":
        import torch

        from renderer.exr import write_exr
        from renderer.shading import srgb_to_linear

        if linear is not None:
            radiance = linear(cams[0], args.mode)
        else:  # a display image: undo its sRGB encoding (no tone map was applied)
            radiance = srgb_to_linear(torch.as_tensor(render(cams[0], args.mode))).numpy()
        write_exr(out, np.asarray(radiance, dtype=np.float32))
        print(json.dumps({"written": [str(out)], "frames": 1, "size": [w, h],
                          "mode": args.mode, "linear": True,
                          "max_radiance": round(float(np.max(radiance)), 6)}))
        return 0
    from tqdm import tqdm

    images = [render(c, args.mode) if not args.envmap else render(c, args.mode, i)
              for i, c in enumerate(tqdm(cams, desc=f"render {args.mode}", disable=frames == 1,
                                         file=sys.stderr,
                                         mininterval=0.2 if sys.stderr.isatty() else 10.0))]
    if suffix == ".mp4":
        save_video(out, images, fps=args.fps)
        frames_dir = out.with_name(out.stem + "_frames")
        for i, img in enumerate(images):
            save_image(frames_dir / f"{i:03d}.png", img)
        save_image(out.with_suffix(".png"), contact_sheet(images))
        written = [str(out), str(frames_dir), str(out.with_suffix(".png"))]
    else:
        save_image(out, images[0] if frames == 1 else contact_sheet(images))
        written = [str(out)]
    print(json.dumps({"written": written, "frames": frames, "size": [w, h], "mode": args.mode,
                      "mean_intensity": round(float(np.mean(images)), 4)}))
    return 0


def _relight_frames(task, envmap_path: str, frames: int):
    """``(render(camera, mode, i), linear(camera, mode))`` of a relight run under an
    environment map rotated by ``360°·i/frames`` about +y at frame ``i``."""
    from renderer.envmap import EnvironmentMap

    env = EnvironmentMap.from_file(envmap_path)

    def render(camera, mode, i=0):
        return task.render(camera, mode, env_rotation=360.0 * i / frames, envmap=env)

    def linear(camera, mode):
        return task.render_linear(camera, mode, env_rotation=0.0, envmap=env)

    return render, linear


def _or(value, default):
    return default if value is None else value


def _scene_frames(args, path: Path, frames: int, w: int, h: int):
    """``(render(camera, mode) -> image, cameras)`` for a scene file; command-line camera
    options override the file's ``[camera]`` table."""
    from app.scene_file import load_scene

    scene, cam = load_scene(path, device=args.device or "cpu")
    modes = ("shaded", "normals", "depth", "objects")
    args.mode = args.mode or "shaded"
    if args.mode not in modes:
        raise SystemExit(f"fields-app: error: --mode {args.mode!r}: scenes render "
                         f"{', '.join(modes)}")
    cams = scene.turntable(frames, radius=_or(args.radius, cam.get("radius")),
                           elevation=_or(args.elevation, cam.get("elevation", 20.0)),
                           azimuth=_or(args.azimuth, cam.get("azimuth", 30.0)),
                           width=w, height=h, fov_y_deg=_or(args.fov, cam.get("fov", 40.0)),
                           target=cam.get("target"))

    def render(camera, mode):
        return scene.render(camera, mode).array

    return render, cams


def _cmd_evolve(args) -> int:
    from app.imaging import save_image
    from app.run import load_run

    run = load_run(args.run_dir, device=args.device or "cpu")
    task = run.task
    if task.kind != "naisr":
        raise SystemExit(f"fields-app: error: evolve: {args.run_dir} is a {task.kind} run; "
                         "covariate sweeps need a naisr run")
    names = task.covariate_names()
    key = args.covariate
    index = int(key) if key.isdigit() else (names.index(key) if key in names else -1)
    if not 0 <= index < len(names):
        raise SystemExit(f"fields-app: error: --covariate {key!r}: choose one of "
                         f"{', '.join(names)} (or 0…{len(names) - 1})")
    strip = task.evolution_strip(index, steps=args.steps, size=args.size)
    save_image(Path(args.out), strip)
    print(json.dumps({"written": [args.out], "covariate": names[index], "steps": args.steps}))
    return 0


def _cmd_sample(args) -> int:
    import numpy as np

    from app.imaging import contact_sheet, save_image
    from app.run import load_run

    run = load_run(args.run_dir, device=args.device or "cpu")
    task = run.task
    if task.kind != "ddmi":
        raise SystemExit(f"fields-app: error: sample: {args.run_dir} is a {task.kind} run; "
                         "sampling needs a ddmi run")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    latents = task.sample_latents(args.n, seed=args.seed, steps=args.steps, prior=args.prior)
    fields_ = task.fields_from_latents(latents)
    written, facts = [], []
    tiles = []
    if task.dim == 2:
        base = 4 * task.config.data.resolution
        w, h = args.resolution or (base, base)
        for k, f in enumerate(fields_):
            path = save_image(out / f"sample_{k:03d}.png", task.image_of(f, h, w).numpy())
            written.append(str(path))
            tiles.append(task.image_of(f, 96, 96).numpy())
        facts.append({"size": [w, h]})
    else:
        from renderer.meshing import export_mesh

        res = (args.resolution or (128, 128))[0]
        cam = task.default_camera(160, 160)
        for k, f in enumerate(fields_):
            mesh = task.mesh_of(f, res)
            path = out / f"sample_{k:03d}.ply"
            if len(mesh.faces):
                export_mesh(mesh, path)
                written.append(str(path))
            facts.append({"sample": k, "faces": len(mesh.faces),
                          "watertight": bool(mesh.is_watertight) if len(mesh.faces) else False})
            tiles.append(task.render_mesh(mesh, cam))
    framed = [np.pad(t, ((1, 1), (1, 1), (0, 0)), constant_values=1.0) for t in tiles]
    save_image(out / "samples.png", contact_sheet(framed, columns=min(len(tiles), 8)))
    written.append(str(out / "samples.png"))
    print(json.dumps({"run_dir": str(args.run_dir), "n": args.n, "seed": args.seed,
                      "prior": args.prior, "details": facts, "written": written}, indent=2))
    return 0


def _naisr_run(args, command: str):
    from app.run import load_run

    run = load_run(args.run_dir, device=args.device or "cpu")
    if run.task.kind != "naisr":
        raise SystemExit(f"fields-app: error: {command}: {args.run_dir} is a {run.task.kind} "
                         "run; this needs a naisr run")
    run.task.setup_data()
    return run.task


def _cmd_reconstruct(args) -> int:
    import torch
    from safetensors.torch import save_file

    task = _naisr_run(args, "reconstruct")
    pop = task.data
    if args.shapes == "held-out":
        shapes = pop.test_index
    elif args.shapes == "all":
        shapes = torch.arange(pop.covariates.shape[0])
    else:
        try:
            shapes = torch.tensor([int(v) for v in args.shapes.split(",")])
        except ValueError:
            raise SystemExit(f"fields-app: error: --shapes {args.shapes!r}: give 'held-out', "
                             "'all' or indices like 3,7,12") from None
        bad = [int(v) for v in shapes if not 0 <= int(v) < pop.covariates.shape[0]]
        if bad:
            raise SystemExit(f"fields-app: error: --shapes: no shape {bad[0]} (the population "
                             f"has {pop.covariates.shape[0]}: 0…{pop.covariates.shape[0] - 1})")
    if len(shapes) == 0:
        raise SystemExit("fields-app: error: reconstruct: no shapes to reconstruct (this "
                         "population holds out no subjects; use --shapes all or indices)")
    result = task.reconstruct(shapes, steps=args.steps)
    rows, written = result["shapes"], []
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        ext = ".png" if pop.dim == 2 else ".ply"
        for k, row in enumerate(rows):
            path = out / f"shape_{row['shape']:04d}{ext}"
            task.write_shape(path, pop.covariates[row["shape"]], result["codes"][k])
            written.append(str(path))
        codes_path = out / "codes.safetensors"
        save_file({"codes": result["codes"].cpu().contiguous(),
                   "shapes": shapes.long().contiguous()}, str(codes_path))
        written.append(str(codes_path))
    summary = {key: float(sum(r[key] for r in rows) / len(rows))
               for key in ("surface_error_z0", "surface_error_fitted", "chamfer_z0",
                           "chamfer_fitted")}
    report = {"run_dir": str(args.run_dir), "steps": args.steps, "mean": summary,
              "shapes": rows, "written": written}
    if args.out:
        from app.config import save_json_atomic

        save_json_atomic(Path(args.out) / "reconstruct.json", report)
    print(json.dumps(report, indent=2))
    return 0


def _parse_covariates(text: str, names: list[str]) -> list[float]:
    values: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, eq, value = part.partition("=")
        if not eq or name.strip() not in names:
            raise SystemExit(f"fields-app: error: --covariates {text!r}: expected NAME=VALUE "
                             f"pairs with NAME in {', '.join(names)}")
        try:
            values[name.strip()] = float(value)
        except ValueError:
            raise SystemExit(f"fields-app: error: --covariates {text!r}: {value!r} is not a "
                             "number") from None
    missing = [n for n in names if n not in values]
    if missing:
        raise SystemExit(f"fields-app: error: --covariates {text!r}: missing "
                         f"{', '.join(missing)} (give every covariate)")
    return [values[n] for n in names]


def _cmd_transfer(args) -> int:
    import torch

    task = _naisr_run(args, "transfer")
    pop = task.data
    names = pop.subject_names
    key = args.subject
    subject = names.index(key) if key in names else (int(key) if key.isdigit() else -1)
    if not 0 <= subject < len(names):
        shown = ", ".join(names[:8]) + (" …" if len(names) > 8 else "")
        raise SystemExit(f"fields-app: error: --subject {key!r}: no such subject ({shown})")
    targets = None
    if args.covariates:
        raw = torch.tensor([_parse_covariates(t, list(pop.covariate_names))
                            for t in args.covariates])
        targets = pop.scale(raw)
        outside = sorted({pop.covariate_names[j] for j in
                          (targets.abs() > 1).nonzero()[:, 1].tolist()})
        if outside:
            print(f"fields-app: warning: {', '.join(outside)} outside the training range "
                  "(scaled beyond [-1, 1]); the atlas extrapolates there", file=sys.stderr)
    result = task.transfer(subject, targets)
    report = {k: v for k, v in result.items() if k not in ("code", "predictions")}
    written = []
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        ext = ".png" if pop.dim == 2 else ".ply"
        if targets is None:
            rows = (pop.subject == subject).nonzero().squeeze(1)
            rows = rows[torch.argsort(pop.visit[rows])][1:]
            covs = [pop.covariates[r] for r in rows.tolist()]
            tags = [f"visit{int(pop.visit[r])}" for r in rows.tolist()]
        else:
            covs, tags = list(targets), [f"target{k}" for k in range(len(targets))]
        for c, tag in zip(covs, tags):
            for label, z in (("transfer", result["code"]), ("covariates_only", None)):
                path = out / f"{result['subject']}_{tag}_{label}{ext}"
                task.write_shape(path, c, z)
                written.append(str(path))
        from app.config import save_json_atomic

        save_json_atomic(out / "transfer.json", report)
    if targets is not None:
        report["targets"] = [p["covariates"] for p in result["predictions"]]
    report["written"] = written
    print(json.dumps(report, indent=2))
    return 0


def _cmd_eval(args) -> int:
    from app.config import save_json_atomic
    from app.run import load_run

    run = load_run(args.run_dir, device=args.device or "cpu")
    metrics = run.evaluate(reference=args.reference, mesh=args.mesh, resolution=args.resolution,
                           n_samples=args.samples, generated=args.generated, progress=True)
    metrics = {"run_dir": str(args.run_dir), "step": run.step, **metrics}
    text = json.dumps(metrics, indent=2)
    print(text)
    if args.json_out:
        save_json_atomic(Path(args.json_out), metrics)
    return 0


def _cmd_viewer(args) -> int:
    import contextlib

    from app.presets import DEFAULT_PRESET, PRESETS
    from app.scene_file import SCENE_SUFFIXES
    from app.viewer.display import NO_DISPLAY_HELP, display_problem, virtual_display

    target = getattr(args, "target", None) or DEFAULT_PRESET
    is_scene = Path(target).suffix.lower() in SCENE_SUFFIXES and Path(target).is_file()
    is_run = target not in PRESETS and not is_scene
    if is_run and not Path(target, "config.json").is_file():
        raise SystemExit(f"fields-app: error: {target!r} is neither a preset "
                         f"({', '.join(PRESETS)}), a run directory (no config.json) nor a "
                         f"scene file ({' / '.join(SCENE_SUFFIXES)})")
    with contextlib.ExitStack() as stack:
        if getattr(args, "xvfb", False):
            try:
                stack.enter_context(virtual_display(*getattr(args, "size", (1280, 800))))
            except (FileNotFoundError, RuntimeError) as exc:
                print(f"fields-app: error: --xvfb: {exc}", file=sys.stderr)
                return 2
        problem = display_problem()
        if problem is not None:
            print(f"fields-app: cannot open the viewer: {problem}.\n{NO_DISPLAY_HELP}",
                  file=sys.stderr)
            return 3
        from app.viewer import ViewerController, run_viewer

        device = args.device or "cpu"
        if is_scene:
            ctl = ViewerController(scene=target, device=device)
        elif is_run:
            ctl = ViewerController(run_dir=target, device=device)
        else:
            ctl = ViewerController(target, out=getattr(args, "out", None), device=device)
        ctl.start_engine()  # data loading and training happen beside the window, never before it
        if not is_run and not is_scene and not getattr(args, "no_train", False):
            ctl.start()
        report = run_viewer(ctl, frames=getattr(args, "frames", None),
                            screenshot=getattr(args, "screenshot", None),
                            size=getattr(args, "size", (1280, 800)))
    if getattr(args, "screenshot", None):
        print(json.dumps(report))
    return 0


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"fields-app: warning: {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``fields-app`` console script; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "train":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = _show_warning
        return _dispatch(parser, args, argv, extra)


def _dispatch(parser, args, argv, extra) -> int:
    try:
        if args.command is None:
            if not argv:
                return _cmd_viewer(args)
            parser.print_help()
            return 2
        if args.command == "train":
            return _cmd_train(args, extra, argv)
        return {"export": _cmd_export, "render": _cmd_render, "eval": _cmd_eval,
                "evolve": _cmd_evolve, "reconstruct": _cmd_reconstruct, "sample": _cmd_sample,
                "transfer": _cmd_transfer,
                "fresh": _cmd_fresh, "presets": _cmd_presets, "viewer": _cmd_viewer,
                "view": _cmd_viewer}[args.command](args)
    except KeyboardInterrupt:
        print("fields-app: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if getattr(args, "debug", False):
            traceback.print_exc()
        from app.errors import FieldsAppError
        from datasets.errors import DataError

        if isinstance(exc, (FieldsAppError, DataError)):
            print(f"fields-app: error: {exc}", file=sys.stderr)
            return 2
        if isinstance(exc, OSError) and exc.filename:
            print(f"fields-app: error: {exc.filename}: {exc.strerror or exc}", file=sys.stderr)
            return 2
        from renderer.meshing import MeshMemoryError

        if isinstance(exc, (ValueError, MeshMemoryError)):
            print(f"fields-app: error: {exc}", file=sys.stderr)
            return 2
        hint = "" if getattr(args, "debug", False) else " (run with --debug for the traceback)"
        print(f"fields-app: error: {type(exc).__name__}: {exc}{hint}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
