"""Surface and volume metrics between a predicted mesh and a reference mesh.

The project fixes these definitions so that numbers are comparable across tasks and runs:

* **Frame.** Both meshes are mapped by the *reference's* normalisation
  (:func:`datasets.meshes.normalization_for`: reference bounding box centred, longest side 2).
  Every length below is in that frame, so metrics are invariant to moving or scaling both
  meshes together, and a prediction is never "helped" by its own normalisation.
* **Samples.** ``A`` = ``n`` area-uniform samples on the predicted surface, ``B`` = ``n`` on the
  reference surface (:func:`datasets.sdf_samples.sample_surface`), each with its face normal.
  ``d(a, S)`` is the exact point-to-triangle distance from ``a`` to surface ``S`` (open3d), not
  the distance to the other mesh's samples, so there is no sampling floor: a mesh against
  itself scores Chamfer ≈ 1e-7 (float32), not ~1/√n.
* **Deterministic.** All randomness comes from ``numpy.random.default_rng`` seeded with
  ``seed``; the same inputs and seed give the same numbers.

An empty prediction (no faces or zero area, e.g. a field that never crossed zero) scores the
worst value of each metric instead of raising: Chamfer ``inf``, the others 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import trimesh

from datasets.meshes import normalization_for
from datasets.sdf_samples import MeshDistance, sample_surface

__all__ = [
    "chamfer_l1",
    "normal_consistency",
    "normal_angular_error",
    "fscore",
    "volumetric_iou",
    "evaluate_meshes",
    "IOU_BOX_PADDING",
]

IOU_BOX_PADDING = 0.05
"""Padding of the cube ``[-1 − p, 1 + p]³`` (reference-normalised) that IoU samples fill."""


def _is_empty(mesh: trimesh.Trimesh) -> bool:
    return len(mesh.faces) == 0 or not float(mesh.area) > 0


def _normalised_pair(
    pred: trimesh.Trimesh, ref: trimesh.Trimesh
) -> tuple[trimesh.Trimesh, trimesh.Trimesh]:
    """``pred`` and ``ref`` mapped by the reference's normalisation."""
    if _is_empty(ref):
        raise ValueError("the reference mesh has no faces or zero area")
    norm = normalization_for(ref)
    return norm.apply_mesh(pred), norm.apply_mesh(ref)


@dataclass
class _SurfaceMatch:
    """Per-sample distances and |cos| of normals, in both directions (``None``: empty pred)."""

    dist_pred_to_ref: np.ndarray  # d(a, ref) for a in A
    dist_ref_to_pred: np.ndarray  # d(b, pred) for b in B
    cos_pred_to_ref: np.ndarray  # |n_a · n_ref(closest to a)|
    cos_ref_to_pred: np.ndarray  # |n_b · n_pred(closest to b)|


def _one_way(
    samples: torch.Tensor, normals: torch.Tensor, target: MeshDistance
) -> tuple[np.ndarray, np.ndarray]:
    closest, closest_normals = target.closest_points(samples)
    dist = (samples - closest).norm(dim=1)
    cos = (normals * closest_normals).sum(dim=1).abs().clamp(max=1.0)
    return dist.double().numpy(), cos.double().numpy()


def _match_surfaces(
    pred_n: trimesh.Trimesh, ref_n: trimesh.Trimesh, n: int, seed: int
) -> _SurfaceMatch | None:
    """Sample both (normalised) surfaces and query each sample against the other surface."""
    if _is_empty(pred_n):
        return None
    # Separate, fixed streams per mesh: A does not change when only the reference does.
    a, a_normals = sample_surface(pred_n, n, np.random.default_rng([seed, 0]))
    b, b_normals = sample_surface(ref_n, n, np.random.default_rng([seed, 1]))
    d_ab, c_ab = _one_way(a, a_normals, MeshDistance(ref_n))
    d_ba, c_ba = _one_way(b, b_normals, MeshDistance(pred_n))
    return _SurfaceMatch(d_ab, d_ba, c_ab, c_ba)


def _chamfer(match: _SurfaceMatch | None) -> float:
    if match is None:
        return float("inf")
    return 0.5 * (float(match.dist_pred_to_ref.mean()) + float(match.dist_ref_to_pred.mean()))


