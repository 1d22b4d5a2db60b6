"""Bad-input fuzzing of every loader, for a bounded time (hypothesis, derandomised).

Each test starts from small valid files generated here (meshes, images, Blender/instant-ngp
transforms, tiny-NeRF and NeuS archives, scene files, checkpoints and runs written by the
project's own save functions, populations, shape sets, EXR and RGBE pictures) and feeds the
loader structured corruptions of them (see :mod:`tests.fuzz.fuzzing`) plus random bytes, empty
files, missing files and directories where files belong. The property: the loader either
returns something sane or raises the project's own error type, whose message names the file.
Any other exception (``ValueError``, ``KeyError``, ``struct.error``, ``UnicodeDecodeError``,
``RuntimeError`` from torch/safetensors, …) fails the test and is a loader bug.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch
import trimesh
from hypothesis import given
from hypothesis import strategies as st
from safetensors.torch import load as st_load

from app.checkpoint import Checkpoint, load_checkpoint, load_latest, save_checkpoint
from app.errors import CheckpointError, FieldsAppError
from app.run import Run, load_run, train
from app.scene_file import load_scene
from datasets.errors import DataError
from datasets.images import load_image
from datasets.meshes import load_mesh
from datasets.multiview import (
    MultiViewDataset,
    load_blender,
    load_multiview,
    load_neus_dtu,
    load_ngp_transforms,
    load_tiny_nerf,
)
from datasets.population import PopulationData, build_population, load_population
from datasets.procshapes import (
    MeshSamples,
    load_image_folder,
    load_mesh_folder,
    load_shape_set,
    make_discs,
    make_primitives_3d,
    make_procshapes_2d,
)
from renderer.envmap import EnvironmentMap, EnvMapError, read_hdr, write_hdr
from renderer.exr import ExrError, read_exr, read_exr_channels, write_exr
from tests.conftest import tiny_sdf_config
from tests.fuzz.fuzzing import (
    COUNTS,
    LOADED,
    apply_blob,
    apply_byte_ops,
    apply_csv_file,
    apply_doc_ops,
    apply_json_file,
    apply_npz_file,
    apply_safetensors_file,
    assert_names,
    blob,
    byte_op,
    csv_file,
    doc_op,
    dump_json,
    dump_toml,
    fuzz_settings,
    json_file,
    npz_file,
    safetensors_file,
    small_nasty_value,
    some,
)

# Junk input makes loaders warn (DataWarning, numpy overflow, trimesh, imageio); not failures.
pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@contextmanager
def example_dir(scratch: Path) -> Iterator[Path]:
    """A fresh folder for one example, removed afterwards."""
    d = Path(tempfile.mkdtemp(dir=scratch))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


tree_op = st.tuples(st.sampled_from(["remove", "dir"]), st.integers(0, 1 << 16))
"""Remove one of a layout's files, or put a directory in its place."""
tree_edits = st.one_of(st.just([]), st.just([]), st.just([]), st.lists(tree_op, max_size=1))


def write_tree(root: Path, files: dict[str, bytes], ops: list[tuple[str, int]] = ()) -> None:
    """Write ``{relative path: bytes}`` under ``root``, then apply :data:`tree_op` edits."""
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    names = sorted(files)
    for kind, sel in ops:
        p = root / names[sel % len(names)]
        if p.is_file():
            p.unlink()
        if kind == "dir":
            p.mkdir(parents=True, exist_ok=True)


def finite(t: torch.Tensor | np.ndarray) -> bool:
    return bool(np.isfinite(np.asarray(t, dtype=np.float64)).all())


# ------------------------------------------------------------------------------ valid inputs


def _png(arr: np.ndarray, ext: str = ".png") -> bytes:
    return iio.imwrite("<bytes>", arr, extension=ext)


def _file_bytes(write, suffix: str) -> bytes:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / f"f{suffix}"
        write(p)
        return p.read_bytes()


@cache
def mesh_bases() -> dict[str, tuple[str, bytes]]:
    """A small closed box in every supported format: ``{label: (suffix, bytes)}``."""
    from trimesh.exchange.gltf import export_gltf

    box = trimesh.creation.box(extents=(1.0, 0.6, 0.4))

    def enc(data: str | bytes) -> bytes:
        return data.encode() if isinstance(data, str) else data

    return {
        "obj": (".obj", enc(box.export(file_type="obj"))),
        "ply": (".ply", enc(box.export(file_type="ply"))),
        "ply-ascii": (".ply", enc(box.export(file_type="ply", encoding="ascii"))),
        "off": (".off", enc(box.export(file_type="off"))),
        "stl": (".stl", enc(box.export(file_type="stl"))),
        "stl-ascii": (".stl", enc(box.export(file_type="stl_ascii"))),
        "glb": (".glb", enc(box.export(file_type="glb"))),
        "gltf": (".gltf", export_gltf(trimesh.Scene(box), embed_buffers=True)["model.gltf"]),
    }


