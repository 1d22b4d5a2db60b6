"""Pinhole cameras and the rays through their pixels.

Vocabulary (ARCHITECTURE.md):

* ``c2w`` — camera-to-world ``[4, 4]``, OpenGL/Blender convention: in camera space the camera
  looks down ``−z``, ``+y`` is up and ``+x`` is right. Its upper-left ``3×3`` block ``R`` is a
  proper rotation (orthonormal, ``det R = +1``) and its last column holds the camera centre.
* ``fx, fy, cx, cy`` — intrinsics in pixels. Image coordinates ``(u, v)`` run right and *down*
  from the top-left corner of the image; pixel ``(i, j)`` (row ``i``, column ``j``) covers
  ``[j, j+1) × [i, i+1)`` and its centre is ``(u, v) = (j + ½, i + ½)``.
* ``rays_o``, ``rays_d`` — ray origins and unit directions ``[R, 3]``, ``R = H·W``, row-major
  from the top-left pixel (ray ``k`` belongs to pixel ``(k // W, k % W)``).
* ``depth`` from :meth:`Camera.project` is the z-depth (distance along the optical axis), not the
  distance along the ray that :func:`renderer.sphere_trace.sphere_trace` returns.

The pinhole model maps a camera-space point ``p = (p_x, p_y, p_z)`` with ``p_z < 0`` to

    u = cx + fx · p_x / (−p_z),        v = cy − fy · p_y / (−p_z),

and its inverse sends pixel ``(u, v)`` along the camera-space direction
``((u − cx)/fx, −(v − cy)/fy, −1)``, rotated into the world by ``R`` and normalised.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

__all__ = ["Camera"]

_ROTATION_TOL = 1e-4


def _check_positive_int(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def _check_finite(name: str, value: float, positive: bool = False) -> None:
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if positive and value <= 0:
        raise ValueError(f"{name} must be positive, got {value!r}")


def _check_fov(fov_y_deg: float) -> None:
    if not (math.isfinite(fov_y_deg) and 0.0 < fov_y_deg < 180.0):
        raise ValueError(f"fov_y_deg must lie in (0, 180) degrees, got {fov_y_deg!r}")


def _vec3(name: str, value: Sequence[float] | Tensor) -> np.ndarray:
    v = np.asarray(value.detach().cpu() if isinstance(value, Tensor) else value, dtype=np.float64)
    if v.shape != (3,) or not np.all(np.isfinite(v)):
        raise ValueError(f"{name} must be 3 finite numbers, got {value!r}")
    return v


def _normalise(name: str, v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    if n < 1e-12:
        raise ValueError(f"{name} has zero length")
    return v / n


def _validated_c2w(c2w: Tensor) -> Tensor:
    """A float32 CPU copy of ``c2w`` after checking it is a rigid transform."""
    m = torch.as_tensor(c2w).detach().to("cpu", torch.float64)
    if m.shape != (4, 4):
        raise ValueError(f"c2w must have shape [4, 4], got {list(m.shape)}")
    if not torch.isfinite(m).all():
        raise ValueError("c2w must be finite")
    if not torch.allclose(m[3], torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=m.dtype), atol=1e-6):
        raise ValueError(f"c2w's last row must be [0, 0, 0, 1], got {m[3].tolist()}")
    rot = m[:3, :3]
    ortho_err = (rot.T @ rot - torch.eye(3, dtype=m.dtype)).abs().max().item()
    if ortho_err > _ROTATION_TOL:
        raise ValueError(
            f"c2w[:3, :3] must be orthonormal (a rotation without scale or shear); "
            f"max |RᵀR − I| = {ortho_err:.3g}"
        )
    if torch.linalg.det(rot).item() < 0:
        raise ValueError("c2w[:3, :3] is a reflection (det < 0); it must be a proper rotation")
    return m.to(torch.float32).contiguous()


@dataclass(frozen=True, eq=False)
class Camera:
    """A pinhole camera: intrinsics in pixels and a camera-to-world transform.

    Attributes:
        width: image width W in pixels.
        height: image height H in pixels.
        fx: focal length along u in pixels.
        fy: focal length along v in pixels.
        cx: principal point u in pixels (``W/2`` for a centred camera).
        cy: principal point v in pixels (``H/2`` for a centred camera).
        c2w: camera-to-world ``[4, 4]`` (OpenGL convention); stored as a float32 CPU copy.

    Example:
        >>> cam = Camera.look_at((0.0, 0.0, 3.0), (0.0, 0.0, 0.0), width=4, height=3)
        >>> rays_o, rays_d = cam.rays()
        >>> rays_o.shape, rays_d.shape
        (torch.Size([12, 3]), torch.Size([12, 3]))
    """

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    c2w: Float[Tensor, "4 4"]

    def __post_init__(self) -> None:
        _check_positive_int("width", self.width)
        _check_positive_int("height", self.height)
        for name in ("fx", "fy"):
            _check_finite(name, float(getattr(self, name)), positive=True)
        for name in ("cx", "cy"):
            _check_finite(name, float(getattr(self, name)))
        for name in ("fx", "fy", "cx", "cy"):
            object.__setattr__(self, name, float(getattr(self, name)))
        object.__setattr__(self, "c2w", _validated_c2w(self.c2w))

    # ------------------------------------------------------------------ constructors

    @classmethod
    def from_fov(
        cls,
        width: int,
        height: int,
        fov_y_deg: float,
        c2w: Float[Tensor, "4 4"] | np.ndarray | Sequence[Sequence[float]],
    ) -> Camera:
        """A centred camera with square pixels and vertical field of view ``fov_y_deg``.

        ``fy = fx = (H/2) / tan(fov_y/2)``, ``cx = W/2``, ``cy = H/2``.

        Example:
            >>> cam = Camera.from_fov(64, 48, 60.0, torch.eye(4))
            >>> round(cam.fy, 3)
            41.569
        """
        _check_fov(float(fov_y_deg))
        _check_positive_int("height", height)
        f = 0.5 * height / math.tan(math.radians(fov_y_deg) / 2.0)
        return cls(width, height, f, f, width / 2.0, height / 2.0, _as_tensor_c2w(c2w))

    @classmethod
    def look_at(
        cls,
        eye: Sequence[float] | Tensor,
        target: Sequence[float] | Tensor,
        up: Sequence[float] | Tensor = (0.0, 1.0, 0.0),
        width: int = 256,
        height: int = 256,
        fov_y_deg: float = 40.0,
    ) -> Camera:
        """A camera at ``eye`` looking at ``target``, rolled so that ``up`` projects upwards.

        With ``f = (target − eye)/‖·‖`` the camera axes are ``x = f × up / ‖·‖``, ``y = x × f``,
        ``z = −f``.

        Raises:
            ValueError: if ``eye == target`` or ``up`` is parallel to the viewing direction.

        Example:
            >>> cam = Camera.look_at((0.0, 0.0, 3.0), (0.0, 0.0, 0.0), width=8, height=8)
            >>> [v + 0.0 for v in cam.c2w[:3, 2].tolist()]  # camera +z points back to the eye
            [0.0, 0.0, 1.0]
        """
        e, t, u = _vec3("eye", eye), _vec3("target", target), _vec3("up", up)
        forward = _normalise("target - eye", t - e)
        u = _normalise("up", u)
        right = np.cross(forward, u)
        if np.linalg.norm(right) < 1e-6:
            raise ValueError("up is parallel to the viewing direction; choose another up vector")
        right = right / np.linalg.norm(right)
        cam_up = np.cross(right, forward)
        return cls.from_fov(width, height, fov_y_deg, _c2w_from_axes(right, cam_up, -forward, e))

    @classmethod
    def orbit(
        cls,
        azimuth_deg: float,
        elevation_deg: float,
        radius: float,
        target: Sequence[float] | Tensor = (0.0, 0.0, 0.0),
        up: Sequence[float] | Tensor = (0.0, 1.0, 0.0),
        width: int = 256,
        height: int = 256,
        fov_y_deg: float = 40.0,
    ) -> Camera:
        """A camera on a sphere of ``radius`` around ``target``, looking at it.

        With ``up`` normalised and ``(e₁, up, e₂)`` a right-handed frame (``e₂`` is world ``+z``
        made perpendicular to ``up``, or ``+x`` when ``up ∥ z``; for ``up = +y`` it is ``+x, +y,
        +z``), azimuth ``φ`` turns about ``up`` and elevation ``θ`` (positive = above):

            back  = cos θ (sin φ e₁ + cos φ e₂) + sin θ up      (camera +z)
            right = cos φ e₁ − sin φ e₂                          (camera +x)
            eye   = target + radius · back,   camera +y = back × right.

        The frame is defined for every elevation, ``±90°`` included (top and bottom views).
        ``φ = θ = 0`` sits on ``+e₂`` looking back along ``−e₂``.

        Example:
            >>> cam = Camera.orbit(90.0, 0.0, 2.0, width=8, height=8)
            >>> [round(v, 4) + 0.0 for v in cam.c2w[:3, 3].tolist()]
            [2.0, 0.0, 0.0]
        """
        _check_finite("azimuth_deg", float(azimuth_deg))
        _check_finite("elevation_deg", float(elevation_deg))
        _check_finite("radius", float(radius), positive=True)
        t = _vec3("target", target)
        u = _normalise("up", _vec3("up", up))
        ref = np.array([0.0, 0.0, 1.0]) if abs(u[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
        e2 = _normalise("reference axis", ref - ref.dot(u) * u)
        e1 = np.cross(u, e2)
        phi, theta = math.radians(azimuth_deg), math.radians(elevation_deg)
        back = math.cos(theta) * (math.sin(phi) * e1 + math.cos(phi) * e2) + math.sin(theta) * u
        right = math.cos(phi) * e1 - math.sin(phi) * e2
        cam_up = np.cross(back, right)
        c2w = _c2w_from_axes(right, cam_up, back, t + radius * back)
        return cls.from_fov(width, height, fov_y_deg, c2w)

    @classmethod
    def from_dict(cls, data: dict) -> Camera:
        """Inverse of :meth:`to_dict`.

        Raises:
            ValueError: naming the missing keys, or any invalid value.
        """
        keys = ("width", "height", "fx", "fy", "cx", "cy", "c2w")
        missing = [k for k in keys if k not in data]
        if missing:
            raise ValueError(f"camera dict is missing {missing}; expected keys {list(keys)}")
        for k in ("width", "height"):
            if isinstance(data[k], bool) or not float(data[k]).is_integer():
                raise ValueError(f"camera dict's {k} must be an integer, got {data[k]!r}")
        return cls(
            int(data["width"]),
            int(data["height"]),
            float(data["fx"]),
            float(data["fy"]),
            float(data["cx"]),
            float(data["cy"]),
            _as_tensor_c2w(data["c2w"]),
        )

    # ------------------------------------------------------------------ queries

    @property
    def fov_y_deg(self) -> float:
        """Vertical field of view in degrees, ``2·atan(H / (2 fy))`` (centred camera)."""
        return math.degrees(2.0 * math.atan(0.5 * self.height / self.fy))

    @property
    def position(self) -> Float[Tensor, " 3"]:
        """Camera centre in world space, ``c2w[:3, 3]``."""
        return self.c2w[:3, 3].clone()

    def to_dict(self) -> dict:
        """Plain JSON types: ints, floats and a nested list for ``c2w``."""
        return {
            "width": self.width,
            "height": self.height,
            "fx": self.fx,
            "fy": self.fy,
            "cx": self.cx,
            "cy": self.cy,
            "c2w": self.c2w.tolist(),
        }

    def rays(
        self, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
    ) -> tuple[Float[Tensor, "R 3"], Float[Tensor, "R 3"]]:
        """World-space rays through every pixel centre, row-major from the top-left pixel.

        For pixel ``(i, j)``: ``u = j + ½``, ``v = i + ½``,
        ``d_cam = ((u − cx)/fx, −(v − cy)/fy, −1)``, ``rays_d = R d_cam / ‖R d_cam‖`` and
        ``rays_o = c2w[:3, 3]``.

        Returns:
            ``(rays_o, rays_d)``, each ``[H·W, 3]``.

        Example:
            >>> cam = Camera.look_at((0.0, 0.0, 3.0), (0.0, 0.0, 0.0), width=3, height=3)
            >>> _, d = cam.rays()
            >>> [round(v, 6) + 0.0 for v in d[4].tolist()]  # the centre pixel looks at the target
            [0.0, 0.0, -1.0]
        """
        c2w = self.c2w.to(device=device, dtype=dtype)
        u = torch.arange(self.width, device=c2w.device, dtype=dtype) + 0.5
        v = torch.arange(self.height, device=c2w.device, dtype=dtype) + 0.5
        vv, uu = torch.meshgrid(v, u, indexing="ij")
        d_cam = torch.stack(
            [(uu - self.cx) / self.fx, -(vv - self.cy) / self.fy, -torch.ones_like(uu)], dim=-1
        ).reshape(-1, 3)
        rays_d = d_cam @ c2w[:3, :3].T
        rays_d = rays_d / torch.linalg.norm(rays_d, dim=-1, keepdim=True)
        rays_o = c2w[:3, 3].expand_as(rays_d).contiguous()
        return rays_o, rays_d

    def project(
        self, points: Float[Tensor, "*batch 3"]
    ) -> tuple[Float[Tensor, "*batch 2"], Float[Tensor, "*batch"]]:
        """Pixel coordinates and z-depth of world points; the inverse of :meth:`rays`.

        ``p = Rᵀ (x − c2w[:3, 3])``, ``depth = −p_z``, ``u = cx + fx p_x / depth``,
        ``v = cy − fy p_y / depth``. Points with ``depth ≤ 0`` are behind the camera and their
        pixel coordinates are meaningless (they may be infinite).

        Returns:
            ``(pixels, depth)``: ``pixels[..., 0] = u`` (column), ``pixels[..., 1] = v`` (row),
            continuous, so pixel ``(i, j)``'s centre projects to ``(j + ½, i + ½)``.

        Example:
            >>> cam = Camera.look_at((0.0, 0.0, 3.0), (0.0, 0.0, 0.0), width=8, height=6)
            >>> px, depth = cam.project(torch.zeros(1, 3))
            >>> px.tolist(), depth.tolist()
            ([[4.0, 3.0]], [3.0])
        """
        c2w = self.c2w.to(device=points.device, dtype=points.dtype)
        p = (points - c2w[:3, 3]) @ c2w[:3, :3]
        depth = -p[..., 2]
        u = self.cx + self.fx * p[..., 0] / depth
        v = self.cy - self.fy * p[..., 1] / depth
        return torch.stack([u, v], dim=-1), depth

    def scaled(self, factor: float) -> Camera:
        """The same camera at a different resolution (same field of view and pose).

        ``W' = max(1, round(W·factor))`` (likewise ``H'``); intrinsics scale by ``W'/W`` and
        ``H'/H`` so that image edges map to the same rays.

        Example:
            >>> cam = Camera.look_at((0.0, 0.0, 3.0), (0.0, 0.0, 0.0), width=256, height=128)
            >>> half = cam.scaled(0.5)
            >>> (half.width, half.height, round(half.fov_y_deg, 6) == round(cam.fov_y_deg, 6))
            (128, 64, True)
        """
        _check_finite("factor", float(factor), positive=True)
        w = max(1, round(self.width * factor))
        h = max(1, round(self.height * factor))
        sx, sy = w / self.width, h / self.height
        return Camera(
            w, h, self.fx * sx, self.fy * sy, self.cx * sx, self.cy * sy, self.c2w.clone()
        )

    @classmethod
    def turntable(
        cls,
        n_frames: int,
        elevation_deg: float,
        radius: float,
        target: Sequence[float] | Tensor = (0.0, 0.0, 0.0),
        up: Sequence[float] | Tensor = (0.0, 1.0, 0.0),
        width: int = 256,
        height: int = 256,
        fov_y_deg: float = 40.0,
        start_azimuth_deg: float = 0.0,
    ) -> list[Camera]:
        """``n_frames`` orbit cameras evenly spaced over one turn (the last frame is not a repeat
        of the first): azimuths ``start + 360°·k / n_frames``.

        Example:
            >>> cams = Camera.turntable(4, 20.0, 3.0, width=16, height=16)
            >>> len(cams)
            4
        """
        _check_positive_int("n_frames", n_frames)
        return [
            cls.orbit(
                start_azimuth_deg + 360.0 * k / n_frames,
                elevation_deg,
                radius,
                target=target,
                up=up,
                width=width,
                height=height,
                fov_y_deg=fov_y_deg,
            )
            for k in range(n_frames)
        ]



def _c2w_from_axes(x: np.ndarray, y: np.ndarray, z: np.ndarray, centre: np.ndarray) -> Tensor:
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = x, y, z, centre
    return torch.from_numpy(m)


def _as_tensor_c2w(c2w: Tensor | np.ndarray | Sequence[Sequence[float]]) -> Tensor:
    """``c2w`` as a float tensor, its shape checked here so that the error is a ValueError."""
    if isinstance(c2w, Tensor):
        m = c2w.to(torch.float64) if not c2w.is_floating_point() else c2w
    else:
        try:
            m = torch.as_tensor(np.asarray(c2w, dtype=np.float64))
        except (TypeError, ValueError) as err:
            raise ValueError(f"c2w must be a [4, 4] array of numbers: {err}") from None
    if m.shape != (4, 4):
        raise ValueError(f"c2w must have shape [4, 4], got {list(m.shape)}")
    return m
