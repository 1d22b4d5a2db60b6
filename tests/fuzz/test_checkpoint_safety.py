"""A loaded checkpoint never executes code.

Checkpoints are safetensors + JSON (:mod:`app.checkpoint`), arrays in ``.npz`` are read with
``allow_pickle=False`` and populations / shape sets are safetensors + JSON too. These tests plant
pickles whose unpickling writes a marker file — as every file name a checkpoint loader might
look at, and inside ``.npz`` archives — plus safetensors files with mangled headers, and check
that loading raises the project's error and that the marker never appears. A static scan checks
that no loading code calls an unpickler at all.
"""

from __future__ import annotations

import ast
import io
import json
import pickle
import shutil
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from app.checkpoint import load_checkpoint, load_latest, save_checkpoint
from app.errors import CheckpointError, FieldsAppError
from app.run import build_task, load_run, save_run_config
from datasets.errors import DataError
from datasets.multiview import load_neus_dtu, load_tiny_nerf
from datasets.population import PopulationData
from datasets.procshapes import load_shape_set
from tests.conftest import tiny_sdf_config
from tests.fuzz.fuzzing import COUNTS

ROOT = Path(__file__).resolve().parents[2]

# Names that PyTorch / Lightning / HF checkpoints go by; none of them may be unpickled.
PICKLE_NAMES = ("model.pt", "model.pth", "checkpoint.pt", "last.ckpt", "pytorch_model.bin",
                "optimizer.pt", "state.pkl")


class _Payload:
    """Unpickling this runs ``exec`` — here, harmlessly, writing ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('code ran')",))


def _pickles(marker: Path) -> dict[str, bytes]:
    """The payload as raw pickles (protocols 0, 2, 5) and as a ``torch.save`` zip archive."""
    payload = {"state_dict": {"w": _Payload(marker)}}
    out = {f"pickle-{p}": pickle.dumps(payload, protocol=p) for p in (0, 2, 5)}
    buf = io.BytesIO()
    torch.save(payload, buf)
    out["torch.save"] = buf.getvalue()
    return out


def test_payload_would_run_if_unpickled(tmp_path):
    """Positive control: the payloads do run code when something unpickles them."""
    marker = tmp_path / "MARKER"
    for blob in _pickles(marker).values():
        if zipfile.is_zipfile(io.BytesIO(blob)):
            # torch.save's archive: its data.pkl is what a careless torch loader unpickles.
            with zipfile.ZipFile(io.BytesIO(blob)) as z:
                pickle.loads(z.read(next(n for n in z.namelist() if n.endswith("data.pkl"))))
        else:
            pickle.loads(blob)
        assert marker.exists()
        marker.unlink()


@pytest.fixture(scope="module")
def valid_run(tmp_path_factory) -> Path:
    """A run directory (config + one checkpoint) written by the project's own functions."""
    run_dir = tmp_path_factory.mktemp("safety") / "run"
    cfg = tiny_sdf_config()
    save_run_config(cfg, run_dir)
    task = build_task(cfg)
    save_checkpoint(run_dir, 5, task.model, None, task.meta())
    return run_dir


def _fresh_run(valid_run: Path, tmp_path: Path) -> tuple[Path, Path]:
    run = tmp_path / "run"
    shutil.copytree(valid_run, run)
    return run, run / "checkpoints" / "step-0000005"


def _load_everything(run: Path, ckpt: Path) -> list[BaseException]:
    errors = []
    for load in (lambda: load_run(run), lambda: load_latest(run, fallback=True),
                 lambda: load_checkpoint(ckpt)):
        try:
            load()
        except FieldsAppError as exc:
            errors.append(exc)
    return errors


@pytest.mark.parametrize("target", ["weights.safetensors", "optimizer.safetensors", "state.json"])
@pytest.mark.parametrize("kind", ["pickle-0", "pickle-2", "pickle-5", "torch.save"])
@pytest.mark.parametrize("sizes_match", [False, True])
def test_pickle_in_place_of_a_checkpoint_file(valid_run, tmp_path, target, kind, sizes_match):
    COUNTS["safety (crafted)"] += 1
    marker = tmp_path / "MARKER"
    run, ckpt = _fresh_run(valid_run, tmp_path)
    blob = _pickles(marker)[kind]
    (ckpt / target).write_bytes(blob)
    if sizes_match and target != "state.json":  # get past the size check to the parser
        state = json.loads((ckpt / "state.json").read_text())
        state["files"][target] = len(blob)
        (ckpt / "state.json").write_text(json.dumps(state))
    errors = _load_everything(run, ckpt)
    assert len(errors) == 3 and all(isinstance(e, CheckpointError) for e in errors)
    assert all(str(ckpt) in str(e) for e in errors), errors
    assert not marker.exists(), "loading a checkpoint executed code"