@cache
def image_bases() -> dict[str, tuple[str, bytes]]:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (5, 4, 3), dtype=np.uint8)
    rgba = rng.integers(0, 256, (5, 4, 4), dtype=np.uint8)
    grey16 = rng.integers(0, 65536, (5, 4), dtype=np.uint16)
    hdr = rng.uniform(0.0, 2.0, (3, 9, 3)).astype(np.float32)
    return {
        "png-rgb": (".png", _png(rgb)),
        "png-rgba": (".png", _png(rgba)),
        "png-grey": (".png", _png(rgb[..., 0])),
        "png-grey16": (".png", _png(grey16)),
        "jpg": (".jpg", _png(rgb, ".jpg")),
        "bmp": (".bmp", _png(rgb, ".bmp")),
        "tif": (".tif", _png(rgb, ".tif")),
        "hdr": (".hdr", _file_bytes(lambda p: write_hdr(p, hdr), ".hdr")),
        "exr": (".exr", _file_bytes(lambda p: write_exr(p, hdr), ".exr")),
    }


def _rot_y(deg: float) -> np.ndarray:
    a = math.radians(deg)
    return np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])


def _pose(deg: float, radius: float = 4.0) -> np.ndarray:
    """OpenGL camera-to-world on a circle around the origin, looking at it."""
    c2w = np.eye(4)
    c2w[:3, :3] = _rot_y(deg)
    c2w[:3, 3] = _rot_y(deg) @ np.array([0.0, 0.0, radius])
    return c2w


@cache
def view_images() -> list[bytes]:
    rng = np.random.default_rng(1)
    return [_png(rng.integers(0, 256, (6, 6, 4), dtype=np.uint8)) for _ in range(2)]


@cache
def blender_base() -> tuple[dict, dict[str, bytes]]:
    doc = {
        "camera_angle_x": 0.69,
        "frames": [
            {"file_path": f"./train/r_{i}", "rotation": 0.1,
             "transform_matrix": _pose(40 * i).tolist()}
            for i in range(2)
        ],
    }
    return doc, {f"train/r_{i}.png": img for i, img in enumerate(view_images())}


@cache
def ngp_base() -> tuple[dict, dict[str, bytes]]:
    doc = {
        "fl_x": 5.0, "fl_y": 5.5, "cx": 3.0, "cy": 3.1, "w": 6, "h": 6, "camera_angle_x": 0.9,
        "k1": 0.01, "k2": 0.0, "p1": 0.001, "p2": 0.0, "aabb_scale": 4, "scale": 0.33,
        "offset": [0.5, 0.5, 0.5],
        "frames": [
            {"file_path": "images/0.png", "transform_matrix": _pose(0).tolist()},
            {"file_path": "images/1", "transform_matrix": _pose(50).tolist(), "fl_x": 5.2},
        ],
    }
    return doc, {f"images/{i}.png": img for i, img in enumerate(view_images())}


@cache
def tiny_nerf_base() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(2)
    return {
        "images": rng.uniform(0, 1, (3, 4, 4, 3)).astype(np.float32),
        "poses": np.stack([_pose(30 * i) for i in range(3)]).astype(np.float32),
        "focal": np.array(5.0),
    }


def _world_mat(deg: float) -> np.ndarray:
    """A NeuS ``world_mat`` (``K [R | t]`` in OpenCV, 4×4) of :func:`_pose`'s camera."""
    c2w_cv = _pose(deg) @ np.diag([1.0, -1.0, -1.0, 1.0])
    k = np.eye(4)
    k[:3, :3] = [[6.0, 0.0, 2.9], [0.0, 6.2, 3.1], [0.0, 0.0, 1.0]]
    return k @ np.linalg.inv(c2w_cv)


@cache
def neus_base() -> tuple[dict[str, np.ndarray], dict[str, bytes]]:
    cams = {}
    for i in range(2):
        cams[f"world_mat_{i}"] = _world_mat(60 * i)
        cams[f"scale_mat_{i}"] = np.diag([1.5, 1.5, 1.5, 1.0])
    rng = np.random.default_rng(3)
    files = {f"image/{i:03d}.png": img for i, img in enumerate(view_images())}
    for i in range(2):
        files[f"mask/{i:03d}.png"] = _png((rng.uniform(0, 1, (6, 6)) > 0.5).astype(np.uint8) * 255)
    return cams, files


