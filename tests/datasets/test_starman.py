"""Star-man populations (exact SDF, one covariate → one part) and the user-population loader.

The closed-form checks re-derive the figure from the documented recipe (not from the class's
internals): torso (0, 0.25)→(0, −0.2), head at (0, 0.45), arms of length 0.4 from (0, 0.2) at
200° − 60°·c1 and −20° + 60°·c2, legs from (0, −0.2) to (∓(0.2 + 0.12·c3), −0.7), all scaled
by ``s`` about (0, −0.1).
"""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh

from datasets.errors import DataError, DataWarning
from datasets.meshes import Normalization
from datasets.population import PopulationData, build_population, load_population
from datasets.starman import (
    COVARIATE_NAMES,
    PARTS,
    StarmanFactors,
    StarmanPopulation,
    StarmanShape,
    make_starman,
    sample_shape,
)

MOVED = {0: [2], 1: [3], 2: [4, 5]}  # covariate index → the parts it moves


# ------------------------------------------------------------------------------------------------
# Reference geometry, re-derived from the documented recipe in float64 numpy.


def reference_capsules(c, f: StarmanFactors, dim: int, tilt_deg: float):
    tilt = math.radians(tilt_deg)

    def arm(deg):
        t = math.radians(deg)
        return (0.4 * math.cos(t) * math.cos(tilt), 0.2 + 0.4 * math.sin(t) * math.cos(tilt),
                0.4 * math.sin(tilt))

    spread = 0.2 + 0.12 * c[2]
    r = 0.05 * f.thickness
    caps = [
        ((0, 0.25, 0), (0, -0.2, 0), r),
        ((0, 0.45, 0), (0, 0.45, 0), f.head_radius),
        ((0, 0.2, 0), arm(200 - 60 * c[0]), r),
        ((0, 0.2, 0), arm(-20 + 60 * c[1]), r),
        ((0, -0.2, 0), (-spread, -0.7, 0), r),
        ((0, -0.2, 0), (spread, -0.7, 0), r),
    ]
    centre = np.array([0.0, -0.1, 0.0])[:dim]
    out = []
    for a, b, rad in caps:
        a = centre + f.scale * (np.array(a, float)[:dim] - centre)
        b = centre + f.scale * (np.array(b, float)[:dim] - centre)
        out.append((a, b, f.scale * rad))
    return out


def reference_sdf(p: np.ndarray, caps) -> np.ndarray:
    dists = []
    for a, b, r in caps:
        ba = b - a
        denom = max(float(ba @ ba), 1e-30)
        t = np.clip((p - a) @ ba / denom, 0.0, 1.0)
        dists.append(np.linalg.norm(p - a - t[:, None] * ba, axis=1) - r)
    return np.min(dists, axis=0)


def random_shape(rng: np.random.Generator, dim: int) -> StarmanShape:
    return StarmanShape(rng.uniform(-1, 1, 3), StarmanFactors.sample(rng), dim=dim)


@pytest.fixture(scope="module")
def pop2() -> PopulationData:
    return make_starman(dim=2, n_subjects=8, n_visits=3, n_surface=128, n_off=64, seed=1,
                        held_out_subjects=0.25)


# ------------------------------------------------------------------------------------------------
# Exact SDF


@pytest.mark.parametrize("dim", [2, 3])
def test_head_centre_is_minus_head_radius(dim):
    rng = np.random.default_rng(dim)
    for _ in range(5):
        shape = random_shape(rng, dim)
        f = shape.factors
        centre = torch.zeros(1, dim, dtype=torch.float64)
        centre[0, :2] = torch.tensor([0.0, -0.1 + f.scale * 0.55], dtype=torch.float64)
        assert torch.allclose(shape.head_center, centre[0], atol=1e-15)
        expected = -f.head_radius * f.scale
        assert shape.head_radius == pytest.approx(-expected, abs=1e-15)
        assert float(shape.sdf(centre)[0]) == pytest.approx(expected, abs=1e-12)
        assert PARTS[int(shape.part_labels(centre)[0])] == "head"


