"""Shape populations with covariates: one container, a subject-wise split, a loader for user data.

A *population* is ``S`` shapes, each with ``C`` scalar covariates (age, weight, a joint angle…),
a subject id and a visit number, in the spirit of NAISR (Jiao et al., "NAISR: A 3D Neural
Additive Model for Interpretable Shape Representation", ICLR 2024): a template plus additive,
covariate-driven deformations, fitted on training subjects and evaluated on held-out subjects.
Every shape carries the same number of training samples, so the tensors stack:

* ``surface [S, Ns, d]`` points on the surface and their unit outward ``normals [S, Ns, d]``;
* ``off [S, No, d]`` points uniform in ``[-1, 1]^d`` and their signed distance ``off_sdf [S, No]``
  (negative inside);
* ``covariates_raw [S, C]`` as given and ``covariates [S, C]`` min-max scaled to ``[-1, 1]`` with
  the *training* split's minimum and maximum. Test values outside the training range are kept
  (not clamped) and reported by :attr:`PopulationData.out_of_range`.

The split is by subject: a held-out subject's visits are all in the test split, so a model never
sees the individual it is tested on (:func:`split_by_subject`).

:func:`load_population` reads a folder of watertight meshes plus a CSV
``file,subject,visit,<cov1>,<cov2>,...`` (``subject``/``visit`` optional), normalises all meshes
with one common similarity (so relative sizes survive) and samples them.
:meth:`PopulationData.save` / :meth:`PopulationData.load` store tensors as safetensors and
everything else in a JSON sidecar; nothing is ever pickled.
"""

from __future__ import annotations

import csv
import json
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import trimesh
from jaxtyping import Bool, Float, Int
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import Tensor

from datasets.errors import DataError, DataWarning
from datasets.meshes import SUPPORTED_MESH_EXTENSIONS, Normalization, load_mesh, watertight_problem
from datasets.saved import read_sidecar
from datasets.sdf_samples import MeshDistance
from renderer.files import write_atomically

__all__ = [
    "PopulationData",
    "HeldOut",
    "split_by_subject",
    "scale_covariates",
    "unscale_covariates",
    "build_population",
    "load_population",
]

FORMAT = "fields-app/population/v1"
"""The ``format`` tag written to (and required from) a saved population's JSON sidecar."""

HeldOut = float | int | Sequence[int | str] | None
"""Which subjects go to the test split: ``None`` (none), a fraction in ``[0, 1)`` (a float),
a count (an int), or explicit subjects (names as ``str`` or indices into ``subject_names`` as
``int``)."""

_RESERVED = ("file", "subject", "visit")
_TENSORS = (
    "surface", "normals", "off", "off_sdf", "covariates_raw", "covariates", "subject", "visit",
    "train_index", "test_index", "cov_min", "cov_max",
)
_OPTIONAL_TENSORS = ("parts", "factors")


def scale_covariates(
    raw: Float[Tensor, "*batch C"], cov_min: Float[Tensor, " C"], cov_max: Float[Tensor, " C"]
) -> Float[Tensor, "*batch C"]:
    """Min-max scaling ``2 (raw − min) / (max − min) − 1`` (no clamping).

    ``min`` maps to exactly ``−1`` and ``max`` to exactly ``+1``. A covariate that is constant on
    the training split (``max == min``) is only centred, ``raw − min``, so it maps to 0.

    Example:
        >>> lo, hi = torch.tensor([0.0]), torch.tensor([10.0])
        >>> scale_covariates(torch.tensor([[0.0], [5.0], [10.0], [15.0]]), lo, hi).flatten()
        tensor([-1.,  0.,  1.,  2.])
    """
    lo = cov_min.to(raw)
    span = cov_max.to(raw) - lo
    safe = torch.where(span > 0, span, torch.ones_like(span))
    return torch.where(span > 0, 2.0 * (raw - lo) / safe - 1.0, raw - lo)


def unscale_covariates(
    scaled: Float[Tensor, "*batch C"], cov_min: Float[Tensor, " C"], cov_max: Float[Tensor, " C"]
) -> Float[Tensor, "*batch C"]:
    """Inverse of :func:`scale_covariates`: ``(scaled + 1)(max − min) / 2 + min``."""
    lo = cov_min.to(scaled)
    span = cov_max.to(scaled) - lo
    return torch.where(span > 0, (scaled + 1.0) * span / 2.0 + lo, scaled + lo)