def check_dataset(ds: object) -> None:
    assert isinstance(ds, MultiViewDataset)
    assert len(ds) >= 1 and ds.width >= 1 and ds.height >= 1
    assert finite(ds.images) and float(ds.images.min()) >= 0 and float(ds.images.max()) <= 1
    for t in (ds.c2w, ds.fx, ds.fy, ds.cx, ds.cy, ds.aabb):
        assert finite(t), "non-finite camera data"
    assert bool((ds.fx > 0).all()) and bool((ds.fy > 0).all()), "non-positive focal length"
    assert math.isfinite(ds.near) and math.isfinite(ds.far) and 0 <= ds.near < ds.far


# ------------------------------------------------------------------------------------ meshes

_MESH_KINDS = sorted(mesh_bases())
_MESH_SUFFIXES = (".obj", ".ply", ".off", ".stl", ".glb", ".gltf", ".txt", "")


@fuzz_settings(260)
@given(
    kind=st.sampled_from(_MESH_KINDS),
    spec=blob,
    suffix=st.one_of(st.none(), st.none(), st.none(), st.sampled_from(_MESH_SUFFIXES)),
    layout=st.sampled_from(["file"] * 12 + ["dir", "missing"]),
)
def test_load_mesh(scratch, kind, spec, suffix, layout):
    COUNTS["load_mesh"] += 1
    base_suffix, base = mesh_bases()[kind]
    with example_dir(scratch) as d:
        p = d / f"mesh{base_suffix if suffix is None else suffix}"
        if layout == "file":
            p.write_bytes(apply_blob(base, spec))
        elif layout == "dir":
            p.mkdir()
        try:
            mesh = load_mesh(p)
        except DataError as exc:
            assert_names(exc, d)
            return
        LOADED["load_mesh"] += 1
        assert isinstance(mesh, trimesh.Trimesh) and len(mesh.faces) > 0
        assert finite(mesh.vertices)


# ------------------------------------------------------------------------------------ images

_IMAGE_KINDS = sorted(image_bases())


@fuzz_settings(220)
@given(
    kind=st.sampled_from(_IMAGE_KINDS),
    spec=blob,
    suffix=st.one_of(st.none(), st.none(), st.none(), st.sampled_from([".png", ".jpg", ".exr"])),
    max_side=st.sampled_from([None, None, 1, 2, 3]),
    layout=st.sampled_from(["file"] * 12 + ["dir", "missing"]),
)
def test_load_image(scratch, kind, spec, suffix, max_side, layout):
    COUNTS["load_image"] += 1
    base_suffix, base = image_bases()[kind]
    with example_dir(scratch) as d:
        p = d / f"img{base_suffix if suffix is None else suffix}"
        if layout == "file":
            p.write_bytes(apply_blob(base, spec))
        elif layout == "dir":
            p.mkdir()
        try:
            img = load_image(p, max_side=max_side)
        except DataError as exc:
            assert_names(exc, d)
            return
        LOADED["load_image"] += 1
        assert img.dtype == torch.float32 and img.ndim == 3 and img.shape[2] in (1, 3)
        assert img.shape[0] >= 1 and img.shape[1] >= 1
        assert finite(img) and float(img.min()) >= 0 and float(img.max()) <= 1


# ------------------------------------------------------------------------- Blender / ngp JSON

image_edits = st.lists(st.one_of(st.none(), st.none(), st.none(), blob), min_size=2, max_size=2)


def _edit_images(files: dict[str, bytes], edits: list) -> dict[str, bytes]:
    out = dict(files)
    for (name, data), spec in zip(sorted(files.items()), edits):
        if spec is not None:
            out[name] = apply_blob(data, spec)
    return out


@fuzz_settings(220)
@given(
    doc=json_file,
    images=image_edits,
    tree=tree_edits,
    downscale=st.sampled_from([1, 1, 2, 4]),
    entry=st.sampled_from(["blender-dir", "blender-json", "multiview"]),
    split=st.sampled_from(["train", "train", "train", "test"]),
)
def test_blender_transforms(scratch, doc, images, tree, downscale, entry, split):
    COUNTS["load_blender"] += 1
    meta, files = blender_base()
    files = _edit_images(files, images)
    files["transforms_train.json"] = apply_json_file(meta, doc)
    with example_dir(scratch) as d:
        write_tree(d, files, tree)
        try:
            if entry == "blender-dir":
                ds = load_blender(d, split, downscale=downscale)
            elif entry == "blender-json":
                ds = load_blender(d / "transforms_train.json", downscale=downscale)
            else:
                ds = load_multiview(d, split, downscale=downscale)
        except DataError as exc:
            assert_names(exc, d)
            return
        LOADED["load_blender"] += 1
        check_dataset(ds)


