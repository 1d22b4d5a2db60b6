"""Trained fields in one scene: a neural SDF of spot and a CSP field of an open cloth.

    python examples/02_trained_fields.py --out outputs/examples

Trains both (or reuses ``--out``'s runs when they exist), then loads them with ``load_run`` and
places them like any shape. The SDF and the open surface are composed per ray (nearest hit);
the cloth stays open — rays through its hem see the floor behind it.
"""

import argparse
from pathlib import Path

from app import load_run, train
from app.presets import get_preset
from renderer import Camera
from renderer.scene import Scene, box

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("--out", default="outputs/examples", help="where runs and files go")
ap.add_argument("--quick", action="store_true", help="tiny fits and images (for tests)")
args = ap.parse_args()
out = Path(args.out)


def fitted(preset: str, name: str) -> Path:
    """Train ``preset`` into ``out/name`` unless a run is already there."""
    run_dir = out / name
    if (run_dir / "checkpoints" / "latest").exists():
        return run_dir
    cfg = get_preset(preset)
    if args.quick:  # seconds instead of minutes
        cfg.data.n_surface, cfg.data.n_near, cfg.data.n_uniform = 4000, 8000, 2000
        cfg.model.encoding = type(cfg.model.encoding)(num_levels=6, log2_hashmap_size=12,
                                                      base_resolution=8, max_resolution=64)
        cfg.trainer.steps = 150
    train(cfg, run_dir, progress=not args.quick)
    return run_dir


spot = load_run(fitted("spot-sdf", "spot-sdf"))       # spot, normalised to [-1, 1]
cloth = load_run(fitted("tshirt-csp", "cloth-csp"))   # the shipped draped cloth (open)

scene = Scene(background=(0.95, 0.95, 1.0))
scene.add(spot, translate=(0.7, 0.0, 0.0), scale=0.6, rotate=(0.0, -30.0, 0.0), material="clay")
scene.add(cloth, translate=(-0.7, 0.05, 0.0), scale=0.6, material="blue")
scene.add(box((3.0, 0.05, 2.0)), translate=(0.0, -0.62, 0.0), material="white")
scene.lights.sun(direction=(0.5, 1.0, 0.8))

size = 96 if args.quick else 512
camera = Camera.orbit(20.0, 20.0, 3.2, width=size, height=size * 5 // 8, fov_y_deg=40.0)
print("wrote", scene.render(camera).save(out / "02_trained_fields.png"))
# A turntable: cameras around the scene's centre, framing its bounds.
for i, cam in enumerate(scene.turntable(3 if args.quick else 12, elevation=25.0,
                                        width=size // 2, height=size // 2)):
    scene.render(cam).save(out / "02_turntable" / f"{i:03d}.png")
print("wrote", out / "02_turntable")
mesh = scene.export_mesh(out / "02_trained_fields.ply", resolution=64 if args.quick else 256)
print(f"mesh: {len(mesh.vertices)} vertices")