@pytest.mark.parametrize("name", PICKLE_NAMES)
def test_pickle_checkpoints_are_never_looked_at(valid_run, tmp_path, name):
    COUNTS["safety (crafted)"] += 1
    marker = tmp_path / "MARKER"
    run, ckpt = _fresh_run(valid_run, tmp_path)
    blob = _pickles(marker)["torch.save"]
    for folder in (run, run / "checkpoints", ckpt):
        (folder / name).write_bytes(blob)
    load_run(run)  # the safetensors checkpoint loads; the pickles are ignored
    (ckpt / "weights.safetensors").unlink()
    evil = run / "checkpoints" / "step-0000009"  # newer, and only a pickle inside
    evil.mkdir()
    (evil / name).write_bytes(blob)
    (run / "checkpoints" / "latest").write_text("step-0000009\n")
    errors = _load_everything(run, ckpt)
    assert len(errors) == 3 and all(isinstance(e, CheckpointError) for e in errors)
    assert not marker.exists(), "loading a checkpoint executed code"


def _header(entries: dict, length: int | None = None, data: bytes = b"\0" * 16) -> bytes:
    text = json.dumps(entries).encode()
    return struct.pack("<Q", len(text) if length is None else length) + text + data


MANGLED_SAFETENSORS = {
    "length-huge": _header({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, 2**63),
    "length-zero": _header({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, 0),
    "length-past-end": _header({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}},
                               10_000),
    "not-json": struct.pack("<Q", 12) + b"{'w': pickle" + b"\0" * 8,
    "json-array": _header([1, 2, 3]),  # type: ignore[arg-type]
    "offsets-out-of-range": _header({"w": {"dtype": "F32", "shape": [2],
                                           "data_offsets": [0, 999]}}),
    "offsets-reversed": _header({"w": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}}),
    "shape-mismatch": _header({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}),
    "shape-negative": _header({"w": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}),
    "shape-overflow": _header({"w": {"dtype": "F32", "shape": [2**62, 2**62],
                                     "data_offsets": [0, 8]}}),
    "dtype-object": _header({"w": {"dtype": "O", "shape": [2], "data_offsets": [0, 8]}}),
    "dtype-pickle": _header({"w": {"dtype": "pickle", "shape": [1], "data_offsets": [0, 8]}}),
    "metadata-not-strings": _header({"__metadata__": {"step": {"x": 1}},
                                     "w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}),
    "duplicate-overlap": _header({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                  "b": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}),
    "truncated": _header({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})[:20],
    "empty": b"",
}


@pytest.mark.parametrize("target", ["weights.safetensors", "optimizer.safetensors"])
@pytest.mark.parametrize("case", sorted(MANGLED_SAFETENSORS))
def test_mangled_safetensors_header(valid_run, tmp_path, target, case):
    COUNTS["safety (crafted)"] += 1
    run, ckpt = _fresh_run(valid_run, tmp_path)
    blob = MANGLED_SAFETENSORS[case]
    (ckpt / target).write_bytes(blob)
    state = json.loads((ckpt / "state.json").read_text())
    state["files"][target] = len(blob)
    (ckpt / "state.json").write_text(json.dumps(state))
    errors = _load_everything(run, ckpt)
    assert len(errors) == 3 and all(isinstance(e, CheckpointError) for e in errors), errors
    assert all(str(ckpt) in str(e) for e in errors), errors


def test_data_files_with_pickles_are_refused(tmp_path):
    """``.npz`` archives holding pickled objects, and pickles in place of safetensors."""
    marker = tmp_path / "MARKER"
    evil = np.empty(1, dtype=object)
    evil[0] = _Payload(marker)
    buf = io.BytesIO()
    np.savez(buf, images=evil, poses=evil, focal=evil)
    (tmp_path / "tiny.npz").write_bytes(buf.getvalue())
    with pytest.raises(DataError, match="pickle"):
        load_tiny_nerf(tmp_path / "tiny.npz")
    scene = tmp_path / "scene"
    (scene / "image").mkdir(parents=True)
    buf = io.BytesIO()
    np.savez(buf, world_mat_0=evil)
    (scene / "cameras_sphere.npz").write_bytes(buf.getvalue())
    with pytest.raises(DataError, match="pickle"):
        load_neus_dtu(scene)
    (tmp_path / "plain.npz").write_bytes(pickle.dumps({"images": _Payload(marker)}))
    with pytest.raises(DataError):
        load_tiny_nerf(tmp_path / "plain.npz")
    blob = _pickles(marker)["torch.save"]
    for stem, load in (("pop", PopulationData.load), ("set", load_shape_set)):
        (tmp_path / f"{stem}.safetensors").write_bytes(blob)
        sidecar = {"format": "fields-app/population/v1" if stem == "pop" else
                   "fields-app/shape-set/v1", "class": "ShapeSet2D"}
        (tmp_path / f"{stem}.json").write_text(json.dumps(sidecar))
        with pytest.raises(DataError, match="safetensors"):
            load(tmp_path / f"{stem}.safetensors")
    COUNTS["safety (crafted)"] += 5
    assert not marker.exists(), "loading a data file executed code"


def test_loading_a_run_calls_no_unpickler(valid_run, tmp_path, monkeypatch):
    """Dynamically: with every unpickling entry point booby-trapped, a run still loads."""

    def trap(*args, **kwargs):
        raise AssertionError("a loader called an unpickler")

    for owner, name in ((torch, "load"), (pickle, "load"), (pickle, "loads"),
                        (pickle, "Unpickler"), (np, "load")):
        monkeypatch.setattr(owner, name, trap)
    run, ckpt = _fresh_run(valid_run, tmp_path)
    assert load_run(run).step == 5
    assert load_checkpoint(ckpt).step == 5


# -- static scan --------------------------------------------------------------------------------

_UNPICKLERS = {
    ("torch", "load"), ("torch.jit", "load"), ("pickle", "load"), ("pickle", "loads"),
    ("pickle", "Unpickler"), ("cPickle", "load"), ("cPickle", "loads"), ("dill", "load"),
    ("dill", "loads"), ("cloudpickle", "load"), ("cloudpickle", "loads"), ("joblib", "load"),
    ("marshal", "load"), ("marshal", "loads"), ("shelve", "open"), ("yaml", "load"),
    ("yaml", "unsafe_load"), ("pd", "read_pickle"), ("pandas", "read_pickle"),
}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return "?"


def unpickling_calls(source: str) -> list[tuple[int, str]]:
    """``(line, call)`` for every call in ``source`` that can unpickle: the functions above,
    names imported from those modules (``from pickle import loads``), and ``np.load`` /
    ``numpy.load`` without a literal ``allow_pickle=False``."""
    tree = ast.parse(source)
    imported: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                imported[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        name = imported.get(name, name)
        module, _, attr = name.rpartition(".")
        if (module, attr) in _UNPICKLERS or name in ("eval", "exec"):
            found.append((node.lineno, name))
        elif name in ("np.load", "numpy.load", "numpy.lib.npyio.load"):
            safe = any(k.arg == "allow_pickle" and isinstance(k.value, ast.Constant)
                       and k.value.value is False for k in node.keywords)
            if not safe:
                found.append((node.lineno, f"{name} without allow_pickle=False"))
    return found


def test_scanner_finds_unpicklers():
    src = ("import pickle, torch\nfrom pickle import loads as l\nimport numpy as np\n"
           "torch.load" "('a')\npickle.loads(b'')\nl(b'')\nnp.load('a')\n"
           "np.load('a', allow_pickle=False)\n")
    assert [line for line, _ in unpickling_calls(src)] == [4, 5, 6, 7]


def test_no_loading_code_unpickles():
    offenders = []
    for package in ("app", "datasets", "renderer", "fields"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for line, call in unpickling_calls(path.read_text(encoding="utf-8")):
                offenders.append(f"{path.relative_to(ROOT)}:{line}: {call}")
    assert not offenders, "code that can unpickle:\n" + "\n".join(offenders)