@fuzz_settings(200)
@given(
    doc=json_file,
    images=image_edits,
    tree=tree_edits,
    downscale=st.sampled_from([1, 1, 2, 4]),
    entry=st.sampled_from(["ngp", "multiview"]),
)
def test_ngp_transforms(scratch, doc, images, tree, downscale, entry):
    COUNTS["load_ngp_transforms"] += 1
    meta, files = ngp_base()
    files = _edit_images(files, images)
    files["transforms.json"] = apply_json_file(meta, doc)
    with example_dir(scratch) as d:
        write_tree(d, files, tree)
        try:
            if entry == "ngp":
                ds = load_ngp_transforms(d / "transforms.json", downscale=downscale)
            else:
                ds = load_multiview(d / "transforms.json", downscale=downscale)
        except DataError as exc:
            assert_names(exc, d)
            return
        LOADED["load_ngp_transforms"] += 1
        check_dataset(ds)


# ------------------------------------------------------------------------ tiny NeRF and NeuS


@fuzz_settings(220)
@given(
    npz=npz_file,
    split=st.sampled_from(["train", "test", "all"]),
    downscale=st.sampled_from([1, 1, 2]),
    entry=st.sampled_from(["tiny", "multiview"]),
    layout=st.sampled_from(["file"] * 12 + ["dir", "missing"]),
)
def test_tiny_nerf_npz(scratch, npz, split, downscale, entry, layout):
    COUNTS["load_tiny_nerf"] += 1
    with example_dir(scratch) as d:
        p = d / "tiny_nerf.npz"
        if layout == "file":
            p.write_bytes(apply_npz_file(tiny_nerf_base(), npz))
        elif layout == "dir":
            p.mkdir()
        try:
            if entry == "tiny":
                ds = load_tiny_nerf(p, split, holdout=(1, 2), downscale=downscale)
            else:
                ds = load_multiview(p, split, downscale=downscale)
        except DataError as exc:
            assert_names(exc, d)
            return
        LOADED["load_tiny_nerf"] += 1
        check_dataset(ds)


@fuzz_settings(220)
@given(
    npz=npz_file,
    images=st.lists(st.one_of(st.none(), st.none(), st.none(), st.none(), blob), min_size=4,
                    max_size=4),
    tree=tree_edits,
    downscale=st.sampled_from([1, 1, 2]),
    entry=st.sampled_from(["neus", "multiview", "multiview-npz"]),
)
def test_neus_cameras(scratch, npz, images, tree, downscale, entry):
    COUNTS["load_neus_dtu"] += 1
    cams, files = neus_base()
    files = _edit_images(files, images)
    files["cameras_sphere.npz"] = apply_npz_file(cams, npz)
    with example_dir(scratch) as d:
        write_tree(d, files, tree)
        try:
            if entry == "neus":
                ds = load_neus_dtu(d, downscale=downscale)
            elif entry == "multiview":
                ds = load_multiview(d, downscale=downscale)
            else:
                ds = load_multiview(d / "cameras_sphere.npz", downscale=downscale)
        except DataError as exc:
            assert_names(exc, d)
            return
        LOADED["load_neus_dtu"] += 1
        check_dataset(ds)
        assert ds.masks is None or ds.masks.shape == ds.images.shape[:3]


# --------------------------------------------------------------------------- runs (shared)


@pytest.fixture(scope="module")
def tiny_run(scratch: Path) -> Path:
    """A run trained for 2 steps by the project's own ``train``."""
    run_dir = scratch / "trained-run"
    train(tiny_sdf_config(steps=2, batch_size=256), run_dir, progress=False, log=lambda m: None)
    return run_dir


@cache
def run_files(run_dir: Path) -> dict[str, bytes]:
    files = sorted(p for p in run_dir.rglob("*") if p.is_file())
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in files}


def _with_sizes(state: object, files: dict[str, bytes], ckpt: str) -> object:
    """``state`` with its ``files`` sizes set to what is on disk (so that the loader goes on to
    parse the mutated safetensors files instead of stopping at the size check)."""
    if isinstance(state, dict) and isinstance(state.get("files"), dict):
        state = dict(state, files=dict(state["files"]))
        for name in state["files"]:
            if isinstance(name, str) and f"{ckpt}/{name}" in files:
                state["files"][name] = len(files[f"{ckpt}/{name}"])
    return state