def test_far_point_below_the_right_foot_is_closed_form():
    c, f = (0.3, -0.4, 0.7), StarmanFactors(thickness=1.1, head_radius=0.1, scale=1.05)
    shape = StarmanShape(c, f, dim=2)
    foot_x = f.scale * (0.2 + 0.12 * c[2])
    foot_y = -0.1 + f.scale * (-0.7 + 0.1)
    p = torch.tensor([[foot_x, -0.98]], dtype=torch.float64)
    assert float(shape.sdf(p)[0]) == pytest.approx((foot_y + 0.98) - 0.05 * 1.1 * f.scale,
                                                   abs=1e-12)
    assert PARTS[int(shape.part_labels(p)[0])] == "right_leg"


@pytest.mark.parametrize("dim", [2, 3])
def test_sdf_matches_reference_capsules(dim):
    rng = np.random.default_rng(10 + dim)
    for _ in range(4):
        shape = random_shape(rng, dim)
        caps = reference_capsules(shape.covariates, shape.factors, dim, shape.arm_tilt_deg)
        p = rng.uniform(-1, 1, (2000, dim))
        ours = shape.sdf(torch.from_numpy(p)).numpy()
        np.testing.assert_allclose(ours, reference_sdf(p, caps), atol=1e-12)
        far = np.abs(ours) > 0.3  # far from the figure: the exact distance to the union
        assert far.sum() > 200
    if dim == 3:  # genuinely 3-D: the tilted arms leave the z = 0 plane (no z-mirror symmetry)
        q = torch.from_numpy(p)
        mirrored = shape.sdf(q * torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64))
        assert float((shape.sdf(q) - mirrored).abs().max()) > 0.05


def test_all_within_unit_box_for_extreme_factors():
    for c in ([-1, -1, -1], [1, 1, 1], [1, -1, 1]):
        big = StarmanFactors(thickness=1.2, head_radius=0.14, scale=1.1)
        for dim in (2, 3):
            lo, hi = StarmanShape(c, big, dim=dim).bounds()
            assert float(lo.min()) > -0.95 and float(hi.max()) < 0.95


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("k", [0, 1, 2])
def test_each_covariate_moves_only_its_part(dim, k):
    rng = np.random.default_rng(100 * dim + k)
    moved = MOVED[k]
    others = [i for i in range(len(PARTS)) if i not in moved]
    p = torch.from_numpy(rng.uniform(-1, 1, (20000, dim)).astype(np.float32))
    for _ in range(5):
        c = rng.uniform(-1, 1, 3)
        c2 = c.copy()
        c2[k] = rng.uniform(-1, 1)
        f = StarmanFactors.sample(rng)
        a, b = StarmanShape(c, f, dim=dim), StarmanShape(c2, f, dim=dim)
        pa, pb = a.part_sdf(p), b.part_sdf(p)
        assert torch.equal(pa[:, others], pb[:, others])  # the other parts do not move at all
        la, lb = a.part_labels(p), b.part_labels(p)
        far = (pa[:, moved].min(-1).values > 0.15) & (pb[:, moved].min(-1).values > 0.15)
        keep = far & ~torch.isin(la, torch.tensor(moved)) & ~torch.isin(lb, torch.tensor(moved))
        assert keep.sum() > 10000
        assert torch.equal(a.sdf(p)[keep], b.sdf(p)[keep])  # bitwise
        changed = a.sdf(p) != b.sdf(p)
        assert changed.sum() > 20  # the covariate does move its part...
        near = torch.isin(la, torch.tensor(moved)) | torch.isin(lb, torch.tensor(moved))
        assert bool(near[changed].all())  # ...and only where that part is the nearest
        assert a.head_radius == b.head_radius


def test_part_labels_at_landmarks():
    shape = StarmanShape((0.0, 0.0, 0.0), dim=2)
    pts = torch.tensor([[0.0, 0.0], [0.0, 0.45], [-0.37, 0.06], [0.37, 0.06], [-0.18, -0.65],
                        [0.18, -0.65]])
    assert shape.part_labels(pts).tolist() == [0, 1, 2, 3, 4, 5]
    assert PARTS == ("torso", "head", "left_arm", "right_arm", "left_leg", "right_leg")


def test_normals_autograd_match_analytic_and_finite_differences():
    rng = np.random.default_rng(7)
    shape = random_shape(rng, 3)
    p = torch.from_numpy(rng.uniform(-1, 1, (500, 3)))
    n = shape.normals(p)
    _, g = shape.sdf_and_grad(p)
    torch.testing.assert_close(n, g, atol=1e-12, rtol=0)
    eps = 1e-6
    fd = torch.stack([(shape.sdf(p + eps * e) - shape.sdf(p - eps * e)) / (2 * eps)
                      for e in torch.eye(3, dtype=torch.float64)], dim=-1)
    assert float((fd - n).norm(dim=-1).median()) < 1e-6


