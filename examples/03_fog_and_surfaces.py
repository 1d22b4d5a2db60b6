"""A radiance field beside surfaces: depth-correct mixing of volume and sphere tracing.

    python examples/03_fog_and_surfaces.py --out outputs/examples

Any ``rgb_sigma(x, d)`` function is a radiance source (a trained NeRF run is one too: add it
like any run). Here: a ball of orange smoke whose density falls off from its centre, with a
sphere half inside it and a wall behind. The smoke is volume rendered only up to the nearest
surface along each ray, so the sphere's front pokes out of the smoke and the wall hides what
is behind it.
"""

import argparse
from pathlib import Path

import torch

from renderer import Camera
from renderer.scene import RadianceSource, Scene, box, sphere

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("--out", default="outputs/examples", help="where the files go")
ap.add_argument("--quick", action="store_true", help="small images (for tests)")
args = ap.parse_args()
out = Path(args.out)


def smoke(x: torch.Tensor, d: torch.Tensor):
    """Orange, density 6 at the centre falling to 0 at radius 0.8."""
    r = x.norm(dim=-1)
    sigma = 6.0 * (1.0 - r / 0.8).clamp_min(0.0) ** 2
    return torch.tensor([1.0, 0.55, 0.2]).expand_as(x), sigma


scene = Scene(background="black")
scene.add(RadianceSource(smoke, aabb=(-0.8, -0.8, -0.8, 0.8, 0.8, 0.8), samples=96),
          name="smoke")
scene.add(sphere(0.35), translate=(0.35, 0.0, 0.3), material="white")
scene.add(box((4.0, 4.0, 0.1)), translate=(0.0, 0.0, -1.0), material="green")
scene.lights.sun(direction=(-0.3, 1.0, 1.0))

size = 96 if args.quick else 512
camera = Camera.orbit(15.0, 10.0, 3.0, width=size, height=size, fov_y_deg=45.0)
print("wrote", scene.render(camera).save(out / "03_fog_and_surfaces.png"))
