"""Single-layer meshes of closest-surface-point (CSP) fields, open or closed.

Marching cubes needs a sign change; an unsigned distance ``u`` has none at its zero set, so the
usual UDF extraction (CSP-Net's, Venkatesh et al., ICCV 2021) takes the ``ε`` level set of ``u``:
a thin *double shell* — a closed "pillow" around every open sheet, two offset copies of a closed
surface. This module turns that shell into one layer lying on the surface:

1. marching cubes of ``u = ‖x − CSP(x)‖`` at ``ε = level_voxels`` voxels
   (:func:`renderer.meshing.extract_mesh`, coarse to fine);
2. each shell face gets its *offset direction* ``d = normalise(c − CSP(c))`` at its centroid
   ``c`` — which side of the surface it lies on — and the surface normal ``n``
   (Jacobian normal at ``c``, :func:`fields.csp.normal_jacobian`, unsigned). Where the shell
   wraps round an open boundary (the pillow's rim) ``d`` turns tangent to the surface and the
   Jacobian drops to rank 1 (every point there maps onto the boundary curve, so ``n`` is
   arbitrary): faces with ``|d·n| < rim_cos`` or ``σ₂ < rank_ratio·σ₁`` are dropped, which cuts
   every pillow into its two sides;
3. the remaining faces split into connected components over shared edges, joining only faces
   whose offset directions agree (``d₁·d₂ > 0``), so each side of each sheet is one component;
   components under 1 % of the largest are debris; a region of dropped faces whose border
   runs along a single side (≥ 80 % of its edges) is a hole the rim test punched into that side
   where the learned Jacobian is noisy (folds, creases) and rejoins it, while a rim band, which
   borders both sides, stays cut;
4. every vertex is moved onto the surface (``x ← CSP(x)``), and the two sides of a sheet now
   coincide: components are kept from the largest down, dropping one whose projected vertices
   lie (median) within ``duplicate_voxels`` of an already kept component — the other side;
5. the kept components under 1 % of the largest (rim flaps, bubbles where the field's distance
   dips below ``ε`` off the surface) are dropped, and the small holes left — simple boundary
   loops of at most ``max_hole_edges`` edges — are closed by fans.

What comes out: one layer on the surface; open boundaries stay open (about ``ε`` inside the
true boundary, where the rim was cut); closed surfaces come out closed (their inner and outer
shells are two components, one is kept). Limits: surfaces closer than about ``2ε`` to each other
(or to themselves) merge into one shell and may lose a side; non-orientable sheets (a Möbius
strip) are cut where their side flips; the result is only as good as the field's CSP near the
surface (noisy ``n`` near boundaries moves the cut).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
import trimesh
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree
from torch import Tensor

from fields.csp import normal_jacobian
from renderer.meshing import extract_mesh

__all__ = ["OpenMeshResult", "extract_open_mesh", "boundary_loops"]


@dataclass
class OpenMeshResult:
    """A single-layer mesh of a CSP field.

    Attributes:
        mesh: the mesh on the surface (normalised frame), vertex normals from the Jacobian.
        shell_faces: faces of the double shell it was cut from.
        components: side components found / kept.
        kept: components kept.
        holes_patched: regions of dropped shell faces put back into the side around them
            (see ``hole_share``).
        holes_filled: small holes closed by fans (see ``max_hole_edges``).
        level: the ``ε`` of the shell, in world units.
        resolution: marching-cubes grid points per axis.
        seconds: wall-clock time of the whole extraction.
    """

    mesh: trimesh.Trimesh
    shell_faces: int
    components: int
    kept: int
    holes_patched: int
    holes_filled: int
    level: float
    resolution: int
    seconds: float


def _chunked(fn: Callable[[Tensor], Tensor], x: Tensor, chunk: int) -> Tensor:
    return torch.cat([fn(c) for c in x.split(chunk)]) if len(x) else x.new_zeros(0, 3)


def extract_open_mesh(
    csp_fn: Callable[[Tensor], Tensor],
    *,
    resolution: int = 256,
    aabb: Sequence[float] = (-1.0, -1.0, -1.0, 1.0, 1.0, 1.0),
    level_voxels: float = 1.5,
    rim_cos: float = 0.5,
    rank_ratio: float = 0.5,
    duplicate_voxels: float = 2.0,
    min_component_faces: int = 8,
    min_component_fraction: float = 0.01,
    hole_share: float = 0.8,
    max_hole_edges: int = 24,
    grow_rings: int = 1,
    chunk_size: int = 1 << 15,
    progress: bool | Callable[[int, int], None] = False,
    device: str | torch.device = "cpu",
) -> OpenMeshResult:
    """One layer of the surface of ``csp_fn`` (see the module docstring for the method).

    Args:
        csp_fn: ``[N, 3] → [N, 3]`` closest surface points, differentiable in ``x`` (for the
            Jacobian normals).
        resolution: marching-cubes grid points per axis.
        aabb: the box to mesh.
        level_voxels: ``ε`` of the shell in voxels (CSP-Net meshes at 1.5).
        rim_cos: faces whose offset direction is this close to tangent (``|d·n| <`` it) are the
            rim and are dropped.
        rank_ratio: faces where the Jacobian's second singular value is below this fraction of
            the first (rank 1: past an open boundary) are the rim too.
        duplicate_voxels: a component whose projected vertices lie within this many voxels
            (median) of a kept one is its other side and is dropped.
        min_component_faces: smaller components are dropped as debris.
        min_component_fraction: kept components with fewer faces than this fraction of the
            largest are dropped too — flaps of the rim and small bubbles where the field's
            distance dips below ``ε`` away from the surface.
        hole_share: a region of dropped faces whose border runs along one side component for at
            least this share of its edges is a hole the rim test punched into that side (a
            noisy Jacobian) and rejoins it; the rim band of an open boundary borders both sides
            (about half each) and stays cut, so do real holes through the sheet.
        grow_rings: dropped faces next to a kept side (same offset direction) rejoin it, this many
            rings deep — the scattered faces a noisy Jacobian drops inside the surface come back,
            while the rim band, wider than that, still separates the sides.
        max_hole_edges: boundary loops of at most this many edges are holes the rim test made
            inside the surface (where the field's Jacobian is noisy) and are filled with a fan
            around their centroid's closest surface point; longer loops are real boundaries.
        chunk_size: points per field evaluation.
        progress: as in :func:`renderer.meshing.extract_mesh`.
        device: where the field runs.

    Raises:
        ValueError: the shell is empty (no surface in the box, or ``ε`` below the field's
            distance floor everywhere).
    """
    t0 = time.perf_counter()
    lo, hi = np.asarray(aabb[:3], dtype=float), np.asarray(aabb[3:], dtype=float)
    voxel = float((hi - lo).max()) / (resolution - 1)
    eps = level_voxels * voxel

    def udf(x: Tensor) -> Tensor:
        with torch.no_grad():
            return torch.linalg.vector_norm(x - csp_fn(x), dim=-1)

    shell = extract_mesh(udf, resolution=resolution, aabb=tuple(aabb), level=eps,
                         chunk_size=chunk_size, progress=progress, device=device).mesh
    if len(shell.faces) == 0:
        raise ValueError(f"the ε = {eps:.3g} level set of the field's distance is empty in the "
                         "box: no surface there, or ε below the field's distance floor")
    faces = np.asarray(shell.faces)
    verts = torch.as_tensor(np.asarray(shell.vertices), dtype=torch.float32, device=device)
    centroids = verts[torch.as_tensor(faces, device=device)].mean(1)

    with torch.no_grad():
        foot = _chunked(csp_fn, centroids, chunk_size)
    d = centroids - foot
    d = d / torch.linalg.vector_norm(d, dim=-1, keepdim=True).clamp_min(1e-12)
    # The Jacobian at the centroid: rank 2 over the surface's interior (the tangent projector),
    # rank 1 beyond an open boundary, where every point maps onto the boundary curve.
    jac = [normal_jacobian(csp_fn, c) for c in centroids.split(chunk_size)]
    n = torch.cat([j[0] for j in jac])
    sv = torch.cat([j[1] for j in jac])
    keep = ((d * n).sum(-1).abs() >= rim_cos) & (sv[:, 1] >= rank_ratio * sv[:, 0])
    d_np, keep_np = d.cpu().numpy(), keep.cpu().numpy()

    # Face adjacency over shared edges, only between kept faces on the same side.
    adj = shell.face_adjacency
    same = keep_np[adj[:, 0]] & keep_np[adj[:, 1]] & (
        (d_np[adj[:, 0]] * d_np[adj[:, 1]]).sum(-1) > 0.0)
    a, b = adj[same, 0], adj[same, 1]
    graph = sp.coo_matrix((np.ones(len(a)), (a, b)), shape=(len(faces), len(faces)))
    n_comp, label = connected_components(graph, directed=False)
    label = np.where(keep_np, label, -1)
    # Components too small to be kept are debris; inside a hole they are islands that would
    # hide the hole from _patch_holes (its border would touch them as well as the side).
    sizes = np.bincount(label[label >= 0], minlength=n_comp)
    big = sizes >= max(min_component_faces, min_component_fraction * sizes.max(initial=0))
    label = np.where((label >= 0) & big[np.maximum(label, 0)], label, -1)
    label, patched = _patch_holes(label, adj, hole_share)
    label = _grow_labels(label, adj, d_np, grow_rings)

    with torch.no_grad():
        projected = _chunked(csp_fn, verts, chunk_size).cpu().numpy()
    sizes = np.bincount(label[label >= 0], minlength=n_comp)
    order = [c for c in np.argsort(-sizes) if sizes[c] >= min_component_faces]
    kept_faces: list[np.ndarray] = []
    kept_points: list[np.ndarray] = []
    tree = None
    for c in order:
        f = faces[label == c]
        pts = projected[np.unique(f)]
        if tree is not None:
            dist, _ = tree.query(pts, k=1)
            if np.median(dist) < duplicate_voxels * voxel:
                continue  # the other side of a sheet already kept
        kept_faces.append(f)
        kept_points.append(pts)
        tree = cKDTree(np.concatenate(kept_points))
    if not kept_faces:
        raise ValueError("no side of the shell survived the rim cut; lower rim_cos")
    largest = max(len(f) for f in kept_faces)
    kept_faces = [f for f in kept_faces if len(f) >= min_component_fraction * largest]
    f = np.concatenate(kept_faces)
    used, inverse = np.unique(f, return_inverse=True)
    mesh = trimesh.Trimesh(projected[used], inverse.reshape(-1, 3), process=False)
    mesh, filled = _fill_small_holes(mesh, max_hole_edges, csp_fn, device)
    # One layer, consistently wound per component; vertex normals from the Jacobian.
    v = torch.as_tensor(mesh.vertices, dtype=torch.float32, device=device)
    vn = torch.cat([normal_jacobian(csp_fn, c)[0] for c in v.split(chunk_size)]).cpu().numpy()
    fn = mesh.face_normals
    vf = np.zeros_like(vn)
    np.add.at(vf, mesh.faces.ravel(), np.repeat(fn, 3, axis=0))
    vn = np.where(((vn * vf).sum(-1) < 0)[:, None], -vn, vn)  # orient as the winding
    mesh.vertex_normals = vn
    return OpenMeshResult(mesh=mesh, shell_faces=len(faces), components=int(n_comp),
                          kept=len(kept_faces), holes_patched=patched, holes_filled=filled,
                          level=eps,
                          resolution=resolution, seconds=time.perf_counter() - t0)


def _patch_holes(label: np.ndarray, adj: np.ndarray, share: float) -> tuple[np.ndarray, int]:
    """Give each connected region of unlabelled faces (−1) the label of the side around it when
    at least ``share`` of the region's border edges touch that one label. A rim band lies
    between the two sides of a sheet and touches both; a hole punched into one side by the rim
    test touches only that side. Returns the new labels and the number of regions patched."""
    free = label < 0
    if not free.any() or share > 1.0:
        return label, 0
    inner = free[adj[:, 0]] & free[adj[:, 1]]
    n = len(label)
    graph = sp.coo_matrix((np.ones(int(inner.sum())), (adj[inner, 0], adj[inner, 1])),
                          shape=(n, n))
    _, region = connected_components(graph, directed=False)
    # Border edges: one face free, the other labelled, as (region, label) pairs.
    pairs = []
    for a, b in ((adj[:, 0], adj[:, 1]), (adj[:, 1], adj[:, 0])):
        m = free[a] & ~free[b]
        pairs.append(np.stack([region[a[m]], label[b[m]]], 1))
    pairs = np.concatenate(pairs)
    if len(pairs) == 0:
        return label, 0
    unique, counts = np.unique(pairs, axis=0, return_counts=True)
    regions, labels = unique[:, 0], unique[:, 1]
    total = np.bincount(regions, weights=counts, minlength=n)
    best = np.zeros(n)
    best_label = np.full(n, -1)
    order = np.argsort(counts, kind="stable")  # the largest count per region is written last
    best[regions[order]] = counts[order]
    best_label[regions[order]] = labels[order]
    holes = np.flatnonzero((total > 0) & (best >= share * total))
    out = label.copy()
    if len(holes):
        patch = free & np.isin(region, holes)
        out[patch] = best_label[region[patch]]
    return out, len(holes)


def _grow_labels(label: np.ndarray, adj: np.ndarray, d: np.ndarray, rings: int) -> np.ndarray:
    """Give unlabelled faces (−1) the label of an adjacent labelled face on the same side
    (``d₁·d₂ > 0``), ``rings`` times."""
    label = label.copy()
    agree = (d[adj[:, 0]] * d[adj[:, 1]]).sum(-1) > 0.0
    for _ in range(rings):
        changed = False
        for a, b in ((adj[:, 0], adj[:, 1]), (adj[:, 1], adj[:, 0])):
            take = agree & (label[a] < 0) & (label[b] >= 0)
            if take.any():
                label[a[take]] = label[b[take]]
                changed = True
        if not changed:
            break
    return label


def _fill_small_holes(mesh: trimesh.Trimesh, max_edges: int, csp_fn: Callable[[Tensor], Tensor],
                      device: str | torch.device) -> tuple[trimesh.Trimesh, int]:
    """Close boundary loops of at most ``max_edges`` edges with a triangle fan around a new
    vertex: the closest surface point of the loop's centroid. Fan faces follow the winding of
    the faces along the loop."""
    faces0 = np.asarray(mesh.faces)
    e = np.sort(faces0[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    u, c = np.unique(e, axis=0, return_counts=True)
    nbrs: dict[int, list[int]] = {}
    for a, b in u[c == 1]:
        nbrs.setdefault(int(a), []).append(int(b))
        nbrs.setdefault(int(b), []).append(int(a))
    loops = [lp for lp in boundary_loops(mesh)
             if 3 <= len(lp) <= max_edges and _is_simple_loop(nbrs, lp)]
    if not loops:
        return mesh, 0
    faces = np.asarray(mesh.faces)
    directed = {(int(a), int(b)) for a, b in faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)}
    centres = np.stack([mesh.vertices[lp].mean(0) for lp in loops])
    with torch.no_grad():
        centres = csp_fn(torch.as_tensor(centres, dtype=torch.float32, device=device))
    base = len(mesh.vertices)
    new_faces = []
    for i, lp in enumerate(loops):
        c = base + i
        for a, b in zip(lp, np.roll(lp, -1)):
            a, b = int(a), int(b)
            # The existing face has the edge as (a, b): the fan face runs (b, a, c).
            new_faces.append((b, a, c) if (a, b) in directed else (a, b, c))
    verts = np.concatenate([mesh.vertices, centres.cpu().numpy()])
    return trimesh.Trimesh(verts, np.concatenate([faces, np.array(new_faces)]),
                           process=False), len(loops)


def boundary_loops(mesh: trimesh.Trimesh) -> list[np.ndarray]:
    """The mesh's boundaries: connected components of its boundary edges (edges used by one
    face), each as a vertex array — in cycle order when the component is a simple loop (every
    vertex on two boundary edges), else in the order a walk along it meets them.

    Example:
        >>> len(boundary_loops(trimesh.creation.icosphere(1)))  # closed: none
        0
    """
    edges = np.sort(np.asarray(mesh.edges), axis=1)
    if len(edges) == 0:
        return []
    unique, counts = np.unique(edges, axis=0, return_counts=True)
    open_edges = unique[counts == 1]
    if len(open_edges) == 0:
        return []
    n = len(mesh.vertices)
    graph = sp.coo_matrix((np.ones(len(open_edges)), (open_edges[:, 0], open_edges[:, 1])),
                          shape=(n, n))
    _, label = connected_components(graph, directed=False)
    neighbours: dict[int, list[int]] = {}
    for a, b in open_edges:
        neighbours.setdefault(int(a), []).append(int(b))
        neighbours.setdefault(int(b), []).append(int(a))
    loops = []
    for comp in np.unique(label[open_edges[:, 0]]):
        members = [v for v in neighbours if label[v] == comp]
        start = members[0]
        order, seen, prev, cur = [start], {start}, None, start
        while True:
            nxt = [v for v in neighbours[cur] if v != prev and v not in seen]
            if not nxt:
                break
            prev, cur = cur, nxt[0]
            order.append(cur)
            seen.add(cur)
        order += [v for v in members if v not in seen]
        loops.append(np.array(order))
    return loops


def _is_simple_loop(mesh_neighbours: dict[int, list[int]], loop: np.ndarray) -> bool:
    return all(len(mesh_neighbours.get(int(v), ())) == 2 for v in loop)
