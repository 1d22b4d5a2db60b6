"""The same scene as a file: write a TOML scene that references runs, render it.

    python examples/04_scene_file.py --out outputs/examples
    fields-app render outputs/examples/04_scene.toml --out turntable.mp4   # the same, as a video

Run ``02_trained_fields.py`` first (it trains the runs this file points to); paths in a scene
file are relative to the file.
"""

import argparse
import subprocess
import sys
from pathlib import Path

from app.scene_file import load_scene
from renderer import Camera

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("--out", default="outputs/examples", help="where 02's runs are; files go here")
ap.add_argument("--quick", action="store_true", help="small images (for tests)")
args = ap.parse_args()
out = Path(args.out)
if not (out / "spot-sdf" / "config.json").is_file():
    sys.exit(f"{out / 'spot-sdf'}: no run there; run examples/02_trained_fields.py first")

scene_file = out / "04_scene.toml"
scene_file.write_text("""\
background = "white"

[camera]
elevation = 25.0
azimuth = 30.0

[[objects]]
run = "spot-sdf"               # relative to this file
translate = [0.0, 0.0, 0.0]
scale = 0.8
material = "clay"

[[objects]]
shape = "torus"
major = 0.9
minor = 0.05
rotate = [90.0, 0.0, 0.0]      # a ring around spot
material = "gold"

[[lights]]
type = "sun"
direction = [1.0, 1.0, 1.0]
""")
print("wrote", scene_file)

# From Python ...
scene, camera_defaults = load_scene(scene_file)
size = 96 if args.quick else 512
cam = Camera.orbit(camera_defaults["azimuth"], camera_defaults["elevation"], 3.0, width=size,
                   height=size)
print("wrote", scene.render(cam).save(out / "04_scene.png"))
# ... and from the command line (the contact sheet of a 4-frame turntable).
cmd = [sys.executable, "-m", "app.cli", "render", str(scene_file), "--out",
       str(out / "04_scene_turntable.png"), "--frames", "4", "--size", f"{size}x{size}"]
subprocess.run(cmd, check=True)
