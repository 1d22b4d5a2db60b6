"""B12 — the viewer while ``spot-sdf`` trains: UI frame time and training speed.

Five runs of the same preset, each in its own subprocess (the viewer ones on a private Xvfb
display; torch's default threads, 2 on the benchmark machine):

- headless: ``Trainer.train_step`` in a loop, no window — the reference steps/s;
- ours: the real window (``app.viewer.window.ViewerWindow``) with the engine thread training and
  rendering beside the UI thread (10 fps idle, 60 fps on input); once with the camera resting
  and once orbiting (3 px of drag every UI frame, as a user turning the model);
- peer, torch-ngp's GUI loop (``nerf/gui.py``): one thread does everything each frame — 16
  training steps, then a render at a dynamic resolution (downscale in [1/4, 1] chosen so that the
  render takes ≤ 200 ms, its rule), then the UI frame — in the same window, at the same view size;
  resting and orbiting too.

Measured after the data is loaded and the first frame is shown: UI frame time (the UI thread's
work per frame) and frame interval p50/p95 (ms),
training steps/s and its ratio to headless, field-render ms per frame and its resolution. The
field renders at an adaptive resolution: ``ms/frame`` is for the frames actually rendered.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np

from benchmarks.timing import Row

PRESET = "spot-sdf"
SECONDS = 30.0
QUICK_SECONDS = 10.0
WINDOW = (944, 532)  # a 512×512 render view beside the 400-px panel; render scale ½ → 256²
PEER = "torch-ngp GUI loop: 16 train steps + ≤200 ms dynamic-res render per UI frame, one thread"


def _headless(seconds: float) -> dict:
    import torch

    from app.presets import get_preset
    from app.run import build_task
    from app.trainer import Trainer

    torch.manual_seed(0)
    cfg = get_preset(PRESET)
    task = build_task(cfg)
    task.setup_data()
    trainer = Trainer(task, cfg.trainer, "/nonexistent-unused", progress=False, log=lambda m: None)
    for _ in range(10):
        trainer.train_step()
    t0, s0 = time.perf_counter(), trainer.step
    while time.perf_counter() - t0 < seconds:
        trainer.train_step()
    return {"steps_per_s": (trainer.step - s0) / (time.perf_counter() - t0)}


def _viewer(seconds: float, orbit: bool, burst: bool) -> dict:
    import torch

    from app.viewer.controller import LEVELS, ViewerController
    from app.viewer.display import virtual_display
    from app.viewer.window import ViewerWindow
    if os.environ.get("B12_THREADS"):
        torch.set_num_threads(int(os.environ["B12_THREADS"]))
    with virtual_display(*WINDOW):
        ctl = ViewerController(PRESET, out="/tmp/fields-app-b12")
        window = ViewerWindow(ctl, *WINDOW)
        state: dict = {"t0": None}
        renders: list[tuple[float, int]] = []
        last_version = [-1]
        if burst:
            ctl._ensure_trainer()  # torch-ngp loads its data before the window too
            ctl.training = True
        else:
            ctl.start_engine()
            ctl.start()

        def on_frame(i: int) -> None:
            now = time.perf_counter()
            if burst:  # torch-ngp: train_steps=16 per frame, then render ≤ 200 ms
                for _ in range(16):
                    ctl._train_step()
                w, h = ctl.render_size()
                d = 4
                for cand in (1, 2, 4):
                    predicted = ctl.predicted_ms((w / cand) * (h / cand))
                    if predicted is not None and predicted <= 200.0:
                        d = cand
                        break
                ctl.render_frame(d)
            if orbit:
                ctl.orbit(3.0, 0.0)
                window._on_input()  # a dragging user keeps the UI at full rate
            f = ctl.frame
            if state["t0"] is None:
                if ctl.trainer is not None and ctl.training and f is not None:
                    state.update(t0=now, s0=ctl.step, i0=i)
                return
            if f is not None and f.version != last_version[0]:
                renders.append((f.ms, f.image.shape[0] * f.image.shape[1]))
                last_version[0] = f.version
            if now - state["t0"] >= seconds and "t1" not in state:
                state.update(t1=now, s1=ctl.step, i1=i)

        def on_frame_and_stop(i: int) -> None:
            on_frame(i)
            if "t1" in state:
                import dearpygui.dearpygui as dpg

                dpg.stop_dearpygui()

        window.run(frames=int((seconds + 120.0) * 60), on_frame=on_frame_and_stop,
                   engine=not burst)
    i0, i1 = state["i0"], state["i1"]
    ft = np.array(window.frame_times[i0:i1]) * 1e3
    gaps = np.array(window.frame_intervals[i0:i1]) * 1e3
    ms = np.array([r[0] for r in renders]) if renders else np.array([np.nan])
    px = np.array([r[1] for r in renders]) if renders else np.array([0])
    return {
        "steps_per_s": (state["s1"] - state["s0"]) / (state["t1"] - state["t0"]),
        "ui_frame_ms_p50": float(np.percentile(ft, 50)), "ui_frame_ms_p95":
        float(np.percentile(ft, 95)), "ui_frames": int(len(ft)),
        "ui_interval_ms_p50": float(np.percentile(gaps, 50)),
        "ui_interval_ms_p95": float(np.percentile(gaps, 95)),
        "render_ms_p50": float(np.nanpercentile(ms, 50)),
        "render_ms_p95": float(np.nanpercentile(ms, 95)), "renders": len(renders),
        "render_pixels_median": int(np.median(px)), "view_size": list(ctl.view_size),
        "levels": list(LEVELS),
    }


def _subprocess(kind: str, seconds: float) -> dict:
    env = dict(os.environ)
    out = subprocess.run([sys.executable, "-m", "benchmarks.rows.b12_viewer", kind, str(seconds)],
                         capture_output=True, text=True, env=env, timeout=seconds * 6 + 300)
    for line in out.stdout.splitlines():
        if line.startswith("@@B12@@"):
            return json.loads(line[7:])
    raise RuntimeError(f"B12 {kind} failed: {out.stderr[-2000:]}")


def run(quick: bool = False, device: str = "cpu") -> list[Row]:
    from app.viewer.display import virtual_display  # noqa: F401  (Xvfb needed: fail early)

    seconds = QUICK_SECONDS if quick else SECONDS
    head = _subprocess("headless", seconds)
    rest = _subprocess("viewer", seconds)
    orbit = _subprocess("viewer-orbit", seconds)
    peer = _subprocess("burst", seconds)
    peer_orbit = _subprocess("burst-orbit", seconds)
    base = head["steps_per_s"]
    rows = []
    for label, ours, theirs in (("camera resting", rest, peer), ("orbiting", orbit, peer_orbit)):
        note = (f"{label}; headless {base:.1f} steps/s; ours {ours['steps_per_s']:.1f} steps/s "
                f"({ours['steps_per_s'] / base:.0%}), peer {theirs['steps_per_s']:.1f} "
                f"({theirs['steps_per_s'] / base:.0%}); render ours p50 "
                f"{ours['render_ms_p50']:.0f} ms at {ours['render_pixels_median']} px, peer "
                f"{theirs['render_ms_p50']:.0f} ms at {theirs['render_pixels_median']} px")
        rows.append(Row(benchmark=f"B12 viewer, spot-sdf training, {label}: UI frame p95",
                        unit="ms", ours=ours["ui_frame_ms_p95"], peer=theirs["ui_frame_ms_p95"],
                        peer_name=PEER, higher_is_better=False, ceiling=None,
                        valid=ours["ui_frame_ms_p95"] <= 100.0, notes=note,
                        extra={"headless": head, "ours": ours, "peer": theirs}))
        rows.append(Row(benchmark=f"B12 viewer, spot-sdf training, {label}: steps/s vs headless",
                        unit="fraction", ours=ours["steps_per_s"] / base,
                        peer=theirs["steps_per_s"] / base, peer_name=PEER,
                        notes=f"headless {base:.1f} steps/s"))
    return rows


if __name__ == "__main__":
    kind, secs = sys.argv[1], float(sys.argv[2])
    if kind == "headless":
        result = _headless(secs)
    else:
        result = _viewer(secs, orbit=kind.endswith("orbit"), burst=kind.startswith("burst"))
    print("@@B12@@" + json.dumps(result))