def test_polylines_lie_on_the_zero_level_set():
    shape = StarmanShape((0.2, 0.5, -0.3), dim=2)
    lines = shape.to_polylines(resolution=200)
    assert lines and all(line.shape[1] == 2 for line in lines)
    pts = torch.from_numpy(np.concatenate(lines))
    h = float((shape.bounds(0.05)[1] - shape.bounds(0.05)[0]).max()) / 199
    assert float(shape.sdf(pts).abs().max()) < h


# ------------------------------------------------------------------------------------------------
# Samples


@pytest.mark.parametrize("dim", [2, 3])
def test_sample_shape_surface_normals_off(dim):
    rng = np.random.default_rng(20 + dim)
    shape = random_shape(rng, dim)
    s = sample_shape(shape, n_surface=512, n_off=256, seed=3)
    assert s["surface"].shape == (512, dim) and s["surface"].dtype == torch.float32
    assert s["normals"].shape == (512, dim) and s["off"].shape == (256, dim)
    assert s["off_sdf"].shape == (256,) and s["parts"].shape == (512,)
    assert float(shape.sdf(s["surface"]).abs().max()) < 1e-5
    assert float(shape.sdf(s["surface"].double()).abs().max()) < 1e-5
    torch.testing.assert_close(s["normals"].norm(dim=-1), torch.ones(512), atol=1e-5, rtol=0)
    # Outward: stepping along the normal leaves the figure at unit rate.
    # (A few points near a joint step into the neighbouring limb.)
    step = shape.sdf((s["surface"] + 0.005 * s["normals"]).double())
    assert float((step - 0.005).abs().median()) < 1e-6 and float((step > 0).double().mean()) > 0.97
    assert torch.equal(s["parts"], shape.part_labels(s["surface"]))
    assert set(s["parts"].tolist()) == set(range(len(PARTS)))
    assert float(s["off"].abs().max()) <= 1.0
    torch.testing.assert_close(s["off_sdf"], shape.sdf(s["off"].double()).float())
    again = sample_shape(shape, n_surface=512, n_off=256, seed=3)
    assert all(torch.equal(s[key], again[key]) for key in s)


def test_surface_samples_are_roughly_area_uniform():
    # The six parts of the mean 2-D figure: share of surface points ≈ share of perimeter.
    shape = StarmanShape((0.0, 0.0, 0.0), dim=2)
    s = sample_shape(shape, n_surface=20000, n_off=1, seed=0)
    lines = shape.to_polylines(resolution=800)
    pts = torch.from_numpy(np.concatenate([ln[:-1] for ln in lines]))
    seg = np.concatenate([np.linalg.norm(np.diff(ln, axis=0), axis=1) for ln in lines])
    labels = shape.part_labels(pts).numpy()
    perimeter = np.bincount(labels, weights=seg, minlength=6) / seg.sum()
    counts = np.bincount(s["parts"].numpy(), minlength=6) / 20000
    np.testing.assert_allclose(counts, perimeter, atol=0.02)


# ------------------------------------------------------------------------------------------------
# Population: split, scaling, determinism, persistence


def test_population_layout(pop2):
    s = 8 * 3
    assert pop2.surface.shape == (s, 128, 2) and pop2.off_sdf.shape == (s, 64)
    assert pop2.covariate_names == list(COVARIATE_NAMES)
    assert pop2.parts.shape == (s, 128) and pop2.factors.shape == (s, 3)
    assert pop2.visit.tolist() == [0, 1, 2] * 8
    # Factors are fixed per subject, covariates differ per visit.
    for k in range(8):
        rows = pop2.subject == k
        assert bool((pop2.factors[rows] == pop2.factors[rows][0]).all())
        assert len(torch.unique(pop2.covariates_raw[rows, 0])) == 3
    gen = StarmanPopulation(dim=2, n_subjects=8, n_visits=3, seed=1)
    expected = torch.tensor([f.as_tuple() for f in gen.factors()], dtype=torch.float32)
    assert torch.equal(pop2.factors[::3], expected)
    shapes = gen.shapes()
    assert len(shapes) == 24 and shapes[4].covariates == tuple(gen.covariates()[1, 1])
    torch.testing.assert_close(pop2.covariates_raw[4], torch.tensor(shapes[4].covariates).float())
    assert float(pop2.covariates_raw.abs().max()) <= 1.0