def split_by_subject(
    subject: Int[Tensor, " S"], subject_names: Sequence[str], held_out: HeldOut, seed: int = 0
) -> tuple[Int[Tensor, " T"], Int[Tensor, " E"]]:
    """Train and test shape indices such that no subject is in both.

    Args:
        subject: ``[S]`` index of each shape's subject into ``subject_names``.
        subject_names: the ``K`` distinct subjects.
        held_out: see :data:`HeldOut`. A fraction ``f`` holds out ``round(f·K)`` subjects (at
            least 1 when ``f > 0``), chosen at random with ``seed``; at least one subject always
            stays in training.
        seed: seeds the random choice of held-out subjects.

    Returns:
        ``(train_index, test_index)``, both sorted int64.

    Raises:
        ValueError: a bad ``held_out`` (negative, a fraction ≥ 1, a count ≥ K, an unknown
            subject, or holding out every subject).

    Example:
        >>> subj = torch.tensor([0, 0, 1, 1, 2])
        >>> split_by_subject(subj, ["a", "b", "c"], ["b"])
        (tensor([0, 1, 4]), tensor([2, 3]))
    """
    names = list(subject_names)
    k = len(names)
    chosen: list[int]
    if held_out is None:
        chosen = []
    elif isinstance(held_out, bool):
        raise ValueError("held_out_subjects must be None, a fraction, a count or a list, not bool")
    elif isinstance(held_out, float | int):
        if isinstance(held_out, float):
            if not 0.0 <= held_out < 1.0:
                raise ValueError(f"held-out fraction must be in [0, 1), got {held_out}")
            count = round(held_out * k)
            if held_out > 0:
                count = max(count, 1)
        else:
            count = held_out
        if not 0 <= count < k:
            raise ValueError(
                f"cannot hold out {count} of {k} subjects (at least one must stay in training)"
            )
        rng = np.random.default_rng(seed)
        chosen = sorted(int(i) for i in rng.permutation(k)[:count])
    else:
        chosen = []
        for item in held_out:
            if isinstance(item, str):
                if item not in names:
                    raise ValueError(f"held-out subject {item!r} is not in the population")
                chosen.append(names.index(item))
            elif isinstance(item, int | np.integer) and 0 <= int(item) < k:
                chosen.append(int(item))
            else:
                raise ValueError(f"held-out subject {item!r} is not in the population")
        chosen = sorted(set(chosen))
        if len(chosen) >= k:
            raise ValueError("cannot hold out every subject: the training split would be empty")
    held = torch.zeros(k, dtype=torch.bool)
    held[chosen] = True
    test_mask = held[subject.long()]
    return (
        torch.nonzero(~test_mask).flatten().long(),
        torch.nonzero(test_mask).flatten().long(),
    )


