"""Mesh extraction from signed distance fields: dense and coarse-to-fine marching cubes, export.

Vocabulary: ``x`` are world query points ``[N, 3]``; an SDF is any callable
``sdf_fn(x) -> sdf`` with ``sdf`` of shape ``[N]`` (float32; typically a neural network, whose
evaluation is the expensive part). ``level`` is the iso-value whose level set is meshed (0 for the
surface of an SDF).

**The grid.** ``resolution = R`` points per axis span the box ``aabb = (lo, hi)``:

    x_ijk = lo + (i, j, k) ⊙ h,    h = (hi − lo) / (R − 1),    0 ≤ i, j, k < R,

so the dense grid has ``R³`` points and ``(R − 1)³`` cells. Marching cubes (Lorensen & Cline,
"Marching Cubes: A High Resolution 3D Surface Construction Algorithm", SIGGRAPH 1987; scikit-image
implements the topologically consistent variant of Lewiner et al. 2003) puts one vertex on every
cell edge whose end values straddle ``level``, linearly interpolated, and triangulates each cell
from its 8 corner values alone. Because every cell is meshed from its own corners, the mesh inside a
set of cells only depends on the values at those cells' corners.

**Coarse to fine.** Hierarchical extraction in the spirit of MISE (Mescheder et al., "Occupancy
Networks: Learning 3D Reconstruction in Function Space", CVPR 2019), with the occupancy test
replaced by a distance bound. A nested hierarchy of grids of spacing ``2^(L−k)·h``
(``k = 0 … L``) shares points with the final grid. Stage 0 evaluates every point of the coarse grid;
each later stage keeps a cell ``C`` of the previous level (half-diagonal ``ρ = ½‖2^(L−k)·h‖``)
when

    min_c f(v_c) ≤ level ≤ max_c f(v_c)      or      min_c |f(v_c) − level| ≤ margin · ρ,

over its 8 corners ``v_c``, and evaluates the field only at the points of the finer grid inside
kept cells; every other point takes the trilinear interpolation of the coarser level. The bound is
exact for a 1-Lipschitz field (a true SDF): if ``f(p) = level`` for some ``p ∈ C`` then the corner
nearest to ``p`` lies within ``ρ`` of it, so ``|f(v_c) − level| ≤ ρ``. Neural SDFs are only
approximately 1-Lipschitz (``‖∇f‖`` can exceed 1 locally), hence ``margin > 1`` (default 2: any
field whose local Lipschitz constant is at most 2 is meshed exactly). By induction the corners of
every kept cell have been evaluated exactly, and every final cell that contains a surface crossing
is a child of a kept cell. Marching cubes then runs only on the children of kept cells (through
scikit-image's ``mask``, on the bounding box of those cells), so the mesh equals the dense
extraction on the same grid wherever the surface is — vertex for vertex — and is watertight
whenever the dense one is (a closed surface inside the box). Interpolated values only fill the rest
of the volume (far from the surface, so only their sign matters).

A field that violates the bound (steeper than ``margin`` allows) is handled in two ways. Where the
surface runs out of the marked cells, the mesh has a boundary edge on a cell face; the cell across
that face is marked, its corners evaluated, and marching cubes repeated until no such edge is left
(surface following), so the mesh never has holes that the dense one lacks. But a component that no
kept cell touches — a feature smaller than a coarse cell on which the field is steeper than
``margin`` — is lost; a true SDF cannot lose one, whatever the feature's size.

Memory is ``O(R³)`` for the final volume: 4 bytes per point for the dense method, 6 for
coarse-to-fine (the values and two masks); marching cubes runs on slabs of the volume (scikit-image
needs a contiguous copy), and index buffers are gathered plane by plane, so no other full-size
array is made. :func:`estimate_mesh_memory` bounds the peak, and :func:`extract_mesh` refuses with
a :class:`MeshMemoryError` before allocating anything when the bound exceeds the memory available.
Field evaluations are ``O(R² · coarse cells)`` and always made in chunks of at most ``chunk_size``
points under ``torch.no_grad()``.

The band evaluation (``_sample_grid``) is independent of the sign test and of the surface
extractor, so the open-surface extraction of unsigned distance / closest-surface-point fields (a
later issue) can reuse it with an unsigned keep rule and its own extractor.
"""

from __future__ import annotations

import functools
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import trimesh
from jaxtyping import Float
from skimage import measure
from torch import Tensor
from tqdm.auto import tqdm

from renderer.files import write_atomically

__all__ = [
    "MeshResult", "MeshMemoryError", "extract_mesh", "estimate_mesh_memory", "export_mesh",
]

SDFFn = Callable[[Float[Tensor, "N 3"]], Float[Tensor, " N"]]
NormalFn = Callable[[Float[Tensor, "N 3"]], Float[Tensor, "N 3"]]

_EXPORT_EXTENSIONS = (".ply", ".obj")


@dataclass
class MeshResult:
    """A mesh extracted from a field, with what it cost.

    Attributes:
        mesh: The triangle mesh in world units, vertex normals set (from ``normal_fn`` when one
            was given, else area-weighted face normals of the mesh); outward-facing winding for
            an SDF that is negative inside.
        num_evaluations: Points at which ``sdf_fn`` was evaluated.
        dense_evaluations: ``resolution³``, what the dense grid evaluates, for comparison.
        resolution: Grid points per axis of the final grid.
        seconds: Wall-clock time of the whole extraction (evaluation, marching cubes, normals).
        method: ``"coarse_to_fine"`` or ``"dense"``.
    """

    mesh: trimesh.Trimesh
    num_evaluations: int
    dense_evaluations: int
    resolution: int
    seconds: float
    method: str

    @property
    def evaluation_fraction(self) -> float:
        """``num_evaluations / dense_evaluations`` (1 for the dense method)."""
        return self.num_evaluations / self.dense_evaluations


