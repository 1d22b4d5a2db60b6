"""Mesh metrics against closed forms: identical meshes, concentric icospheres, rigid motions.

Concentric icospheres. Let ``P`` be the unit icosphere polyhedron and ``h`` its inscribed radius
(smallest face-plane distance). Reference ``ref = r·P``, prediction ``pred = (r + δ)·P``. The
reference normalisation scales both by ``s = normalization_for(ref).scale`` (≈ 1/r: the
icosphere's bounding box is a hair smaller than the sphere's), giving ``s·r·P`` and
``s·(r + δ)·P``, concentric scaled copies. For convex, origin-centred copies every
point-to-surface distance between them lies in ``[s·δ·h, s·δ]`` (the face planes are ``s·δ·h_f``
apart; a point's radial partner is ``s·δ·|q| ≤ s·δ`` away). Hence

* Chamfer ∈ ``[s·δ·h, s·δ]`` (≈ δ/r),
* F-score = 0 when ``s·δ·h > τ = 0.02`` and 1 when ``s·δ < τ``,
* IoU = ``vol(r·P) / vol((r + δ)·P)`` = ``(r / (r + δ))³`` exactly (up to Monte Carlo error).
"""

from pathlib import Path

import numpy as np
import pytest
import trimesh

from app.metrics import (
    chamfer_l1,
    evaluate_meshes,
    fscore,
    normal_angular_error,
    normal_consistency,
    volumetric_iou,
)
from datasets.meshes import load_mesh, normalization_for

SPOT = Path(__file__).resolve().parents[2] / "assets" / "meshes" / "spot.obj"
N = 20_000
KEYS = {"chamfer_l1", "normal_consistency", "normal_angle_deg", "fscore@1%", "volumetric_iou",
        "n_samples"}


def icosphere(radius: float, center=(0.0, 0.0, 0.0)) -> trimesh.Trimesh:
    return trimesh.creation.icosphere(subdivisions=4, radius=radius).apply_translation(center)


def inscribed_fraction(mesh: trimesh.Trimesh, radius: float) -> float:
    """``h``: smallest face-plane distance of an origin-centred icosphere, over its radius."""
    return float(np.einsum("ij,ij->i", mesh.face_normals, mesh.triangles[:, 0]).min() / radius)


@pytest.fixture(scope="module")
def spot():
    return load_mesh(SPOT)


@pytest.fixture(scope="module")
def bumpy_spot(spot):
    """Spot with every vertex pushed along its normal by a smooth, deterministic bump."""
    v = np.asarray(spot.vertices)
    bump = 0.03 * np.sin(7.0 * v[:, 0]) * np.cos(5.0 * v[:, 1])
    return trimesh.Trimesh(v + bump[:, None] * spot.vertex_normals, spot.faces)


@pytest.mark.parametrize("which", ["sphere", "spot"])
def test_mesh_against_itself_is_perfect(which, spot):
    mesh = icosphere(1.3) if which == "sphere" else spot
    m = evaluate_meshes(mesh, mesh, n=N)
    assert set(m) == KEYS and m["n_samples"] == N
    # Point-to-surface distance, not point-to-samples: with 2e4 samples the latter would be ~1e-2.
    assert m["chamfer_l1"] < 1e-5
    assert m["normal_consistency"] > 0.9999
    assert m["fscore@1%"] == 1.0
    assert m["volumetric_iou"] == 1.0


def test_concentric_spheres_match_the_closed_forms():
    r, delta = 1.0, 0.1
    ref, pred = icosphere(r), icosphere(r + delta)
    s = normalization_for(ref).scale
    h = inscribed_fraction(ref, r)
    assert 0.998 < h < 1 and 1.0 <= s < 1.01
    m = evaluate_meshes(pred, ref, n=N)
    assert s * delta * h <= m["chamfer_l1"] <= s * delta
    assert m["chamfer_l1"] == pytest.approx(delta / r, rel=0.02)
    assert s * delta * h > 0.02 and m["fscore@1%"] == 0.0
    iou = (r / (r + delta)) ** 3
    n_union = 2 * N * 4 / 3 * np.pi * (s * (r + delta)) ** 3 / (2 * 1.05) ** 3
    assert abs(m["volumetric_iou"] - iou) < 5 * (iou * (1 - iou) / n_union) ** 0.5
    assert m["normal_consistency"] > 0.999  # scaled copies: matched faces are parallel


def test_concentric_spheres_within_threshold_score_full_fscore():
    ref, pred = icosphere(2.0), icosphere(2.0 * 1.008)  # s·δ ≈ 0.008 < τ = 0.02
    assert fscore(pred, ref, n=N) == 1.0
    assert fscore(pred, ref, threshold=0.001, n=N) == 0.0  # τ = 0.002 < s·δ·h


def test_iou_of_shrunk_sphere_is_symmetric_in_closed_form():
    ref, pred = icosphere(1.0), icosphere(0.8)
    iou = volumetric_iou(pred, ref, n=100_000)
    assert iou == pytest.approx(0.8**3, abs=0.01)