def _normal_consistency(match: _SurfaceMatch | None) -> float:
    if match is None:
        return 0.0
    return 0.5 * (float(match.cos_pred_to_ref.mean()) + float(match.cos_ref_to_pred.mean()))


def _normal_angle(match: _SurfaceMatch | None) -> float:
    if match is None:
        return 90.0
    ab = np.degrees(np.arccos(np.clip(match.cos_pred_to_ref, 0.0, 1.0)))
    ba = np.degrees(np.arccos(np.clip(match.cos_ref_to_pred, 0.0, 1.0)))
    return 0.5 * (float(ab.mean()) + float(ba.mean()))


def _fscore(match: _SurfaceMatch | None, threshold: float) -> float:
    if match is None:
        return 0.0
    tau = 2.0 * threshold  # the reference's longest side is 2 in its normalised frame
    precision = float((match.dist_pred_to_ref < tau).mean())
    recall = float((match.dist_ref_to_pred < tau).mean())
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def chamfer_l1(
    pred: trimesh.Trimesh, ref: trimesh.Trimesh, n: int = 100_000, seed: int = 0
) -> float:
    """Symmetric L1 Chamfer distance between two surfaces, in reference-normalised units.

    ``CD = ½ (mean_{a∈A} d(a, ref) + mean_{b∈B} d(b, pred))`` with ``A``, ``B`` ``n`` area-uniform
    samples on ``pred`` and ``ref`` and ``d`` the exact point-to-surface distance (see the
    module docstring). Lower is better; 0 for identical surfaces. For two concentric spheres of
    radii ``r`` and ``r + δ`` it is ``δ / r`` (the reference sphere becomes the unit sphere).

    Example:
        >>> ball = trimesh.creation.icosphere(subdivisions=4)
        >>> chamfer_l1(ball, ball, n=1000) < 1e-5
        True
    """
    return _chamfer(_match_surfaces(*_normalised_pair(pred, ref), n, seed))


def normal_consistency(
    pred: trimesh.Trimesh, ref: trimesh.Trimesh, n: int = 100_000, seed: int = 0
) -> float:
    """Symmetric normal consistency: mean ``|cos|`` between matched face normals.

    ``NC = ½ (mean_{a∈A} |n_a · n_ref(π_ref(a))| + mean_{b∈B} |n_b · n_pred(π_pred(b))|)``, where
    ``n_a`` is the normal of the face ``a`` was sampled on and ``n_S(π_S(a))`` the normal of the
    triangle of ``S`` holding ``a``'s closest point. ``|cos|`` ignores orientation (a flipped
    prediction is not penalised). In ``[0, 1]``, higher is better, 1 for identical surfaces.

    Example:
        >>> ball = trimesh.creation.icosphere(subdivisions=4)
        >>> normal_consistency(ball, ball, n=1000) > 0.999
        True
    """
    return _normal_consistency(_match_surfaces(*_normalised_pair(pred, ref), n, seed))


def normal_angular_error(
    pred: trimesh.Trimesh, ref: trimesh.Trimesh, n: int = 100_000, seed: int = 0
) -> float:
    """Normal angular error in degrees (NeuRBF, Chen et al. ICCV 2023, supp. Eq. 12):

        NAE = ½ (mean_{a∈A} arccos|n_a · n_ref(a)| + mean_{b∈B} arccos|n_b · n_pred(b)|),

    with ``n_ref(a)`` the normal of the reference at the point closest to ``a`` (exact closest
    point on the surface instead of the nearest sample). Both terms are angles — the official
    code's second term is a raw cosine, a bug this follows the paper to avoid. Orientation does
    not matter (absolute cosine); an empty prediction scores 90°.

    Example:
        >>> ball = trimesh.creation.icosphere(subdivisions=4)
        >>> normal_angular_error(ball, ball, n=1000) < 1e-2
        True
    """
    return _normal_angle(_match_surfaces(*_normalised_pair(pred, ref), n, seed))