def extract_mesh(
    sdf_fn: SDFFn,
    *,
    resolution: int = 256,
    aabb: Sequence[float | int] = (-1.0, -1.0, -1.0, 1.0, 1.0, 1.0),
    level: float = 0.0,
    method: str = "coarse_to_fine",
    coarse_resolution: int = 32,
    margin: float = 2.0,
    chunk_size: int = 1 << 16,
    progress: bool | Callable[[int, int], None] = False,
    normal_fn: NormalFn | None = None,
    device: str | torch.device = "cpu",
    max_memory_bytes: int | None = None,
) -> MeshResult:
    """Marching cubes of the level set ``{x : sdf_fn(x) = level}`` inside a box.

    The grid is ``x_ijk = lo + (i, j, k) ⊙ h`` with ``h = (hi − lo)/(resolution − 1)``. The
    ``"dense"`` method evaluates all ``resolution³`` points. ``"coarse_to_fine"`` evaluates a grid
    of about ``coarse_resolution`` points per axis, then doubles the resolution
    ``L = round(log2((resolution − 1)/(coarse_resolution − 1)))`` times, evaluating only inside
    cells kept by the test ``min|f − level| ≤ margin · ρ`` (``ρ`` the cell's half-diagonal) or a
    sign change, and grows the marked cells wherever the mesh would otherwise have a hole; see the
    module docstring for why the result equals the dense mesh wherever the surface is. The
    coarsest grid may extend past the upper faces of the box by less than one coarse cell (the
    hierarchy needs ``(n₀ − 1)·2^L ≥ resolution − 1``); those points count in
    ``num_evaluations``. A surface that leaves the box is cut open at its faces, as in the dense
    extraction.

    Args:
        sdf_fn: The field, ``x [N, 3] -> sdf [N]`` (``[N, 1]`` is accepted). Called under
            ``torch.no_grad()`` with at most ``chunk_size`` float32 points on ``device``.
        resolution: Grid points per axis of the final grid (at least 2).
        aabb: ``(x_min, y_min, z_min, x_max, y_max, z_max)`` in world units.
        level: The iso-value to mesh.
        method: ``"coarse_to_fine"`` or ``"dense"``.
        coarse_resolution: Approximate points per axis of the first coarse-to-fine stage.
        margin: Safety factor on the 1-Lipschitz bound (``≥ 1`` is exact for a true SDF; the
            default 2 tolerates neural fields with local gradient norm up to 2).
        chunk_size: Most points passed to ``sdf_fn`` (and ``normal_fn``) in one call.
        progress: ``True`` shows a tqdm progress bar over field evaluations; a callable is
            called as ``progress(done, total)`` (points evaluated, points announced so far) after
            every chunk instead — the viewer's export bar uses it.
        normal_fn: Optional ``x [N, 3] -> normals [N, 3]`` (e.g. the field's analytic gradient),
            evaluated at the vertices under ``torch.enable_grad()`` so autograd-based normals work;
            its output is normalised. Without it, normals come from the mesh.
        device: Device on which query points are created.
        max_memory_bytes: Memory the extraction may use; by default what the machine has
            available now (``MemAvailable``, capped by a cgroup limit). Checked against
            :func:`estimate_mesh_memory` before anything is allocated or evaluated.

    Returns:
        A :class:`MeshResult`.

    Raises:
        ValueError: Bad arguments, non-finite field values, or no level set in the box.
        MeshMemoryError: The estimate exceeds the memory available (a ``MemoryError``, raised
            before any allocation or field evaluation; its message says what would fit).

    Example:
        >>> import torch
        >>> from renderer.meshing import extract_mesh
        >>> sphere = lambda x: x.norm(dim=-1) - 0.5
        >>> result = extract_mesh(sphere, resolution=64, coarse_resolution=16)
        >>> result.mesh.is_watertight, result.num_evaluations < result.dense_evaluations
        (True, True)
    """
    t0 = time.perf_counter()
    lo, hi = _check_aabb(aabb)
    if resolution < 2:
        raise ValueError(f"resolution must be at least 2, got {resolution}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    if margin < 0:
        raise ValueError(f"margin must be non-negative, got {margin}")
    if not math.isfinite(level):
        raise ValueError(f"level must be finite, got {level}")
    if method == "coarse_to_fine" and coarse_resolution < 2:
        raise ValueError(f"coarse_resolution must be at least 2, got {coarse_resolution}")
    num_stages = _num_stages(resolution, method, coarse_resolution)
    if max_memory_bytes is not None and max_memory_bytes < 1:
        raise ValueError(f"max_memory_bytes must be positive, got {max_memory_bytes}")
    _check_memory(resolution, method, coarse_resolution, chunk_size, max_memory_bytes)

    spacing = (hi - lo) / (resolution - 1)
    evaluator = _ChunkedEvaluator(sdf_fn, lo, spacing, chunk_size, device, progress, method)
    try:
        grid = _sample_grid(evaluator, resolution, num_stages, level, margin)
        verts, faces = _closed_marching_cubes(grid, evaluator, level, aabb)
        del grid  # the volume is not needed for the mesh: free it before building the mesh
    finally:
        evaluator.close()

    vertices = lo + verts * spacing
    mesh = trimesh.Trimesh(vertices=vertices, faces=faces, process=False)
    if normal_fn is not None:
        mesh.vertex_normals = _vertex_normals(normal_fn, vertices, chunk_size, device)
    else:
        _ = mesh.vertex_normals  # computed from the faces and stored, so export writes them
    return MeshResult(
        mesh=mesh,
        num_evaluations=evaluator.count,
        dense_evaluations=resolution**3,
        resolution=resolution,
        seconds=time.perf_counter() - t0,
        method=method,
    )


class MeshMemoryError(MemoryError):
    """Mesh extraction would need more memory than is available (raised before allocating)."""


def estimate_mesh_memory(
    resolution: int,
    method: str = "coarse_to_fine",
    *,
    coarse_resolution: int = 32,
    chunk_size: int = 1 << 16,
) -> int:
    """Bytes :func:`extract_mesh` allocates at its peak, an upper bound (see below).

    With ``P = n³`` the points of the final grid (``n = R`` for ``"dense"``; for
    ``"coarse_to_fine"`` ``n = (n₀ − 1)·2^L + 1 ≥ R``, the hierarchy's last level), ``S`` the
    points of a marching-cubes slab (``_MC_SLAB_POINTS``), ``c = chunk_size`` and ``F`` the faces
    of the mesh, the peak is the largest of

    * sampling: ``"dense"`` holds the float32 values, ``4P``; ``"coarse_to_fine"`` holds, at its
      last stage, the values, the cell mask, the evaluated-point mask and the previous level's
      arrays: ``4P + P + P + 2·P/8`` (the upsampling step, ``4P + P + 5·P/8``, is smaller);
      plus the point index buffers of one chunk and one grid plane, ``48·(c + n²) + 56·n²``,
      and the evaluation workspace of one chunk, ``200·c``;
    * marching cubes: the arrays kept from sampling (``4P``, or ``6P`` with the masks) plus a
      slab's float32 copy and mask, ``5·S``, and the mesh so far, ``250·F``;
    * building the mesh (the volume is freed first): ``400·F`` for vertices, faces, face and
      vertex normals (or ``normal_fn``'s, chunked) and their temporaries.

    The per-face constants are about 1.5× what ``tracemalloc`` measures (marching cubes with
    surface following ≈ 95–170 B, trimesh's vertex normals ≈ 320 B per face).

    ``F`` is not known before the field is evaluated; the bound assumes ``F ≤ 18·(R − 1)²``,
    the faces of a surface whose area is that of the whole box's boundary (a sphere inscribed
    in the box has half that). Not counted: what ``sdf_fn`` itself allocates for one chunk
    (a network's activations) and the interpreter's baseline. A larger surface (a noisy field),
    or a level set lying exactly on grid points across a whole slab (a grid-aligned analytic
    box), which makes a slab larger, can exceed the bound.

    Args:
        resolution: Grid points per axis of the final grid.
        method: ``"coarse_to_fine"`` or ``"dense"``.
        coarse_resolution: As in :func:`extract_mesh`.
        chunk_size: As in :func:`extract_mesh`.

    Returns:
        The bound in bytes.

    Example:
        >>> from renderer.meshing import estimate_mesh_memory
        >>> round(estimate_mesh_memory(1024, "dense") / 2**30, 1)  # GiB
        8.5
    """
    if resolution < 2 or chunk_size < 1 or coarse_resolution < 2:
        raise ValueError(
            "resolution and coarse_resolution must be at least 2 and chunk_size positive, got "
            f"{resolution}, {coarse_resolution}, {chunk_size}"
        )
    num_stages = _num_stages(resolution, method, coarse_resolution)
    stride = 1 << num_stages
    n = (-(-(resolution - 1) // stride)) * stride + 1  # points per axis of the last level
    points = n**3
    faces = 18 * (resolution - 1) ** 2
    slab = min(points, _MC_SLAB_POINTS + 2 * n * n)  # a slab ends on a whole plane
    evaluation = 48 * (chunk_size + n * n) + 56 * n * n + 200 * chunk_size
    if num_stages == 0:
        kept = 4 * points
        sampling = kept + evaluation
    else:
        kept = 6 * points
        sampling = kept + points // 4 + evaluation
    marching = kept + 5 * slab + 250 * faces
    building = 400 * faces
    return int(max(sampling, marching, building))


def _num_stages(resolution: int, method: str, coarse_resolution: int) -> int:
    """The number ``L`` of refinements of the coarse-to-fine hierarchy (0: dense)."""
    if method == "dense":
        return 0
    if method != "coarse_to_fine":
        raise ValueError(f"method must be 'coarse_to_fine' or 'dense', got {method!r}")
    ratio = (resolution - 1) / (coarse_resolution - 1)
    return max(0, round(math.log2(ratio))) if ratio > 1 else 0


def _available_memory() -> tuple[int, str] | None:
    """Bytes of memory available to this process now, and where that number comes from.

    ``MemAvailable`` of ``/proc/meminfo`` (else ``psutil``, else ``os.sysconf``'s free pages),
    capped by the headroom of a cgroup memory limit (containers); None when nothing says.
    """
    found: tuple[int, str] | None = None
    try:
        with open("/proc/meminfo", "rb") as f:
            for line in f:
                if line.startswith(b"MemAvailable:"):
                    found = int(line.split()[1]) * 1024, "MemAvailable in /proc/meminfo"
                    break
    except (OSError, ValueError, IndexError):
        pass
    if found is None:
        try:
            import psutil  # optional

            found = int(psutil.virtual_memory().available), "psutil"
        except Exception:  # not installed, or no answer on this platform
            pass
    if found is None:
        try:
            found = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "free pages"
        except (AttributeError, ValueError, OSError):
            pass
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
         "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
    ):
        try:
            limit = Path(limit_file).read_text().strip()
            usage = int(Path(usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and (found is None or int(limit) - usage < found[0]):
            found = max(0, int(limit) - usage), f"the cgroup limit {limit_file}"
        break
    return found


def _check_memory(
    resolution: int, method: str, coarse_resolution: int, chunk_size: int, budget: int | None
) -> None:
    """Raise :class:`MeshMemoryError` when the estimate exceeds ``budget`` (default: available)."""
    need = estimate_mesh_memory(
        resolution, method, coarse_resolution=coarse_resolution, chunk_size=chunk_size
    )
    source = "max_memory_bytes"
    if budget is None:
        available = _available_memory()
        if available is None:
            return  # nothing to compare with
        budget, source = available
    if need <= budget:
        return

    def fits(r: int, m: str) -> bool:
        return estimate_mesh_memory(
            r, m, coarse_resolution=coarse_resolution, chunk_size=chunk_size
        ) <= budget

    gib = 2.0**30
    advice = []
    lo, hi = 1, resolution  # largest resolution that fits, by bisection (monotone estimate)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid, method) else (lo, mid)
    if lo >= 2:
        advice.append(f"lower the resolution (--resolution) to at most {lo}")
    other = "dense" if method == "coarse_to_fine" else "coarse_to_fine"
    if fits(resolution, other):
        need_other = estimate_mesh_memory(
            resolution, other, coarse_resolution=coarse_resolution, chunk_size=chunk_size
        )
        note = " (it evaluates every point: slower)" if other == "dense" else ""
        advice.append(f"use method '{other}', which needs {need_other / gib:.1f} GiB{note}")
    advice.append("run on a machine with more memory")
    raise MeshMemoryError(
        f"meshing a {resolution}³ grid with method '{method}' needs about {need / gib:.1f} GiB "
        f"of memory, but only {budget / gib:.1f} GiB is available ({source}); "
        + ", or ".join(advice)
    )


def export_mesh(mesh: trimesh.Trimesh, path: str | os.PathLike) -> Path:
    """Write a mesh to ``.ply`` (binary) or ``.obj``, chosen by the file's extension.

    Vertex normals are always written (computed from the faces if the mesh has none stored);
    vertex colours are written when the mesh has them. Parent directories are created. The file is
    written atomically: to a temporary file in the same directory, then ``os.replace``d over
    ``path``, so a reader never sees a half-written mesh.

    Args:
        mesh: The mesh.
        path: Destination ending in ``.ply`` or ``.obj`` (case-insensitive).

    Returns:
        ``path`` as a :class:`pathlib.Path`.

    Raises:
        ValueError: The extension is neither ``.ply`` nor ``.obj``.
        OSError: The directory cannot be created or written (the message names the path).

    Example:
        >>> import tempfile, trimesh
        >>> from renderer.meshing import export_mesh
        >>> out = export_mesh(trimesh.creation.icosphere(), tempfile.mkdtemp() + "/ball.ply")
        >>> len(trimesh.load(out).faces)
        1280
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in _EXPORT_EXTENSIONS:
        raise ValueError(
            f"cannot export a mesh to {str(path)!r}: unsupported extension {path.suffix!r}; "
            f"allowed extensions are {', '.join(_EXPORT_EXTENSIONS)}"
        )
    if suffix == ".ply":
        data = trimesh.exchange.ply.export_ply(mesh, encoding="binary", vertex_normal=True)
    else:
        text = trimesh.exchange.obj.export_obj(
            mesh, include_normals=True, include_color=True, include_texture=False
        )
        data = text.encode("utf-8")

    return write_atomically(path, data, "mesh")


# --------------------------------------------------------------------------------------------
# Field evaluation


class _ChunkedEvaluator:
    """Evaluates ``sdf_fn`` at final-grid integer indices, in chunks, counting and checking."""

    def __init__(self, sdf_fn, lo, spacing, chunk_size, device, progress, method):
        self.sdf_fn = sdf_fn
        self.lo = lo
        self.spacing = spacing
        self.chunk_size = chunk_size
        self.device = torch.device(device)
        self.count = 0
        self.callback = progress if callable(progress) else None
        self.bar = tqdm(
            total=0, unit="pt", unit_scale=True, desc=f"meshing ({method})",
            disable=not progress or self.callback is not None,
            mininterval=0.1 if sys.stderr.isatty() else 10.0,  # keep logs short off a terminal
        )

    def close(self) -> None:
        self.bar.close()

    def announce(self, n: int) -> None:
        """Grow the progress bar's total by the ``n`` points about to be evaluated."""
        self.bar.total += n

    def __call__(self, index: np.ndarray) -> np.ndarray:
        """Field values at grid indices ``index [M, 3]`` (≤ chunk_size rows) as float32 ``[M]``.

        The world point is ``lo + index ⊙ h`` computed in float64 from the *final* grid's index,
        so the dense and coarse-to-fine paths query bit-identical points.
        """
        x64 = self.lo + index.astype(np.float64) * self.spacing
        x = torch.from_numpy(x64.astype(np.float32)).to(self.device)
        with torch.no_grad():
            out = self.sdf_fn(x)
        if not isinstance(out, Tensor):
            raise TypeError(f"sdf_fn must return a torch.Tensor, got {type(out).__name__}")
        if out.shape not in ((len(x),), (len(x), 1)):
            raise ValueError(
                f"sdf_fn must map x [N, 3] to sdf [N]; for N={len(x)} it returned shape "
                f"{tuple(out.shape)}"
            )
        values = out.detach().reshape(-1).float().cpu().numpy()
        finite = np.isfinite(values)
        if not finite.all():
            bad = int(np.argmin(finite))
            raise ValueError(
                f"sdf_fn returned {int((~finite).sum())} non-finite values (NaN or inf) among "
                f"{len(values)} points, e.g. {values[bad]} at x={x64[bad].tolist()}; the field "
                "must be finite everywhere in the box"
            )
        self.count += len(values)
        self.bar.update(len(values))
        if self.callback is not None:
            self.callback(self.count, int(self.bar.total))
        return values


def _evaluate_lattice(evaluator: _ChunkedEvaluator, n: int, stride: int) -> np.ndarray:
    """Field on the full lattice ``stride · (i, j, k)``, ``0 ≤ i, j, k < n``, as ``[n, n, n]``."""
    total = n**3
    evaluator.announce(total)
    values = np.empty(total, dtype=np.float32)
    for start in range(0, total, evaluator.chunk_size):
        flat = np.arange(start, min(start + evaluator.chunk_size, total))
        index = np.stack(np.unravel_index(flat, (n, n, n)), axis=-1) * stride
        values[start : start + len(flat)] = evaluator(index)
    return values.reshape(n, n, n)


def _evaluate_points(evaluator: _ChunkedEvaluator, index: np.ndarray) -> np.ndarray:
    """Field at the final-grid indices ``index [M, 3]``, chunked, as ``[M]``."""
    evaluator.announce(len(index))
    values = np.empty(len(index), dtype=np.float32)
    for start in range(0, len(index), evaluator.chunk_size):
        chunk = index[start : start + evaluator.chunk_size]
        values[start : start + len(chunk)] = evaluator(chunk)
    return values


def _evaluate_mask(
    evaluator: _ChunkedEvaluator, values: np.ndarray, todo: np.ndarray, stride: int
) -> None:
    """``values[todo] =`` the field at the lattice points ``stride · (i, j, k)`` marked in ``todo``.

    Points are evaluated in C order in chunks of exactly ``chunk_size`` (the same calls as
    evaluating ``np.argwhere(todo)`` at once), but indices are gathered one ``i``-plane at a time,
    so the index buffers hold at most ``chunk_size`` + one plane of points, however many are marked.
    """
    chunk_size = evaluator.chunk_size
    evaluator.announce(int(np.count_nonzero(todo)))
    pending: list[np.ndarray] = []
    num_pending = 0

    def evaluate(index: np.ndarray) -> None:
        values[index[:, 0], index[:, 1], index[:, 2]] = evaluator(index * stride)

    for i in range(todo.shape[0]):
        jk = np.argwhere(todo[i])
        if len(jk) == 0:
            continue
        index = np.empty((len(jk), 3), dtype=np.int64)
        index[:, 0] = i
        index[:, 1:] = jk
        del jk
        pending.append(index)
        num_pending += len(index)
        if num_pending >= chunk_size:
            buffer = np.concatenate(pending) if len(pending) > 1 else pending[0]
            full = len(buffer) - len(buffer) % chunk_size
            for start in range(0, full, chunk_size):
                evaluate(buffer[start : start + chunk_size])
            pending = [buffer[full:]] if full < len(buffer) else []
            num_pending = len(buffer) - full
            del buffer
    if num_pending:
        evaluate(np.concatenate(pending))


# --------------------------------------------------------------------------------------------
# The hierarchy


@dataclass
class _Grid:
    """Field samples on the final ``R³`` grid.

    ``values [R, R, R]``; ``exact [R, R, R]`` marks points where the field was evaluated (the
    rest are interpolated); ``cells [R−1, R−1, R−1]`` marks the cells to mesh, all of whose corners
    are exact. ``exact`` and ``cells`` are None for a fully evaluated grid (mesh every cell).
    """

    values: np.ndarray
    exact: np.ndarray | None
    cells: np.ndarray | None


def _sample_grid(
    evaluator: _ChunkedEvaluator, resolution: int, num_stages: int, level: float, margin: float
) -> _Grid:
    """Sample the field on the ``resolution³`` grid, exactly near the level set.

    With ``num_stages = 0`` every point is evaluated. Otherwise the lattice of stride ``s = 2^L``
    (in final-grid units) with ``n₀ = ⌈(R − 1)/s⌉ + 1`` points per axis is evaluated, then refined
    ``L`` times inside the cells that :func:`_keep_cells` keeps.

    Memory: a stage holds the refined ``values`` (float32), its ``cells`` and one point mask
    (``todo``, which becomes ``exact``) — 6 bytes per final point — plus the coarser level's
    arrays; no other full-size temporary (see :func:`estimate_mesh_memory`).
    """
    stride = 1 << num_stages
    n = -(-(resolution - 1) // stride) + 1
    values = _evaluate_lattice(evaluator, n, stride)
    if num_stages == 0:
        return _Grid(values, None, None)

    exact = np.ones(values.shape, dtype=bool)
    cells = np.zeros((0, 0, 0), dtype=bool)
    for _ in range(num_stages):
        half_diagonal = 0.5 * float(np.linalg.norm(evaluator.spacing * stride))
        kept = _keep_cells(values, level, margin * half_diagonal)
        cells = _children(kept)  # children of kept cells at the next level
        del kept
        values = _upsample2(values)
        stride //= 2
        # The corners of the children, less the points of the coarser lattice already exact.
        todo = _cell_corners(cells)
        todo[::2, ::2, ::2] &= ~exact
        _evaluate_mask(evaluator, values, todo, stride)
        todo[::2, ::2, ::2] |= exact
        exact = todo
        del todo
    r = resolution
    return _Grid(values[:r, :r, :r], exact[:r, :r, :r], cells[: r - 1, : r - 1, : r - 1])


def _keep_cells(values: np.ndarray, level: float, threshold: float) -> np.ndarray:
    """Cells that may hold the level set: a sign change, or a corner within ``threshold``."""
    corners = _corner_views(values)
    # Pairwise reductions into one buffer each (np.minimum.reduce would stack the views first).
    cmin = np.minimum(corners[0], corners[1])
    cmax = np.maximum(corners[0], corners[1])
    for c in corners[2:]:
        np.minimum(cmin, c, out=cmin)
        np.maximum(cmax, c, out=cmax)
    keep = cmin <= level
    keep &= cmax >= level
    # min(|cmin − level|, |cmax − level|), in place in cmin.
    cmin -= level
    np.abs(cmin, out=cmin)
    cmax -= level
    np.abs(cmax, out=cmax)
    np.minimum(cmin, cmax, out=cmin)
    keep |= cmin <= threshold
    return keep


def _corner_views(a: np.ndarray) -> list[np.ndarray]:
    """The 8 arrays ``a[i + di, j + dj, k + dk]`` over cells ``(i, j, k)``, ``d ∈ {0, 1}³``."""
    m = [s - 1 for s in a.shape]
    return [
        a[di : di + m[0], dj : dj + m[1], dk : dk + m[2]]
        for di in (0, 1)
        for dj in (0, 1)
        for dk in (0, 1)
    ]


def _cell_corners(cells: np.ndarray) -> np.ndarray:
    """Points that are a corner of at least one True cell (shape: each axis + 1)."""
    points = np.zeros([s + 1 for s in cells.shape], dtype=bool)
    m = cells.shape
    for di in (0, 1):
        for dj in (0, 1):
            for dk in (0, 1):
                points[di : di + m[0], dj : dj + m[1], dk : dk + m[2]] |= cells
    return points


def _children(kept: np.ndarray) -> np.ndarray:
    """The 8 children of every cell at the next level: ``kept`` repeated twice along each axis."""
    out = np.empty([2 * s for s in kept.shape], dtype=bool)
    for di in (0, 1):
        for dj in (0, 1):
            for dk in (0, 1):
                out[di::2, dj::2, dk::2] = kept
    return out


def _upsample2(a: np.ndarray) -> np.ndarray:
    """Trilinear refinement of a lattice by 2: ``[n]³ → [2n − 1]³``, keeping the old points.

    Separable, in place in the output: along each axis in turn the new midpoints become the mean
    of their two neighbours, which makes face centres the mean of 4 corners and cell centres the
    mean of 8 — exactly the trilinear interpolant.
    """
    out = np.empty([2 * s - 1 for s in a.shape], dtype=a.dtype)
    out[::2, ::2, ::2] = a
    for axis in range(3):
        # Axes already done are complete (all points); axes still to do hold only even points.
        def at(along: slice, axis: int = axis) -> tuple[slice, ...]:
            done, todo = slice(None), slice(None, None, 2)
            return tuple(along if d == axis else done if d < axis else todo for d in range(3))

        mid = at(slice(1, None, 2))
        np.add(out[at(slice(0, -1, 2))], out[at(slice(2, None, 2))], out=out[mid])
        out[mid] *= 0.5
    return out


# --------------------------------------------------------------------------------------------
# Marching cubes


@functools.lru_cache(maxsize=1)
def _skimage_mask_offset() -> int | None:
    """Where scikit-image reads the mask of a cube: at its lower (0) or upper (1) corner.

    scikit-image documents ``mask`` per volume element, not per cube; 0.26 gates the cube with
    corners ``(i − 1 … i)`` by ``mask[i]``. Probed once on a tiny volume so a change of convention
    cannot silently mesh the wrong cells; ``None`` (unknown) disables masking, which is still
    correct for a Lipschitz field because interpolated values keep the right sign.
    """
    volume = np.full((4, 4, 4), 1.0, dtype=np.float32)
    volume[::2, ::2, ::2] = -1.0  # every cube has a sign change
    mask = np.zeros(volume.shape, dtype=bool)
    mask[2, 2, 2] = True
    try:
        verts, faces, _, _ = measure.marching_cubes(volume, 0.0, mask=mask, allow_degenerate=True)
    except (RuntimeError, ValueError):
        return None
    cubes = np.unique(np.floor(verts[faces].mean(axis=1)).astype(int), axis=0)
    if len(cubes) != 1:
        return None
    return {(2, 2, 2): 0, (1, 1, 1): 1}.get(tuple(cubes[0].tolist()))


def _closed_marching_cubes(
    grid: _Grid, evaluator: _ChunkedEvaluator, level: float, aabb: Sequence[float | int]
) -> tuple[np.ndarray, np.ndarray]:
    """Marching cubes on the marked cells, grown until the mesh has no boundary inside the box.

    A boundary edge of the mesh lies on a cell face where the surface leaves the marked cells; for
    a field that honours the Lipschitz bound there is none, because every cell the surface crosses
    is marked. A field that breaks the bound (e.g. a neural SDF that is steeper than ``margin``
    somewhere) could leave a hole there, so the unmarked cell across such a face is marked, its
    corners are evaluated, and marching cubes runs again — surface following, as in continuation
    methods. The mesh is therefore closed wherever the dense one is, though a whole component that
    no kept cell touches can still be missed. Returns vertices in grid-index units and faces.
    """
    while True:
        verts, faces = _marching_cubes(grid.values, grid.cells, level, aabb)
        if grid.cells is None:
            return verts, faces
        grow = _cells_across_boundary(verts, faces, grid.cells)
        if len(grow) == 0:
            return verts, faces
        grid.cells[tuple(grow.T)] = True
        corners = (grow[:, None, :] + _CORNER_OFFSETS[None]).reshape(-1, 3)
        corners = np.unique(corners, axis=0)
        corners = corners[~grid.exact[tuple(corners.T)]]
        grid.values[tuple(corners.T)] = _evaluate_points(evaluator, corners)
        grid.exact[tuple(corners.T)] = True


_CORNER_OFFSETS = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)])


def _cells_across_boundary(verts: np.ndarray, faces: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """Unmarked cells ``[K, 3]`` on the other side of the cell faces crossed by boundary edges.

    Marching-cubes vertices lie on grid edges, so both ends of a mesh edge lie on one cell face:
    the axis ``n`` on which both have the same integer coordinate ``c`` is the face's normal, and
    the edge's midpoint fixes the face's other two cell indices. The face separates cells
    ``c − 1`` and ``c`` along ``n``.
    """
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    edges.sort(axis=1)
    key = edges[:, 0].astype(np.int64) * len(verts) + edges[:, 1]
    unique, counts = np.unique(key, return_counts=True)
    boundary = unique[counts == 1]
    if len(boundary) == 0:
        return np.zeros((0, 3), dtype=np.int64)
    a, b = verts[boundary // len(verts)], verts[boundary % len(verts)]
    base = np.floor(0.5 * (a + b)).astype(np.int64)
    shape = np.array(cells.shape)
    found = []
    for axis in range(3):
        on_face = (a[:, axis] == b[:, axis]) & (a[:, axis] == np.round(a[:, axis]))
        for side in (-1, 0):
            cand = base[on_face].copy()
            cand[:, axis] = np.round(a[on_face, axis]).astype(np.int64) + side
            cand = cand[((cand >= 0) & (cand < shape)).all(axis=1)]
            found.append(cand[~cells[tuple(cand.T)]])
    return np.unique(np.concatenate(found), axis=0)


def _marching_cubes(
    values: np.ndarray, cells: np.ndarray | None, level: float, aabb: Sequence[float | int]
) -> tuple[np.ndarray, np.ndarray]:
    """Marching cubes on the marked cells (all if None); vertices in grid-index units, faces.

    scikit-image needs a C-contiguous float32 volume (a cropped grid is copied) and a mask of the
    same shape, so it runs slab by slab along the first axis — slabs of about
    ``_MC_SLAB_POINTS`` points that share their boundary planes — which bounds both to one slab.
    Every cell is meshed from its own corners, so only the vertices on a shared plane need care:
    each slab has its own copy. A plane is used as a seam only when no vertex can fall on one of
    its grid points (:func:`_clean_seam`); then every vertex on it lies strictly inside a grid
    edge of the plane, which its position names, and both slabs interpolate it from the same two
    values bit for bit, so the copies are welded by position. The result is the single-volume
    mesh up to the order of vertices and faces and the float32 rounding of vertex coordinates
    (scikit-image returns them relative to the slab); a crop of one slab gives exactly that mesh.
    """
    resolution = values.shape[0]

    def no_surface() -> ValueError:
        return ValueError(
            f"the field has no level set at level={level} inside the box aabb={tuple(aabb)} on "
            f"the {resolution}³ grid (field values there range over [{float(values.min()):.4g}, "
            f"{float(values.max()):.4g}]); nothing to mesh"
        )

    offset = np.zeros(3, dtype=np.int64)
    shift = None
    if cells is not None:
        if not cells.any():
            raise no_surface()
        # Crop to the bounding box of the marked cells (and their upper corners).
        nonzero = [np.flatnonzero(cells.any(axis=axes)) for axes in ((1, 2), (0, 2), (0, 1))]
        start = np.array([a[0] for a in nonzero])
        stop = np.array([a[-1] + 1 for a in nonzero])  # exclusive, in cells
        values = values[start[0] : stop[0] + 1, start[1] : stop[1] + 1, start[2] : stop[2] + 1]
        cells = cells[start[0] : stop[0], start[1] : stop[1], start[2] : stop[2]]
        offset = start
        shift = _skimage_mask_offset()
    if not (values.min() <= level <= values.max()):
        raise no_surface()

    num_cells = values.shape[0] - 1
    thickness = max(1, _MC_SLAB_POINTS // (values.shape[1] * values.shape[2]) - 1)
    # Vertex coordinates below 2^e: float32 rounds j + t to j only for t < 2^(e − 25).
    tolerance = 2.0 ** (max(values.shape).bit_length() - 22)
    vertex_parts: list[np.ndarray] = []
    face_parts: list[np.ndarray] = []
    num_vertices = 0
    seam: tuple[np.ndarray, np.ndarray] | None = None  # the last slab's top plane: keys, ids
    a = 0
    while a < num_cells:
        b = _slab_end(values, a, a + thickness, level, tolerance)
        slab = values[a : b + 1]
        mask = None
        if cells is not None and shift is not None:
            slab_cells = cells[a:b]
            mask = np.zeros(slab.shape, dtype=bool)
            m = slab_cells.shape
            mask[shift : shift + m[0], shift : shift + m[1], shift : shift + m[2]] = slab_cells
        verts, faces = _slab_marching_cubes(slab, level, mask)
        del mask
        ids = np.full(len(verts), -1, dtype=np.int64)
        if seam is not None and len(verts):  # weld the bottom plane to the last slab's top
            bottom = np.flatnonzero(verts[:, 0] == 0)
            keys, seam_ids = seam
            bottom_keys = _plane_keys(verts[bottom])
            pos = np.minimum(np.searchsorted(keys, bottom_keys), len(keys) - 1)
            found = keys[pos] == bottom_keys
            ids[bottom[found]] = seam_ids[pos[found]]
        new = ids < 0
        ids[new] = np.arange(num_vertices, num_vertices + int(new.sum()))
        num_vertices += int(new.sum())
        vertex_parts.append(verts[new].astype(np.float64) + offset + (a, 0, 0))
        face_parts.append(ids[faces])
        top = np.flatnonzero(verts[:, 0] == b - a)
        top_keys = _plane_keys(verts[top])
        order = np.argsort(top_keys, kind="stable")
        seam = (top_keys[order], ids[top][order]) if len(top) else None
        a = b
    faces = np.concatenate(face_parts)
    if len(faces) == 0:
        raise no_surface()
    return np.concatenate(vertex_parts), faces


# Marching cubes runs on slabs of about this many grid points (see _marching_cubes): 64 MiB of
# float32 and 16 MiB of mask; a 256² cross-section still fits in one slab.
_MC_SLAB_POINTS = 1 << 24


def _slab_marching_cubes(
    slab: np.ndarray, level: float, mask: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """scikit-image's marching cubes on one slab: float32 vertices ``[V, 3]``, int64 faces; empty
    arrays when the slab holds no surface in its masked cells."""
    empty = np.zeros((0, 3), dtype=np.float32), np.zeros((0, 3), dtype=np.int64)
    if (mask is not None and not mask.any()) or not (slab.min() <= level <= slab.max()):
        return empty
    try:
        # The default gradient_direction="descent" gives outward normals for f < level inside.
        verts, faces, _, _ = measure.marching_cubes(slab, level, mask=mask)
    except RuntimeError:  # "No surface found at the given iso value."
        return empty
    return verts, faces.astype(np.int64)


def _slab_end(values: np.ndarray, start: int, target: int, level: float, tolerance: float) -> int:
    """Where the slab starting at plane ``start`` ends: ``target`` or the nearest plane before
    it that is a clean seam, else the nearest after it; the last plane ends the volume."""
    last = values.shape[0] - 1
    if target >= last:
        return last
    for end in [*range(target, start, -1), *range(target + 1, last)]:
        if _clean_seam(values, end, level, tolerance):
            return end
    return last


def _clean_seam(values: np.ndarray, i: int, level: float, tolerance: float) -> bool:
    """Whether no marching-cubes vertex can land on a grid point of the interior plane ``i``.

    A vertex on the edge from ``p`` to a neighbour ``q`` sits at ``t = (level − f(p)) / (f(q) −
    f(p))`` from ``p``; it can round onto ``p`` only when ``|f(p) − level| ≤ tolerance ·
    |f(q) − f(p)|`` (which includes ``f(p) = level``). Checked against all 6 neighbours.
    """
    plane = values[i]
    spread = np.maximum(np.abs(values[i - 1] - plane), np.abs(values[i + 1] - plane))
    dy = np.abs(np.diff(plane, axis=0))
    np.maximum(spread[:-1], dy, out=spread[:-1])
    np.maximum(spread[1:], dy, out=spread[1:])
    dz = np.abs(np.diff(plane, axis=1))
    np.maximum(spread[:, :-1], dz, out=spread[:, :-1])
    np.maximum(spread[:, 1:], dz, out=spread[:, 1:])
    return not bool(np.any(np.abs(plane - level) <= tolerance * spread))


def _plane_keys(verts: np.ndarray) -> np.ndarray:
    """One uint64 per vertex from the bits of its float32 ``(y, z)`` coordinates."""
    yz = np.ascontiguousarray(verts[:, 1:], dtype=np.float32)
    return yz.view(np.uint64).reshape(-1)


def _vertex_normals(
    normal_fn: NormalFn, vertices: np.ndarray, chunk_size: int, device: str | torch.device
) -> np.ndarray:
    """Unit normals ``normal_fn(x)`` at the vertices, chunked."""
    normals = np.empty(vertices.shape, dtype=np.float64)
    for start in range(0, len(vertices), chunk_size):
        x = torch.from_numpy(vertices[start : start + chunk_size].astype(np.float32)).to(device)
        with torch.enable_grad():
            n = normal_fn(x)
        if not isinstance(n, Tensor) or tuple(n.shape) != (len(x), 3):
            shape = tuple(n.shape) if isinstance(n, Tensor) else type(n).__name__
            raise ValueError(f"normal_fn must map x [N, 3] to normals [N, 3], got {shape}")
        normals[start : start + len(x)] = n.detach().double().cpu().numpy()
    if not np.isfinite(normals).all():
        raise ValueError("normal_fn returned non-finite normals")
    return normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)


def _check_aabb(aabb: Sequence[float | int]) -> tuple[np.ndarray, np.ndarray]:
    box = np.asarray(aabb, dtype=np.float64).reshape(-1)
    if box.shape != (6,) or not np.isfinite(box).all() or not (box[:3] < box[3:]).all():
        raise ValueError(
            f"aabb must be 6 finite numbers (x_min, y_min, z_min, x_max, y_max, z_max) with "
            f"min < max, got {tuple(aabb)}"
        )
    return box[:3], box[3:]