def test_split_is_by_subject(pop2):
    train_subj = set(pop2.subject[pop2.train_index].tolist())
    test_subj = set(pop2.subject[pop2.test_index].tolist())
    assert not train_subj & test_subj and len(test_subj) == 2  # 0.25 of 8 subjects
    for k in test_subj:
        assert set(torch.nonzero(pop2.subject == k).flatten().tolist()) <= set(
            pop2.test_index.tolist())
    assert sorted(pop2.train_index.tolist() + pop2.test_index.tolist()) == list(range(24))
    explicit = make_starman(n_subjects=4, n_visits=2, n_surface=8, n_off=8,
                            held_out_subjects=["subject_001", 3])
    assert explicit.test_index.tolist() == [2, 3, 6, 7]
    with pytest.raises(ValueError, match="training"):
        make_starman(n_subjects=2, n_visits=1, n_surface=8, n_off=8, held_out_subjects=[0, 1])


def test_scaling_uses_train_min_max_and_does_not_clamp(pop2):
    raw_train = pop2.covariates_raw[pop2.train_index]
    assert torch.equal(pop2.cov_min, raw_train.min(0).values)
    assert torch.equal(pop2.cov_max, raw_train.max(0).values)
    train = pop2.covariates[pop2.train_index]
    assert torch.equal(train.min(0).values, -torch.ones(3))
    assert torch.equal(train.max(0).values, torch.ones(3))
    assert torch.equal(pop2.covariates, pop2.scale(pop2.covariates_raw))
    torch.testing.assert_close(pop2.unscale(pop2.covariates), pop2.covariates_raw)
    assert not bool(pop2.out_of_range[pop2.train_index].any())
    assert torch.equal(pop2.out_of_range, pop2.covariates.abs() > 1 + 1e-6)
    # A held-out subject outside the training range keeps its (out-of-range) value.
    pts = torch.zeros(4, 5, 3)
    pop = build_population(
        surface=pts, normals=pts, off=pts, off_sdf=torch.zeros(4, 5),
        covariates_raw=torch.tensor([[20.0, 1.0], [30.0, 2.0], [40.0, 3.0], [60.0, 0.0]]),
        covariate_names=["age", "dose"], subjects=["a", "a", "b", "c"],
        visit=torch.tensor([0, 1, 0, 0]), held_out_subjects=["c"])
    assert pop.cov_min.tolist() == [20.0, 1.0] and pop.cov_max.tolist() == [40.0, 3.0]
    assert pop.covariates[3].tolist() == [3.0, -2.0]
    assert pop.out_of_range.tolist() == [[False, False]] * 3 + [[True, True]]
    assert pop.scale(torch.tensor([30.0, 2.0])).tolist() == [0.0, 0.0]