def fscore(
    pred: trimesh.Trimesh,
    ref: trimesh.Trimesh,
    threshold: float = 0.01,
    n: int = 100_000,
    seed: int = 0,
) -> float:
    """F-score at a distance threshold (Tatarchenko et al., CVPR 2019).

    ``threshold`` is a fraction of the reference's longest bounding-box side, so the distance
    threshold in the normalised frame (longest side 2) is ``τ = 2 · threshold``: the default
    ``threshold = 0.01`` ("F-score@1%") means ``τ = 0.02``. With ``precision = P(d(a, ref) < τ)``
    over ``A`` and ``recall = P(d(b, pred) < τ)`` over ``B``, ``F = 2PR / (P + R)`` (0 when both
    are 0). In ``[0, 1]``, higher is better.

    Example:
        >>> ball = trimesh.creation.icosphere(subdivisions=4)
        >>> fscore(ball, ball, n=1000)
        1.0
    """
    return _fscore(_match_surfaces(*_normalised_pair(pred, ref), n, seed), threshold)


def _volumetric_iou(pred_n: trimesh.Trimesh, ref_n: trimesh.Trimesh, n: int, seed: int) -> float:
    if _is_empty(pred_n):
        return 0.0
    lo, hi = -1.0 - IOU_BOX_PADDING, 1.0 + IOU_BOX_PADDING
    rng = np.random.default_rng([seed, 2])
    x = torch.from_numpy(rng.uniform(lo, hi, size=(n, 3)).astype(np.float32))
    inside_pred = MeshDistance(pred_n).occupancy(x)
    inside_ref = MeshDistance(ref_n).occupancy(x)
    union = int((inside_pred | inside_ref).sum())
    return 1.0 if union == 0 else int((inside_pred & inside_ref).sum()) / union


def volumetric_iou(
    pred: trimesh.Trimesh, ref: trimesh.Trimesh, n: int = 200_000, seed: int = 0
) -> float:
    """Volumetric intersection over union, by Monte Carlo in the reference's padded box.

    ``n`` points ``x`` uniform in ``[-1 − p, 1 + p]³`` (reference-normalised, ``p =``
    :data:`IOU_BOX_PADDING`); ``IoU = |in(pred) ∧ in(ref)| / |in(pred) ∨ in(ref)|`` with ``in`` the
    ray-parity inside test of open3d (``compute_occupancy``, 3 rays). The standard error is about
    ``√(IoU (1 − IoU) / n_union)`` with ``n_union`` the points in the union (~40% of ``n`` for a
    ball). Prediction volume outside the box is not counted. Inside/outside is only defined for
    watertight meshes: for an open prediction (e.g. a marching-cubes mesh cut by its grid) the
    number is an approximation that depends on which rays escape through the holes.

    Example:
        >>> ball = trimesh.creation.icosphere(subdivisions=4)
        >>> volumetric_iou(ball, ball, n=1000)
        1.0
    """
    return _volumetric_iou(*_normalised_pair(pred, ref), n, seed)


def evaluate_meshes(
    pred: trimesh.Trimesh,
    ref: trimesh.Trimesh,
    n: int = 100_000,
    seed: int = 0,
    n_volume: int | None = None,
) -> dict[str, float | int]:
    """All metrics of this module at once, sharing samples and distance queries.

    Args:
        pred: the predicted mesh (e.g. marching cubes of a trained field), world units.
        ref: the reference mesh, same world units.
        n: surface samples per mesh (Chamfer, normal consistency, F-score).
        seed: seed of every random draw.
        n_volume: points for the volumetric IoU (default ``2 n``).

    Returns:
        ``{"chamfer_l1", "normal_consistency", "normal_angle_deg", "fscore@1%",
        "volumetric_iou", "n_samples"}``; identical to calling the five functions separately
        with the same ``n`` and ``seed``.

    Example:
        >>> ball = trimesh.creation.icosphere(subdivisions=4)
        >>> m = evaluate_meshes(ball, ball, n=1000)
        >>> m["fscore@1%"], m["volumetric_iou"], m["n_samples"]
        (1.0, 1.0, 1000)
    """
    pred_n, ref_n = _normalised_pair(pred, ref)
    match = _match_surfaces(pred_n, ref_n, n, seed)
    return {
        "chamfer_l1": _chamfer(match),
        "normal_consistency": _normal_consistency(match),
        "normal_angle_deg": _normal_angle(match),
        "fscore@1%": _fscore(match, 0.01),
        "volumetric_iou": _volumetric_iou(
            pred_n, ref_n, 2 * n if n_volume is None else n_volume, seed
        ),
        "n_samples": n,
    }