def test_normal_consistency_separates_sphere_from_box():
    ball = icosphere(1.0)
    box = trimesh.creation.box(extents=(2.0, 2.0, 2.0))
    nc_box = normal_consistency(box, ball, n=N)
    nc_same = normal_consistency(ball, ball, n=N)
    assert nc_box < nc_same - 0.05
    assert 0.5 < nc_box < 0.95


def test_reference_normalisation_makes_metrics_invariant_to_moving_both(spot, bumpy_spot):
    base = evaluate_meshes(bumpy_spot, spot, n=N, seed=3)
    assert 1e-3 < base["chamfer_l1"] < 0.05 and 0 < base["fscore@1%"] < 1
    assert base["volumetric_iou"] < 1.0
    transform = trimesh.transformations.translation_matrix([10.0, -3.0, 5.0])
    transform[:3, :3] *= 4.0
    moved = evaluate_meshes(
        bumpy_spot.copy().apply_transform(transform),
        spot.copy().apply_transform(transform),
        n=N,
        seed=3,
    )
    for key in ("chamfer_l1", "normal_consistency", "fscore@1%", "volumetric_iou"):
        assert moved[key] == pytest.approx(base[key], rel=1e-3, abs=1e-6), key
    # Negative control: moving only the prediction is penalised.
    shifted = evaluate_meshes(bumpy_spot.copy().apply_translation([0.1, 0, 0]), spot, n=N, seed=3)
    assert shifted["chamfer_l1"] > 2 * base["chamfer_l1"]
    assert shifted["volumetric_iou"] < base["volumetric_iou"]


def test_pred_is_measured_in_the_reference_frame_not_its_own():
    # A prediction twice too big would be perfect in its own normalisation; not in the reference's.
    ref, pred = icosphere(1.0), icosphere(2.0)
    assert chamfer_l1(pred, ref, n=N) == pytest.approx(1.0, rel=0.02)


def test_evaluate_matches_the_separate_functions_and_is_deterministic(spot, bumpy_spot):
    m = evaluate_meshes(bumpy_spot, spot, n=N, seed=5)
    assert m == evaluate_meshes(bumpy_spot, spot, n=N, seed=5)
    assert m["chamfer_l1"] == chamfer_l1(bumpy_spot, spot, n=N, seed=5)
    assert m["normal_consistency"] == normal_consistency(bumpy_spot, spot, n=N, seed=5)
    assert m["fscore@1%"] == fscore(bumpy_spot, spot, n=N, seed=5)
    assert m["volumetric_iou"] == volumetric_iou(bumpy_spot, spot, n=2 * N, seed=5)
    other = evaluate_meshes(bumpy_spot, spot, n=N, seed=6)
    assert other["chamfer_l1"] != m["chamfer_l1"]
    assert other["chamfer_l1"] == pytest.approx(m["chamfer_l1"], rel=0.05)


def test_empty_prediction_scores_worst_values():
    m = evaluate_meshes(trimesh.Trimesh(), icosphere(1.0), n=1000)
    assert m["chamfer_l1"] == float("inf")
    assert m["normal_consistency"] == m["fscore@1%"] == m["volumetric_iou"] == 0.0


def test_empty_reference_is_an_error():
    with pytest.raises(ValueError, match="reference"):
        evaluate_meshes(icosphere(1.0), trimesh.Trimesh(), n=10)


def test_normal_angular_error_follows_the_paper_not_the_buggy_code(bumpy_spot, spot):
    ball = icosphere(1.0)
    assert normal_angular_error(ball, ball, n=N) < 0.05  # against itself: 0 (float32 noise)
    flipped = trimesh.Trimesh(ball.vertices, ball.faces[:, ::-1])
    assert abs(normal_angular_error(flipped, ball, n=N) - normal_angular_error(ball, ball, n=N)
               ) < 1e-3  # |cos|: orientation does not matter (samples move a hair)
    nae = normal_angular_error(bumpy_spot, spot, n=N)
    nc = normal_consistency(bumpy_spot, spot, n=N)
    assert 2.0 < nae < 60.0 and nae > normal_angular_error(spot, spot, n=N) + 1.0
    # Eq. 12 averages two angles; the official code's second term is a raw cosine. On two
    # slightly different shapes the two formulas disagree, so the bug would be caught.
    from app.metrics import _match_surfaces, _normalised_pair

    match = _match_surfaces(*_normalised_pair(bumpy_spot, spot), N, 0)
    buggy = 0.5 * (float(np.degrees(np.arccos(match.cos_pred_to_ref)).mean())
                   + float(match.cos_ref_to_pred.mean()))
    assert abs(buggy - nae) > 1.0
    assert evaluate_meshes(bumpy_spot, spot, n=N)["normal_angle_deg"] == pytest.approx(nae)
    assert nc < 1.0