def test_determinism_by_seed():
    a = make_starman(dim=3, n_subjects=3, n_visits=2, n_surface=64, n_off=32, seed=5)
    b = make_starman(dim=3, n_subjects=3, n_visits=2, n_surface=64, n_off=32, seed=5)
    c = make_starman(dim=3, n_subjects=3, n_visits=2, n_surface=64, n_off=32, seed=6)
    for name in ("surface", "normals", "off", "off_sdf", "covariates_raw", "covariates",
                 "factors", "parts", "train_index", "test_index"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert not torch.equal(a.covariates_raw, c.covariates_raw)
    assert not torch.equal(a.surface, c.surface)
    # Sample counts do not change the shapes themselves.
    d = make_starman(dim=3, n_subjects=3, n_visits=2, n_surface=16, n_off=8, seed=5)
    assert torch.equal(a.covariates_raw, d.covariates_raw) and torch.equal(a.factors, d.factors)


def test_save_load_round_trip(pop2, tmp_path):
    path = pop2.save(tmp_path / "pops" / "starman")
    assert path.name == "starman.safetensors"
    sidecar = json.loads((tmp_path / "pops" / "starman.json").read_text())
    assert sidecar["covariate_names"] == list(COVARIATE_NAMES) and sidecar["dim"] == 2
    header = int.from_bytes(path.read_bytes()[:8], "little")  # safetensors: u64 + JSON header
    assert path.read_bytes()[8:9] == b"{" and header < path.stat().st_size
    back = PopulationData.load(path)
    for name, value in vars(pop2).items():
        other = getattr(back, name)
        if isinstance(value, torch.Tensor):
            assert value.dtype == other.dtype and torch.equal(value, other), name
        else:
            assert value == other, name
    (tmp_path / "pops" / "starman.json").write_text("{not json")
    with pytest.raises(DataError, match=r"starman\.json: not valid JSON"):
        PopulationData.load(path)
    with pytest.raises(DataError, match="nothing.safetensors: file not found"):
        PopulationData.load(tmp_path / "nothing")


@pytest.mark.parametrize("dim", [2, 3])
def test_default_population_layout(dim):
    """The spec's population (20 subjects × 3 visits, 4 held out); the time it takes is printed,
    not asserted (speed is measured in benchmarks, not tests)."""
    t0 = time.perf_counter()
    pop = make_starman(dim=dim)  # 20 subjects × 3 visits, 256 surface + 128 off points
    seconds = time.perf_counter() - t0
    print(f"\nstarman {dim}-D: {len(pop)} shapes × (256 + 128) points in {seconds:.2f} s")
    assert len(pop) == 60 and len(pop.test_index) == 12


# ------------------------------------------------------------------------------------------------
# User populations: a folder of meshes + CSV

GOOD_CSV = "file,subject,visit,age,weight\na.obj,s0,0,30,70\nb.ply,s0,1,35,72\nc.stl,s1,0,50,90\n"
SHAPES = {
    "a.obj": ((-0.5, 0.2, 0.0), StarmanFactors(1.0, 0.12, 0.9)),
    "b.ply": ((0.5, -0.2, 0.6), StarmanFactors(1.0, 0.12, 0.9)),
    "c.stl": ((0.0, 0.8, -0.8), StarmanFactors(1.15, 0.1, 1.1)),
}


@pytest.fixture(scope="module")
def mesh_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("population")
    for name, (c, f) in SHAPES.items():
        StarmanShape(c, f, dim=3).to_mesh(48).export(folder / name)
    (folder / "covariates.csv").write_text(GOOD_CSV)
    return folder


def make_folder(tmp_path: Path, src: Path, csv_text: str | None, files=("a.obj", "b.ply",
                                                                        "c.stl")) -> Path:
    for name in files:
        shutil.copy(src / name, tmp_path / name)
    if csv_text is not None:
        (tmp_path / "covariates.csv").write_text(csv_text)
    return tmp_path


def test_load_population(mesh_folder):
    pop = load_population(mesh_folder, n_surface=256, n_off=512, seed=0,
                          held_out_subjects=["s1"])
    assert pop.dim == 3 and pop.surface.shape == (3, 256, 3) and pop.off_sdf.shape == (3, 512)
    assert pop.covariate_names == ["age", "weight"] and pop.subject_names == ["s0", "s1"]
    assert pop.visit.tolist() == [0, 1, 0] and pop.test_index.tolist() == [2]
    assert pop.cov_min.tolist() == [30.0, 70.0] and pop.cov_max.tolist() == [35.0, 72.0]
    assert pop.covariates[2].tolist() == [7.0, 19.0]  # kept, not clamped
    assert pop.out_of_range[2].all() and [Path(m).name for m in pop.meshes] == list(SHAPES)
    norm = Normalization.from_dict(pop.normalization)
    # One common similarity: mapping back, every shape lies on its own analytic surface (up to
    # marching-cubes error at 48³), so relative sizes survived.
    for i, (c, f) in enumerate(SHAPES.values()):
        shape = StarmanShape(c, f, dim=3)
        world = norm.invert(pop.surface[i].double())
        assert float(shape.sdf(world).abs().max()) < 0.01
        agree = (shape.normals(world) * pop.normals[i].double()).sum(-1)
        assert float(agree.median()) > 0.98
        truth = shape.sdf(norm.invert(pop.off[i].double())) * norm.scale
        outside = truth > 0  # the analytic SDF is exact there (a min of capsules)
        assert float((pop.off_sdf[i] - truth)[outside].abs().max()) < 0.01
        clear = truth.abs() > 0.01
        assert torch.equal(pop.off_sdf[i][clear] > 0, outside[clear])
        assert float(pop.off.abs().max()) <= 1.0
    # The union of the normalised meshes' boxes is centred and spans ±0.95 (padding 0.05).
    verts = np.concatenate([norm.apply(trimesh.load(m, force="mesh").vertices) for m in pop.meshes])
    lo, hi = verts.min(0), verts.max(0)
    np.testing.assert_allclose(lo + hi, 0.0, atol=1e-6)
    assert float(np.max(hi - lo)) == pytest.approx(1.9, abs=1e-6)
    assert float(pop.surface.abs().max()) <= 0.95 + 1e-6


def _error(folder: Path, **kwargs) -> DataError:
    with pytest.raises(DataError) as info:
        load_population(folder, n_surface=16, n_off=16, **kwargs)
    return info.value


def test_loader_missing_csv_and_columns(mesh_folder, tmp_path):
    folder = make_folder(tmp_path, mesh_folder, None)
    err = _error(folder)
    assert err.path == str(folder / "covariates.csv") and "not found" in err.problem
    (folder / "covariates.csv").write_text("name,age\na.obj,3\nb.ply,4\n")
    assert "missing required column 'file'" in _error(folder).problem
    (folder / "covariates.csv").write_text("file,subject,visit\na.obj,a,0\nb.ply,b,0\n")
    assert "no covariate columns" in _error(folder).problem
    (folder / "covariates.csv").write_text("file,age\na.obj,3\nb.ply,4,5\n")
    assert "row 3: expected 2 fields, got 3" in _error(folder).problem


def test_loader_bad_values(mesh_folder, tmp_path):
    folder = make_folder(tmp_path, mesh_folder, "file,age,weight\na.obj,3,4\nb.ply,5,abc\n")
    err = _error(folder)
    assert err.path.endswith("covariates.csv")
    assert "row 3 (file 'b.ply'), column 'weight': 'abc' is not a number" in err.problem
    (folder / "covariates.csv").write_text("file,age\na.obj,nan\nb.ply,5\n")
    assert "row 2 (file 'a.obj'), column 'age'" in _error(folder).problem
    (folder / "covariates.csv").write_text("file,visit,age\na.obj,first,1\nb.ply,1,5\n")
    assert "column 'visit': 'first' is not an integer" in _error(folder).problem


def test_loader_missing_and_unlisted_meshes(mesh_folder, tmp_path):
    folder = make_folder(tmp_path, mesh_folder, "file,age\na.obj,1\nghost.obj,2\nb.ply,3\n")
    with pytest.warns(DataWarning, match="c.stl"):
        err = _error(folder)
    assert err.path == str(folder / "ghost.obj") and "row 3" in err.problem
    (folder / "covariates.csv").write_text("file,age\na.obj,1\nb.ply,3\n")
    with pytest.warns(DataWarning, match=r"1 mesh file\(s\).*no CSV row.*c\.stl"):
        pop = load_population(folder, n_surface=16, n_off=16)
    assert len(pop) == 2


def test_loader_duplicates_and_too_few(mesh_folder, tmp_path):
    folder = make_folder(tmp_path, mesh_folder, "file,age\na.obj,1\nb.ply,2\nc.stl,3\na.obj,4\n")
    assert "row 5 (file 'a.obj'): duplicate row" in _error(folder).problem
    assert "row 2" in _error(folder).problem
    (folder / "covariates.csv").write_text("file,subject,age\na.obj,x,1\nb.ply,x,2\nc.stl,y,3\n")
    err = _error(folder)
    assert "row 3 (file 'b.ply')" in err.problem and "subject 'x' visit 0" in err.problem
    (folder / "covariates.csv").write_text("file,age\na.obj,1\n")
    assert "at least 2 shapes, the CSV lists 1" in _error(folder).problem
    (folder / "covariates.csv").write_text(GOOD_CSV)
    assert "'zz' is not in the population" in _error(folder, held_out_subjects=["zz"]).problem


def test_loader_rejects_open_meshes(mesh_folder, tmp_path):
    folder = make_folder(tmp_path, mesh_folder, GOOD_CSV)
    mesh = trimesh.load(folder / "b.ply", force="mesh")
    trimesh.Trimesh(mesh.vertices, mesh.faces[10:]).export(folder / "b.ply")
    err = _error(folder)
    assert err.path == str(folder / "b.ply")
    assert "row 3" in err.problem and "not watertight" in err.problem