def _edit_checkpoint(
    files: dict[str, bytes], ckpt: str, state_spec, weights_spec, opt_spec, fix_sizes: bool
) -> dict[str, bytes]:
    files = dict(files)
    for name, spec in (("weights.safetensors", weights_spec), ("optimizer.safetensors", opt_spec)):
        if spec is not None:
            key = f"{ckpt}/{name}"
            files[key] = apply_safetensors_file(st_load(files[key]), spec)
    state = json.loads(files[f"{ckpt}/state.json"])
    ops, byte_ops = state_spec if state_spec is not None else ([], None)
    state = apply_doc_ops(state, ops)
    if fix_sizes:
        state = _with_sizes(state, files, ckpt)
    data = dump_json(state)
    files[f"{ckpt}/state.json"] = apply_byte_ops(data, byte_ops) if byte_ops else data
    return files


maybe_json = st.one_of(st.none(), json_file)
maybe_tensors = st.one_of(st.none(), st.none(), safetensors_file)
latest_text = st.one_of(
    st.none(),
    st.none(),
    st.sampled_from([b"", b"step-0000007", b"step-0000003\n", b"..", b"/", b"\x00", b"\xff\xfe",
                     b"step-0000007\n\n\n", b"nonexistent", b"../checkpoints/step-0000007"]),
    st.binary(max_size=20),
)


# ------------------------------------------------------------------------------- checkpoints


