"""Analytic shapes, three kinds of light, one picture and one mesh.

    python examples/01_shapes.py --out outputs/examples

A scene is objects (here closed-form SDFs) placed with a translation, a rotation (Euler angles
in degrees) and a scale, each with a material; lights; a background. ``render`` takes any
camera; ``export_mesh`` writes every object in place.
"""

import argparse
from pathlib import Path

from renderer import Camera
from renderer.scene import Scene, box, sphere, torus

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("--out", default="outputs/examples", help="where the files go")
ap.add_argument("--quick", action="store_true", help="small images (for tests)")
args = ap.parse_args()
out = Path(args.out)
size = 96 if args.quick else 512

scene = Scene(background="white")
scene.add(box((3.0, 0.1, 3.0)), translate=(0.0, -0.55, 0.0), material="white")  # a floor
scene.add(sphere(0.45), translate=(-0.6, 0.0, 0.0), material="clay")
scene.add(torus(0.4, 0.12), translate=(0.6, -0.05, 0.0), rotate=(70.0, 0.0, 20.0),
          material="gold")
scene.add(box(0.35), translate=(0.0, -0.32, 0.7), rotate=(0.0, 30.0, 0.0), material="blue")

scene.lights.sun(direction=(1.0, 2.0, 1.5), intensity=0.9)             # a key light
scene.lights.point(position=(-1.5, 1.0, 1.5), intensity=0.6)           # a warm fill, 1/r²
scene.lights.ambient = 0.1

camera = Camera.orbit(azimuth_deg=25.0, elevation_deg=25.0, radius=3.4, width=size,
                      height=size * 3 // 4, fov_y_deg=40.0)
image = scene.render(camera, mode="shaded")
print("wrote", image.save(out / "01_shapes.png"))
print("wrote", scene.render(camera, mode="objects").save(out / "01_shapes_objects.png"))
mesh = scene.export_mesh(out / "01_shapes.ply", resolution=64 if args.quick else 256)
print(f"mesh: {len(mesh.vertices)} vertices, {len(mesh.faces)} faces")
