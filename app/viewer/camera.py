"""The viewer's orbit camera: a target, two angles, a distance and a field of view.

The parameters are those of :meth:`renderer.cameras.Camera.orbit` (azimuth turns about ``up``,
elevation lifts above the ``up``-perpendicular plane), so a frame is exactly
``Camera.orbit(azimuth, elevation, radius, target, up, fov)``. Mouse gestures map to:

* orbit (left drag): ``Δazimuth = −k·Δx``, ``Δelevation = k·Δy`` (degrees per pixel ``k``);
  elevation stays within ±89° so the frame never flips;
* pan (right/middle drag): the target slides in the image plane by the world size of the pixel
  at the target's depth, ``2·r·tan(fov/2) / H`` per pixel, so the point under the cursor follows it;
* zoom (wheel): ``r ← r·0.9^ticks``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from renderer.cameras import Camera

__all__ = ["OrbitCamera"]


def _frame(up: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(e₁, up, e₂)`` exactly as :meth:`Camera.orbit` builds it."""
    u = up / np.linalg.norm(up)
    ref = np.array([0.0, 0.0, 1.0]) if abs(u[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    e2 = ref - ref.dot(u) * u
    e2 /= np.linalg.norm(e2)
    return np.cross(u, e2), u, e2


@dataclass
class OrbitCamera:
    """Orbit-camera state (plain numbers; the viewer's UI thread edits it)."""

    azimuth: float = 30.0
    elevation: float = 20.0
    radius: float = 3.2
    target: np.ndarray = field(default_factory=lambda: np.zeros(3))
    fov_y_deg: float = 40.0
    up: np.ndarray = field(default_factory=lambda: np.array([0.0, 1.0, 0.0]))
    degrees_per_pixel: float = 0.4

    # -- construction ----------------------------------------------------------------------
    @classmethod
    def from_camera(cls, camera: Camera, target: np.ndarray | None = None,
                    up: np.ndarray | None = None) -> OrbitCamera:
        """The orbit camera seeing what ``camera`` sees (roll aside): its eye and viewing axis;
        the new target is the point of the axis nearest to ``target`` (default: the origin)."""
        c2w = camera.c2w.double().numpy()
        eye, forward = c2w[:3, 3], -c2w[:3, 2]
        hint = np.zeros(3) if target is None else np.asarray(target, dtype=float)
        distance = max(float(np.dot(hint - eye, forward)), 1e-2)
        new_target = eye + distance * forward
        up_vec = np.array([0.0, 1.0, 0.0]) if up is None else np.asarray(up, dtype=float)
        e1, u, e2 = _frame(up_vec)
        back = -forward
        elevation = math.degrees(math.asin(float(np.clip(back.dot(u), -1.0, 1.0))))
        azimuth = math.degrees(math.atan2(float(back.dot(e1)), float(back.dot(e2))))
        return cls(azimuth=azimuth, elevation=float(np.clip(elevation, -89.0, 89.0)),
                   radius=distance, target=new_target, fov_y_deg=camera.fov_y_deg, up=u)

    def copy(self) -> OrbitCamera:
        return OrbitCamera(self.azimuth, self.elevation, self.radius, self.target.copy(),
                           self.fov_y_deg, self.up.copy(), self.degrees_per_pixel)

    # -- gestures ---------------------------------------------------------------------------
    def orbit(self, dx: float, dy: float) -> None:
        """Turn around the target by a mouse drag of ``(dx, dy)`` pixels."""
        self.azimuth = (self.azimuth - self.degrees_per_pixel * dx + 180.0) % 360.0 - 180.0
        self.elevation = float(np.clip(self.elevation + self.degrees_per_pixel * dy, -89.0, 89.0))

    def pan(self, dx: float, dy: float, view_height: int) -> None:
        """Slide the target with a drag of ``(dx, dy)`` pixels in a view ``view_height`` tall."""
        c2w = self.camera(8, 8).c2w.double().numpy()
        right, cam_up = c2w[:3, 0], c2w[:3, 1]
        per_pixel = 2.0 * self.radius * math.tan(math.radians(self.fov_y_deg) / 2.0)
        per_pixel /= max(view_height, 1)
        self.target = self.target - per_pixel * dx * right + per_pixel * dy * cam_up

    def zoom(self, ticks: float) -> None:
        """Move towards (ticks > 0) or away from the target."""
        self.radius = float(np.clip(self.radius * 0.9**ticks, 1e-2, 1e3))

    # -- output -----------------------------------------------------------------------------
    def camera(self, width: int, height: int) -> Camera:
        """The pinhole camera of this state at ``width × height`` pixels."""
        return Camera.orbit(float(self.azimuth), float(self.elevation), float(self.radius),
                            target=tuple(float(v) for v in self.target),
                            up=tuple(float(v) for v in self.up), width=int(width),
                            height=int(height), fov_y_deg=float(self.fov_y_deg))

    def light_direction(self, azimuth_deg: float, elevation_deg: float) -> tuple[float, ...]:
        """A camera-relative light (azimuth to the right, elevation up, 0/0 = from the eye) as a
        world direction towards the light."""
        c2w = self.camera(8, 8).c2w.double().numpy()
        a, e = math.radians(azimuth_deg), math.radians(elevation_deg)
        local = np.array([math.sin(a) * math.cos(e), math.sin(e), math.cos(a) * math.cos(e)])
        world = c2w[:3, :3] @ local
        return tuple(float(v) for v in world / np.linalg.norm(world))