@cache
def checkpoint_base() -> dict[str, bytes]:
    """A checkpoint of a tiny MLP and its Adam state, written by ``save_checkpoint``."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model(torch.randn(8, 3)).pow(2).mean().backward()
    opt.step()
    meta = {"normalization": {"center": [0.0, 0.1, 0.2], "scale": 1.5}, "source_path": "a.obj"}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        save_checkpoint(root, 3, model, opt, meta, trainer={"elapsed_s": 1.0}, keep=5)
        save_checkpoint(root, 7, model, opt, meta, trainer={"elapsed_s": 2.0}, keep=5)
        return {
            str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
        }


def check_checkpoint(ckpt: object) -> None:
    assert isinstance(ckpt, Checkpoint)
    assert isinstance(ckpt.step, int) and isinstance(ckpt.meta, dict)
    assert isinstance(ckpt.trainer, dict) and isinstance(ckpt.weights, dict)
    assert all(isinstance(k, str) and torch.is_tensor(v) for k, v in ckpt.weights.items())
    if ckpt.optimizer is not None:
        assert isinstance(ckpt.optimizer["state"], dict)
        assert isinstance(ckpt.optimizer["param_groups"], list)
    assert ckpt.rng_state is None or torch.is_tensor(ckpt.rng_state)


@fuzz_settings(300)
@given(
    state=maybe_json,
    weights=maybe_tensors,
    opt=maybe_tensors,
    fix_sizes=st.booleans(),
    latest=latest_text,
    tree=tree_edits,
    which=st.sampled_from(["latest", "latest-fallback", "dir"]),
    older=st.booleans(),
)
def test_checkpoint(scratch, state, weights, opt, fix_sizes, latest, tree, which, older):
    COUNTS["load_checkpoint"] += 1
    ckpt = "checkpoints/step-0000007"
    files = _edit_checkpoint(checkpoint_base(), ckpt, state, weights, opt, fix_sizes)
    if latest is not None:
        files["checkpoints/latest"] = latest
    if not older:
        files = {k: v for k, v in files.items() if "step-0000003" not in k}
    with example_dir(scratch) as d:
        write_tree(d, files, tree)
        try:
            if which == "dir":
                result = load_checkpoint(d / ckpt)
            else:
                result = load_latest(d, fallback=which == "latest-fallback")
        except CheckpointError as exc:
            assert_names(exc, d)
            return
        LOADED["load_checkpoint"] += 1
        check_checkpoint(result)


# ---------------------------------------------------------------------------------- load_run

config_file = st.tuples(
    some(doc_op(small_nasty_value), 3),
    st.one_of(st.none(), st.none(), st.none(), st.lists(byte_op, min_size=1, max_size=2)),
)


@fuzz_settings(160)
@given(
    config=st.one_of(st.none(), config_file),
    state=maybe_json,
    weights=maybe_tensors,
    fix_sizes=st.booleans(),
    latest=st.one_of(st.none(), st.none(), st.none(), latest_text),
    tree=tree_edits,
)
def test_load_run(scratch, tiny_run, config, state, weights, fix_sizes, latest, tree):
    COUNTS["load_run"] += 1
    base = run_files(tiny_run)
    ckpt = next(k.rsplit("/", 1)[0] for k in base if k.endswith("state.json"))
    files = _edit_checkpoint(base, ckpt, state, weights, None, fix_sizes)
    if config is not None:
        files["config.json"] = apply_json_file(json.loads(base["config.json"]), config)
    if latest is not None:
        files["checkpoints/latest"] = latest
    with example_dir(scratch) as d:
        write_tree(d / "run", files, tree)
        try:
            run = load_run(d / "run")
        except FieldsAppError as exc:
            assert_names(exc, d)
            return
        LOADED["load_run"] += 1
        assert isinstance(run, Run) and isinstance(run.step, int)
        assert all(finite(p.detach()) for p in run.task.model.parameters())


# ------------------------------------------------------------------------------- scene files


@cache
def scene_base() -> dict:
    return {
        "background": "white",
        "camera": {"radius": 3.5, "elevation": 20.0, "azimuth": 30.0, "fov": 40.0,
                   "target": [0.0, 0.0, 0.0]},
        "objects": [
            {"shape": "sphere", "radius": 0.3, "translate": [0.8, 0.0, 0.0],
             "rotate": [0.0, 30.0, 0.0], "scale": 1.0, "material": "clay", "name": "ball"},
            {"shape": "box", "size": [0.5, 0.4, 0.3], "material": [0.8, 0.2, 0.2],
             "visible": True},
            {"shape": "torus", "major": 0.5, "minor": 0.15},
        ],
        "lights": [
            {"type": "sun", "direction": [1.0, 1.0, 1.0], "intensity": 1.0,
             "color": [1.0, 1.0, 1.0]},
            {"type": "point", "position": [0.0, 2.0, 0.0], "intensity": 2.0},
            {"type": "environment", "path": "env.hdr", "intensity": 0.5},
            {"type": "ambient", "value": 0.1},
        ],
    }


@fuzz_settings(220)
@given(
    ops=some(doc_op(), 4),
    byte_ops=st.one_of(st.none(), st.none(), st.none(), st.lists(byte_op, min_size=1, max_size=2)),
    fmt=st.sampled_from([".toml", ".json"]),
    env=st.one_of(st.none(), st.none(), st.none(), blob),
    with_run=st.sampled_from([False, False, False, True]),
)
def test_scene_file(scratch, tiny_run, ops, byte_ops, fmt, env, with_run):
    COUNTS["load_scene"] += 1
    doc = scene_base()
    if with_run:
        doc = dict(doc, objects=doc["objects"] + [{"run": "run", "translate": [0.0, 1.0, 0.0]}])
    doc = apply_doc_ops(doc, ops)
    text = dump_json(doc) if fmt == ".json" else dump_toml(doc)
    if byte_ops:
        text = apply_byte_ops(text, byte_ops)
    env_bytes = image_bases()["hdr"][1]
    with example_dir(scratch) as d:
        files = {f"scene{fmt}": text, "env.hdr": apply_blob(env_bytes, env) if env else env_bytes}
        if with_run:
            files.update({f"run/{k}": v for k, v in run_files(tiny_run).items()})
        write_tree(d, files)
        try:
            scene, camera = load_scene(d / f"scene{fmt}")
        except (FieldsAppError, DataError) as exc:
            assert_names(exc, d)
            return
        LOADED["load_scene"] += 1
        assert isinstance(camera, dict) and len(scene.objects) >= 1


# ------------------------------------------------------------------------------- populations


@cache
def population_folder_base() -> tuple[list[list[str]], dict[str, bytes]]:
    meshes = {
        "a.obj": trimesh.creation.box(extents=(1.0, 0.6, 0.4)).export(file_type="obj").encode(),
        "b.ply": trimesh.creation.icosphere(subdivisions=1, radius=0.5).export(file_type="ply"),
        "c.off": trimesh.creation.box(extents=(0.5, 0.5, 0.9)).export(file_type="off").encode(),
    }
    rows = [["file", "subject", "visit", "age", "weight"], ["a.obj", "s1", "0", "30", "70.5"],
            ["b.ply", "s2", "1", "41.5", "80"], ["c.off", "s1", "2", "55", "-1e3"]]
    return rows, meshes


@fuzz_settings(140)
@given(
    csv=csv_file,
    meshes=st.lists(st.one_of(st.none(), st.none(), st.none(), st.none(), blob), min_size=3,
                    max_size=3),
    tree=tree_edits,
)
def test_load_population(scratch, csv, meshes, tree):
    COUNTS["load_population"] += 1
    rows, files = population_folder_base()
    files = dict(files)
    for (name, data), spec in zip(sorted(files.items()), meshes):
        if spec is not None:
            files[name] = apply_blob(data, spec)
    files["covariates.csv"] = apply_csv_file(rows, csv)
    with example_dir(scratch) as d:
        write_tree(d, files, tree)
        try:
            pop = load_population(d, n_surface=8, n_off=8)
        except DataError as exc:
            assert_names(exc, d)
            return
        LOADED["load_population"] += 1
        assert isinstance(pop, PopulationData) and len(pop) >= 2
        assert finite(pop.surface) and finite(pop.covariates) and finite(pop.off_sdf)


@cache
def population_saved_base() -> dict[str, bytes]:
    g = torch.Generator().manual_seed(0)
    pop = build_population(
        surface=torch.rand(3, 4, 3, generator=g), normals=torch.rand(3, 4, 3, generator=g),
        off=torch.rand(3, 5, 3, generator=g), off_sdf=torch.rand(3, 5, generator=g),
        covariates_raw=torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 7.0]]),
        covariate_names=["age", "weight"], subjects=["a", "b", "c"],
        visit=torch.zeros(3, dtype=torch.long), held_out_subjects=["c"],
        parts=torch.zeros(3, 4, dtype=torch.long), meshes=["a.obj", "b.obj", "c.obj"],
        normalization={"center": [0.0, 0.0, 0.0], "scale": 1.0}, meta={"seed": 0},
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = pop.save(Path(tmp) / "pop")
        return {"pop.safetensors": path.read_bytes(),
                "pop.json": path.with_suffix(".json").read_bytes()}


def _sidecar_pair(base: dict[str, bytes], stem: str, sidecar_spec, tensors_spec) -> dict:
    files = dict(base)
    if sidecar_spec is not None:
        files[f"{stem}.json"] = apply_json_file(json.loads(base[f"{stem}.json"]), sidecar_spec)
    if tensors_spec is not None:
        key = f"{stem}.safetensors"
        files[key] = apply_safetensors_file(st_load(base[key]), tensors_spec)
    return files


@fuzz_settings(200)
@given(
    sidecar=maybe_json,
    tensors=st.one_of(st.none(), safetensors_file),
    tree=tree_edits,
)
def test_population_data_load(scratch, sidecar, tensors, tree):
    COUNTS["PopulationData.load"] += 1
    files = _sidecar_pair(population_saved_base(), "pop", sidecar, tensors)
    with example_dir(scratch) as d:
        write_tree(d, files, tree)
        try:
            pop = PopulationData.load(d / "pop")
        except DataError as exc:
            assert_names(exc, d)
            return
        LOADED["PopulationData.load"] += 1
        assert isinstance(pop, PopulationData) and len(pop) >= 1


# -------------------------------------------------------------------------- procedural shapes


@cache
def shape_set_bases() -> dict[str, dict[str, bytes]]:
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, shapes in (("2d", make_procshapes_2d(3, seed=1)), ("discs", make_discs(2)),
                             ("3d", make_primitives_3d(2, seed=1))):
            path = shapes.save(Path(tmp) / name)
            out[name] = {"set.safetensors": path.read_bytes(),
                         "set.json": path.with_suffix(".json").read_bytes()}
    return out


@fuzz_settings(200)
@given(
    kind=st.sampled_from(["2d", "discs", "3d"]),
    sidecar=maybe_json,
    tensors=st.one_of(st.none(), safetensors_file),
    tree=tree_edits,
)
def test_load_shape_set(scratch, kind, sidecar, tensors, tree):
    COUNTS["load_shape_set"] += 1
    files = _sidecar_pair(shape_set_bases()[kind], "set", sidecar, tensors)
    with example_dir(scratch) as d:
        write_tree(d, files, tree)
        try:
            shapes = load_shape_set(d / "set.safetensors")
        except DataError as exc:
            assert_names(exc, d)
            return
        LOADED["load_shape_set"] += 1
        assert len(shapes) == shapes.kind.shape[0] and finite(shapes.params)


@fuzz_settings(160)
@given(
    kinds=st.lists(st.sampled_from(_IMAGE_KINDS), min_size=1, max_size=3),
    specs=st.lists(st.one_of(st.none(), blob), min_size=3, max_size=3),
    res=st.sampled_from([1, 4, 7]),
    channels=st.sampled_from([1, 3]),
    extra=st.booleans(),
)
def test_load_image_folder(scratch, kinds, specs, res, channels, extra):
    COUNTS["load_image_folder"] += 1
    files = {}
    for i, (kind, spec) in enumerate(zip(kinds, specs)):
        suffix, base = image_bases()[kind]
        files[f"{i}{suffix}"] = apply_blob(base, spec) if spec is not None else base
    if extra:
        files["notes.txt"] = b"not an image"
    with example_dir(scratch) as d:
        write_tree(d, files)
        try:
            out = load_image_folder(d, res, channels)
        except DataError as exc:
            assert_names(exc, d)
            return
        LOADED["load_image_folder"] += 1
        assert tuple(out.shape) == (len(kinds), channels, res, res)
        assert finite(out) and float(out.min()) >= 0 and float(out.max()) <= 1


@fuzz_settings(140)
@given(
    kinds=st.lists(st.sampled_from(_MESH_KINDS), min_size=1, max_size=2),
    specs=st.lists(st.one_of(st.none(), blob, blob), min_size=2, max_size=2),
)
def test_load_mesh_folder(scratch, kinds, specs):
    COUNTS["load_mesh_folder"] += 1
    files = {}
    for i, (kind, spec) in enumerate(zip(kinds, specs)):
        suffix, base = mesh_bases()[kind]
        files[f"{i}{suffix}"] = apply_blob(base, spec) if spec is not None else base
    with example_dir(scratch) as d:
        write_tree(d, files)
        try:
            out = load_mesh_folder(d, n_points=8, n_queries=8)
        except DataError as exc:
            assert_names(exc, d)
            return
        LOADED["load_mesh_folder"] += 1
        assert isinstance(out, MeshSamples) and len(out) == len(kinds)
        assert finite(out.points) and finite(out.queries)


# ------------------------------------------------------------------------------ EXR and RGBE


@cache
def exr_bases() -> list[bytes]:
    rng = np.random.default_rng(4)
    out = []
    for (h, w, c), half, comp in (((3, 5, 3), False, "none"), ((3, 5, 4), True, "rle"),
                                  ((2, 3, 3), False, "zips"), ((17, 2, 3), True, "zip")):
        img = rng.uniform(-1.0, 4.0, (h, w, c)).astype(np.float32)
        out.append(_file_bytes(lambda p, img=img, half=half, comp=comp: write_exr(
            p, img, half=half, compression=comp), ".exr"))
    return out


@fuzz_settings(300)
@given(index=st.integers(0, 3), spec=blob, channels=st.booleans())
def test_read_exr(scratch, index, spec, channels):
    COUNTS["read_exr"] += 1
    with example_dir(scratch) as d:
        p = d / "image.exr"
        p.write_bytes(apply_blob(exr_bases()[index], spec))
        try:
            out = read_exr_channels(p) if channels else {"rgb": read_exr(p)}
        except ExrError as exc:
            assert_names(exc, d)
            return
        LOADED["read_exr"] += 1
        shapes = {a.shape[:2] for a in out.values()}
        assert out and len(shapes) == 1 and all(a.dtype == np.float32 for a in out.values())


@cache
def hdr_bases() -> list[bytes]:
    rng = np.random.default_rng(5)
    imgs = [rng.uniform(0, 3, shape) for shape in ((2, 9, 3), (3, 4, 3), (2, 9, 3))]
    return [_file_bytes(lambda p, im=im, rle=rle: write_hdr(p, im.astype(np.float32), rle=rle),
                        ".hdr") for im, rle in zip(imgs, (True, True, False))]


@fuzz_settings(300)
@given(index=st.integers(0, 2), spec=blob)
def test_read_hdr(scratch, index, spec):
    COUNTS["read_hdr"] += 1
    with example_dir(scratch) as d:
        p = d / "sky.hdr"
        p.write_bytes(apply_blob(hdr_bases()[index], spec))
        try:
            img = read_hdr(p)
        except EnvMapError as exc:
            assert_names(exc, d)
            return
        LOADED["read_hdr"] += 1
        assert img.dtype == np.float32 and img.ndim == 3 and img.shape[2] == 3
        assert finite(img) and float(img.min()) >= 0


@fuzz_settings(200)
@given(
    kind=st.sampled_from(["hdr", "exr", "png-rgb", "png-grey16", "png-rgba", "jpg"]),
    spec=blob,
    suffix=st.one_of(st.none(), st.none(), st.none(), st.sampled_from([".hdr", ".exr", ".png"])),
)
def test_environment_map_from_file(scratch, kind, spec, suffix):
    COUNTS["EnvironmentMap.from_file"] += 1
    base_suffix, base = image_bases()[kind]
    with example_dir(scratch) as d:
        p = d / f"env{base_suffix if suffix is None else suffix}"
        p.write_bytes(apply_blob(base, spec))
        try:
            env = EnvironmentMap.from_file(p)
        except EnvMapError as exc:
            assert_names(exc, d)
            return
        LOADED["EnvironmentMap.from_file"] += 1
        assert isinstance(env, EnvironmentMap) and finite(env.radiance)