@dataclass
class PopulationData:
    """A population of shapes with covariates, stacked into tensors, split by subject.

    Attributes:
        surface: ``[S, Ns, d]`` float32 surface points.
        normals: ``[S, Ns, d]`` float32 unit outward normals at ``surface``.
        off: ``[S, No, d]`` float32 points uniform in ``[-1, 1]^d``.
        off_sdf: ``[S, No]`` float32 signed distance at ``off`` (negative inside).
        covariates_raw: ``[S, C]`` float32 covariates as given.
        covariates: ``[S, C]`` float32, ``scale(covariates_raw)`` (train min/max, not clamped).
        covariate_names: the ``C`` covariate names.
        subject: ``[S]`` int64 index into ``subject_names``.
        visit: ``[S]`` int64 visit number.
        train_index: ``[T]`` int64 shape indices of the training split.
        test_index: ``[E]`` int64 shape indices of the test split (held-out subjects).
        cov_min: ``[C]`` float32 minimum of ``covariates_raw`` over the training split.
        cov_max: ``[C]`` float32 maximum of ``covariates_raw`` over the training split.
        dim: ``d``, 2 or 3.
        subject_names: the distinct subjects, in order of first appearance.
        parts: optional ``[S, Ns]`` int64 part label of each surface point.
        meshes: optional source mesh file of each shape.
        factors: optional ``[S, F]`` float32 ground-truth individual factors (synthetic data).
        factor_names: the ``F`` factor names when ``factors`` is given.
        normalization: optional ``Normalization.to_dict()`` of the common world → unit-box map.
        meta: free JSON-able information (generator settings, source folder…).
    """

    surface: Float[Tensor, "S Ns d"]
    normals: Float[Tensor, "S Ns d"]
    off: Float[Tensor, "S No d"]
    off_sdf: Float[Tensor, "S No"]
    covariates_raw: Float[Tensor, "S C"]
    covariates: Float[Tensor, "S C"]
    covariate_names: list[str]
    subject: Int[Tensor, " S"]
    visit: Int[Tensor, " S"]
    train_index: Int[Tensor, " T"]
    test_index: Int[Tensor, " E"]
    cov_min: Float[Tensor, " C"]
    cov_max: Float[Tensor, " C"]
    dim: int
    subject_names: list[str]
    parts: Int[Tensor, "S Ns"] | None = None
    meshes: list[str] | None = None
    factors: Float[Tensor, "S F"] | None = None
    factor_names: list[str] | None = None
    normalization: dict | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        s = self.surface.shape[0]
        if self.dim not in (2, 3) or self.surface.shape[-1] != self.dim:
            raise ValueError(f"dim must be 2 or 3 and match surface [..., d], got {self.dim}")
        if len(self.covariate_names) != self.covariates_raw.shape[1]:
            raise ValueError("covariate_names must name every covariate column")
        if len(self.subject_names) == 0 or int(self.subject.max()) >= len(self.subject_names):
            raise ValueError("subject indices must index subject_names")
        both = torch.cat([self.train_index, self.test_index]).sort().values
        if not torch.equal(both, torch.arange(s)):
            raise ValueError("train_index and test_index must partition the shapes")
        if len(self.train_index) == 0:
            raise ValueError("the training split is empty")
        if self.meshes is not None and len(self.meshes) != s:
            raise ValueError("meshes must list one file per shape")
        if (self.factors is None) != (self.factor_names is None):
            raise ValueError("factors and factor_names go together")

    def __len__(self) -> int:
        return self.surface.shape[0]

    @property
    def n_covariates(self) -> int:
        """``C``, the number of covariates."""
        return self.covariates_raw.shape[1]

    @property
    def out_of_range(self) -> Bool[Tensor, "S C"]:
        """``[S, C]``: ``True`` where a scaled covariate is outside ``[-1, 1]``.

        Only test shapes can be out of range (the training split defines the range).
        """
        return self.covariates.abs() > 1.0 + 1e-6

    def scale(self, raw: Float[Tensor, "*batch C"]) -> Float[Tensor, "*batch C"]:
        """Raw covariates → the model's ``[-1, 1]`` scale (train min/max; not clamped)."""
        return scale_covariates(raw, self.cov_min, self.cov_max)

    def unscale(self, scaled: Float[Tensor, "*batch C"]) -> Float[Tensor, "*batch C"]:
        """Inverse of :meth:`scale`."""
        return unscale_covariates(scaled, self.cov_min, self.cov_max)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``<path>.safetensors`` (tensors) and ``<path>.json`` (everything else).

        Args:
            path: the tensor file; a missing ``.safetensors`` suffix is added. The sidecar is
                the same path with suffix ``.json``.

        Returns:
            The ``.safetensors`` path. Both files are written atomically.
        """
        path = Path(path)
        if path.suffix != ".safetensors":
            path = path.with_name(path.name + ".safetensors")
        tensors = {name: getattr(self, name).contiguous() for name in _TENSORS}
        for name in _OPTIONAL_TENSORS:
            value = getattr(self, name)
            if value is not None:
                tensors[name] = value.contiguous()
        sidecar = {
            "format": FORMAT,
            "tensors": path.name,
            "dim": self.dim,
            "covariate_names": list(self.covariate_names),
            "subject_names": list(self.subject_names),
            "meshes": self.meshes,
            "factor_names": self.factor_names,
            "normalization": self.normalization,
            "meta": self.meta,
        }
        write_atomically(path, st_save(tensors), what="population tensors")
        text = json.dumps(sidecar, indent=1) + "\n"
        write_atomically(path.with_suffix(".json"), text.encode(), what="population sidecar")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> PopulationData:
        """Read what :meth:`save` wrote (``path`` with or without ``.safetensors``).

        Raises:
            DataError: a missing, unreadable or inconsistent file (the message names it).
        """
        path, sidecar = read_sidecar(path, "population")
        side_path = path.with_suffix(".json")
        if not isinstance(sidecar, dict) or sidecar.get("format") != FORMAT:
            raise DataError(side_path, f"not a population sidecar (expected format {FORMAT!r})")
        try:
            tensors = st_load(path.read_bytes())
        except Exception as exc:  # safetensors raises its own error types
            raise DataError(path, f"unreadable safetensors file ({exc})") from None
        missing = [name for name in _TENSORS if name not in tensors]
        if missing:
            raise DataError(path, f"missing tensors: {', '.join(missing)}")
        try:
            return cls(
                **{name: tensors[name] for name in _TENSORS},
                **{name: tensors.get(name) for name in _OPTIONAL_TENSORS},
                dim=int(sidecar["dim"]),
                covariate_names=list(sidecar["covariate_names"]),
                subject_names=list(sidecar["subject_names"]),
                meshes=sidecar.get("meshes"),
                factor_names=sidecar.get("factor_names"),
                normalization=sidecar.get("normalization"),
                meta=dict(sidecar.get("meta") or {}),
            )
        except (KeyError, TypeError, ValueError, OverflowError) as exc:  # int(inf): Overflow
            raise DataError(path, f"inconsistent population data ({exc})") from None


def build_population(
    *,
    surface: Float[Tensor, "S Ns d"],
    normals: Float[Tensor, "S Ns d"],
    off: Float[Tensor, "S No d"],
    off_sdf: Float[Tensor, "S No"],
    covariates_raw: Float[Tensor, "S C"],
    covariate_names: Sequence[str],
    subjects: Sequence[str],
    visit: Int[Tensor, " S"],
    held_out_subjects: HeldOut = None,
    seed: int = 0,
    **optional: object,
) -> PopulationData:
    """Assemble a :class:`PopulationData`: split by subject, then scale with train min/max.

    Args:
        surface, normals, off, off_sdf: the stacked samples (cast to float32).
        covariates_raw: ``[S, C]`` covariates as given.
        covariate_names: ``C`` names.
        subjects: the subject name of each of the ``S`` shapes.
        visit: ``[S]`` visit numbers.
        held_out_subjects: see :data:`HeldOut`.
        seed: seeds the choice of held-out subjects.
        **optional: the optional :class:`PopulationData` fields (``parts``, ``meshes``,
            ``factors``, ``factor_names``, ``normalization``, ``meta``).

    Example:
        >>> pts = torch.zeros(3, 4, 2)
        >>> pop = build_population(
        ...     surface=pts, normals=pts, off=pts, off_sdf=torch.zeros(3, 4),
        ...     covariates_raw=torch.tensor([[0.0], [10.0], [20.0]]), covariate_names=["age"],
        ...     subjects=["a", "b", "c"], visit=torch.zeros(3, dtype=torch.long),
        ...     held_out_subjects=["c"])
        >>> pop.covariates.flatten(), pop.out_of_range.flatten()
        (tensor([-1.,  1.,  3.]), tensor([False, False,  True]))
    """
    subjects = [str(s) for s in subjects]
    names = list(dict.fromkeys(subjects))
    lookup = {name: i for i, name in enumerate(names)}
    subject = torch.tensor([lookup[s] for s in subjects], dtype=torch.long)
    train_index, test_index = split_by_subject(subject, names, held_out_subjects, seed)
    raw = covariates_raw.float()
    cov_min = raw[train_index].min(dim=0).values
    cov_max = raw[train_index].max(dim=0).values
    return PopulationData(
        surface=surface.float(),
        normals=normals.float(),
        off=off.float(),
        off_sdf=off_sdf.float(),
        covariates_raw=raw,
        covariates=scale_covariates(raw, cov_min, cov_max),
        covariate_names=[str(n) for n in covariate_names],
        subject=subject,
        visit=visit.long(),
        train_index=train_index,
        test_index=test_index,
        cov_min=cov_min,
        cov_max=cov_max,
        dim=int(surface.shape[-1]),
        subject_names=names,
        **optional,  # type: ignore[arg-type]
    )


# ------------------------------------------------------------------------------------------------
# User populations: a folder of meshes + a covariates CSV.


@dataclass
class _Row:
    line: int
    file: str
    path: Path
    subject: str
    visit: int
    values: list[float]


def _read_csv(folder: Path, csv_path: Path) -> tuple[list[str], list[_Row]]:
    """Parse and validate the covariates CSV (every error names the CSV and the row/column)."""
    if not csv_path.is_file():
        raise DataError(
            csv_path,
            "covariates CSV not found (expected a header 'file,subject,visit,<covariate>,...'; "
            "'subject' and 'visit' are optional)",
        )
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as fh:
            records = [(i + 1, rec) for i, rec in enumerate(csv.reader(fh))]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(csv_path, f"cannot read the CSV ({exc})") from None
    records = [(line, rec) for line, rec in records if any(cell.strip() for cell in rec)]
    if not records:
        raise DataError(csv_path, "the CSV is empty (no header)")
    header_line, header = records[0]
    header = [h.strip() for h in header]
    if any(not h for h in header):
        raise DataError(csv_path, f"row {header_line}: empty column name in the header")
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise DataError(csv_path, f"row {header_line}: duplicate columns {dupes}")
    if "file" not in header:
        raise DataError(
            csv_path, f"missing required column 'file' (header is {','.join(header)})"
        )
    cov_names = [h for h in header if h not in _RESERVED]
    if not cov_names:
        raise DataError(
            csv_path, "no covariate columns: the header needs at least one column besides "
            "'file', 'subject' and 'visit'"
        )
    col = {h: i for i, h in enumerate(header)}
    rows: list[_Row] = []
    seen_file: dict[str, int] = {}
    seen_visit: dict[tuple[str, int], int] = {}
    for line, rec in records[1:]:
        if len(rec) != len(header):
            raise DataError(
                csv_path, f"row {line}: expected {len(header)} fields, got {len(rec)}"
            )
        cells = [c.strip() for c in rec]
        name = cells[col["file"]]
        if not name:
            raise DataError(csv_path, f"row {line}: empty 'file'")
        if "\0" in name:
            raise DataError(csv_path, f"row {line}: 'file' {name!r} holds a NUL character")
        where = f"row {line} (file {name!r})"
        values = []
        for cov in cov_names:
            text = cells[col[cov]]
            try:
                value = float(text)
            except ValueError:
                raise DataError(
                    csv_path, f"{where}, column {cov!r}: {text!r} is not a number"
                ) from None
            if not math.isfinite(value):
                raise DataError(csv_path, f"{where}, column {cov!r}: {text!r} is not finite")
            values.append(value)
        subject = cells[col["subject"]] if "subject" in col else ""
        if not subject:
            subject = Path(name).stem
        visit = 0
        if "visit" in col and cells[col["visit"]]:
            text = cells[col["visit"]]
            try:
                visit = int(text)
            except ValueError:
                raise DataError(
                    csv_path, f"{where}, column 'visit': {text!r} is not an integer"
                ) from None
        path = Path(name) if Path(name).is_absolute() else folder / name
        key = str(path.resolve())
        if key in seen_file:
            raise DataError(
                csv_path, f"{where}: duplicate row, the file is already listed in row "
                f"{seen_file[key]}"
            )
        if (subject, visit) in seen_visit:
            raise DataError(
                csv_path, f"{where}: duplicate row, subject {subject!r} visit {visit} is "
                f"already listed in row {seen_visit[(subject, visit)]}"
            )
        seen_file[key] = line
        seen_visit[(subject, visit)] = line
        rows.append(_Row(line, name, path, subject, visit, values))
    return cov_names, rows


def load_population(
    folder: str | os.PathLike[str],
    csv_path: str | os.PathLike[str] | None = None,
    *,
    n_surface: int = 2048,
    n_off: int = 2048,
    seed: int = 0,
    held_out_subjects: HeldOut = None,
    padding: float = 0.05,
) -> PopulationData:
    """Load a user population: watertight meshes + a covariates CSV, sampled for SDF training.

    The CSV (default ``folder/covariates.csv``) has a header ``file,subject,visit,<cov1>,...``;
    ``file`` is a mesh path relative to ``folder`` (or absolute), ``subject`` defaults to the
    file's stem and ``visit`` to 0; every other column is a numeric covariate. All meshes are
    mapped by ONE similarity: the union of their bounding boxes is centred at the origin and its
    longest side scaled to ``2 (1 − padding)``, so size differences between shapes survive.
    Surface samples are area-uniform (``trimesh.sample.sample_surface``) with face normals;
    off-surface points are uniform in ``[-1, 1]³`` with exact signed distances
    (:class:`~datasets.sdf_samples.MeshDistance`). Shapes keep the CSV's row order.

    Args:
        folder: the folder of meshes (``.obj``, ``.ply``, ``.off``, ``.stl``, ``.glb``, ``.gltf``).
        csv_path: the covariates CSV; default ``folder/covariates.csv``.
        n_surface: surface samples per shape.
        n_off: off-surface samples per shape.
        seed: seeds the sampling and the choice of held-out subjects.
        held_out_subjects: see :data:`HeldOut` (default: no test split).
        padding: margin left around the union box inside ``[-1, 1]³``, in ``[0, 1)``.

    Returns:
        The population (``dim = 3``, ``meshes`` = the mesh paths, ``normalization`` set).

    Raises:
        DataError: naming the file (and the CSV row/column) for a missing folder or CSV, a
            missing ``file`` column, no covariate column, a non-numeric or non-finite value, a
            duplicate row (same file, or same subject and visit), a listed mesh that does not
            exist or does not load, a mesh that is not watertight (its SDF sign would be
            ill-defined), fewer than 2 shapes, or a bad ``held_out_subjects``.

    Warns:
        DataWarning: for mesh files in ``folder`` that no CSV row lists (they are ignored).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(folder, "population folder not found (or not a directory)")
    csv_path = folder / "covariates.csv" if csv_path is None else Path(csv_path)
    if n_surface < 1 or n_off < 1:
        raise ValueError("n_surface and n_off must be positive")
    if not 0.0 <= padding < 1.0:
        raise ValueError(f"padding must be in [0, 1), got {padding}")
    cov_names, rows = _read_csv(folder, csv_path)
    if len(rows) < 2:
        raise DataError(
            csv_path, f"a population needs at least 2 shapes, the CSV lists {len(rows)}"
        )

    listed = {str(r.path.resolve()) for r in rows}
    unlisted = sorted(
        p.name
        for p in folder.iterdir()
        if p.is_file()
        and p.suffix.lower() in SUPPORTED_MESH_EXTENSIONS
        and str(p.resolve()) not in listed
    )
    if unlisted:
        shown = ", ".join(unlisted[:10]) + (" …" if len(unlisted) > 10 else "")
        warnings.warn(
            f"{csv_path}: {len(unlisted)} mesh file(s) in {folder} have no CSV row and are "
            f"ignored: {shown}",
            DataWarning,
            stacklevel=2,
        )

    meshes: list[trimesh.Trimesh] = []
    for row in rows:
        if not row.path.is_file():
            raise DataError(row.path, f"listed in {csv_path} row {row.line} but not found")
        mesh = load_mesh(row.path)
        problem = watertight_problem(mesh)
        if problem is not None:
            raise DataError(
                row.path,
                f"(row {row.line} of {csv_path}) mesh is not watertight ({problem}): the sign "
                "of its SDF is ill-defined; repair or close it first",
            )
        if not mesh.is_winding_consistent:
            trimesh.repair.fix_winding(mesh)
        if mesh.volume < 0:
            mesh.invert()
        meshes.append(mesh)

    lo = np.min([m.bounds[0] for m in meshes], axis=0)
    hi = np.max([m.bounds[1] for m in meshes], axis=0)
    longest = float((hi - lo).max())
    norm = Normalization(center=((lo + hi) / 2).tolist(), scale=2.0 * (1.0 - padding) / longest)

    seeds = np.random.SeedSequence(seed).spawn(len(meshes) + 1)
    surface, normals, off, off_sdf = [], [], [], []
    for mesh, ss in zip(meshes, seeds[1:]):
        unit = norm.apply_mesh(mesh)
        rng = np.random.default_rng(ss)
        pts, face = trimesh.sample.sample_surface(unit, n_surface, seed=rng)
        surface.append(torch.as_tensor(np.asarray(pts), dtype=torch.float32))
        normals.append(torch.as_tensor(unit.face_normals[face], dtype=torch.float32))
        x = torch.as_tensor(rng.uniform(-1.0, 1.0, (n_off, 3)), dtype=torch.float32)
        off.append(x)
        off_sdf.append(MeshDistance(unit).signed_distance(x).float().clone())

    held_seed = int(seeds[0].generate_state(1)[0])
    try:
        return build_population(
            surface=torch.stack(surface),
            normals=torch.stack(normals),
            off=torch.stack(off),
            off_sdf=torch.stack(off_sdf),
            covariates_raw=torch.tensor([r.values for r in rows], dtype=torch.float64),
            covariate_names=cov_names,
            subjects=[r.subject for r in rows],
            visit=torch.tensor([r.visit for r in rows], dtype=torch.long),
            held_out_subjects=held_out_subjects,
            seed=held_seed,
            meshes=[str(r.path) for r in rows],
            normalization=norm.to_dict(),
            meta={"source": str(folder), "csv": str(csv_path), "seed": seed},
        )
    except ValueError as exc:
        raise DataError(csv_path, str(exc)) from None
