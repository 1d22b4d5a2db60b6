"""Out-of-memory in mesh extraction is avoided: estimate first, refuse clearly before allocating.

``estimate_mesh_memory`` bounds what ``extract_mesh`` allocates (checked against ``tracemalloc``,
which sees numpy's buffers); ``extract_mesh`` compares it with the memory available (or
``max_memory_bytes``) before it allocates anything or calls the field, and refuses with a
``MeshMemoryError`` that says what would fit.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import torch

from renderer import meshing
from renderer.meshing import MeshMemoryError, estimate_mesh_memory, extract_mesh

GiB = 2**30


def sphere(x: torch.Tensor) -> torch.Tensor:
    return x.norm(dim=-1) - 0.5


def gyroid(x: torch.Tensor) -> torch.Tensor:
    """A surface filling the box: about 15·R² faces, near the bound's assumption of 18·R²."""
    s, c = torch.sin(5 * x), torch.cos(5 * x)
    return (s[:, 0] * c[:, 1] + s[:, 1] * c[:, 2] + s[:, 2] * c[:, 0]) / 5


class CountingField:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return sphere(x)


@pytest.mark.parametrize("method,per_point", [("dense", 4), ("coarse_to_fine", 6)])
def test_estimate_grows_like_the_volume(method, per_point):
    sizes = [256, 512, 1024, 2048, 4096, 8192]
    est = [estimate_mesh_memory(r, method) for r in sizes]
    assert all(isinstance(e, int) for e in est) and est == sorted(est)
    for r, e in zip(sizes, est):
        assert e >= per_point * r**3  # never below the volume it holds
    # O(R³) with an O(R²) mesh term: doubling R multiplies the bound by 4…8, tending to 8.
    ratios = [b / a for a, b in zip(est, est[1:])]
    assert all(4.0 <= q <= 8.0 for q in ratios) and ratios == sorted(ratios)
    assert ratios[-1] > 7.0
    assert est[-1] / sizes[-1] ** 3 < per_point * 1.25


@pytest.mark.parametrize("method", ["dense", "coarse_to_fine"])
@pytest.mark.parametrize("field,resolution", [(sphere, 96), (sphere, 160), (gyroid, 96)])
def test_estimate_bounds_what_is_allocated(method, field, resolution):
    tracemalloc.start()
    try:
        result = extract_mesh(field, resolution=resolution, method=method,
                              max_memory_bytes=1 << 50)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    bound = estimate_mesh_memory(resolution, method)
    assert len(result.mesh.faces) <= 18 * (resolution - 1) ** 2  # the bound's assumption
    print(f"\n{field.__name__} {method} {resolution}³: peak {peak / 2**20:.1f} MiB, "
          f"bound {bound / 2**20:.1f} MiB")
    assert peak <= bound


@pytest.mark.parametrize("method", ["dense", "coarse_to_fine"])
def test_1024_refused_before_any_allocation_or_evaluation(method):
    field = CountingField()
    tracemalloc.start()
    try:
        with pytest.raises(MeshMemoryError) as info:
            extract_mesh(field, resolution=1024, method=method, max_memory_bytes=2 * GiB)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert field.calls == 0
    assert peak < 1 << 20  # nothing of the grid's size was allocated
    assert isinstance(info.value, MemoryError)
    msg = str(info.value)
    need = estimate_mesh_memory(1024, method) / GiB
    assert f"1024³ grid with method '{method}' needs about {need:.1f} GiB" in msg
    assert "only 2.0 GiB is available (max_memory_bytes)" in msg
    assert "--resolution" in msg and "more memory" in msg
    # The suggested resolution fits, the next one up does not.
    suggested = int(msg.split("to at most ")[1].split(",")[0].split(" ")[0])
    assert estimate_mesh_memory(suggested, method) <= 2 * GiB
    assert estimate_mesh_memory(suggested + 1, method) > 2 * GiB


def test_refusal_suggests_the_method_that_fits():
    # coarse_to_fine keeps two masks beside the values: at 1024³ it needs more than dense.
    c2f, dense = estimate_mesh_memory(1024), estimate_mesh_memory(1024, "dense")
    assert dense < c2f
    with pytest.raises(MeshMemoryError, match="use method 'dense'"):
        extract_mesh(CountingField(), resolution=1024, max_memory_bytes=(dense + c2f) // 2)


def test_default_budget_is_the_memory_available(monkeypatch):
    assert meshing._available_memory() is not None  # Linux: /proc/meminfo
    monkeypatch.setattr(meshing, "_available_memory", lambda: (3 * GiB, "MemAvailable (test)"))
    field = CountingField()
    with pytest.raises(MeshMemoryError, match=r"only 3\.0 GiB is available \(MemAvailable"):
        extract_mesh(field, resolution=1024)
    assert field.calls == 0
    assert len(extract_mesh(field, resolution=64).mesh.faces) > 0  # small grids still work
    monkeypatch.setattr(meshing, "_available_memory", lambda: None)  # unknown: no check
    assert len(extract_mesh(sphere, resolution=32).mesh.faces) > 0


def test_1024_fits_a_24_gib_machine():
    """A 1024³ export needs under 24 GiB (less what the OS and the run itself hold): it is
    attempted, not refused, on such a machine."""
    for method in ("dense", "coarse_to_fine"):
        assert estimate_mesh_memory(1024, method) < 12 * GiB
        meshing._check_memory(1024, method, 32, 1 << 16, 20 * GiB)  # does not raise


@pytest.mark.parametrize("method", ["dense", "coarse_to_fine"])
def test_a_budget_that_suffices_changes_nothing(method):
    need = estimate_mesh_memory(80, method, coarse_resolution=20)
    free = extract_mesh(sphere, resolution=80, method=method, coarse_resolution=20)
    exact = extract_mesh(sphere, resolution=80, method=method, coarse_resolution=20,
                         max_memory_bytes=need)
    assert np.allclose(free.mesh.vertices, exact.mesh.vertices, atol=1e-6)
    assert np.array_equal(free.mesh.faces, exact.mesh.faces)
    with pytest.raises(MeshMemoryError):
        extract_mesh(sphere, resolution=80, method=method, coarse_resolution=20,
                     max_memory_bytes=need - 1)


@pytest.mark.parametrize("bad", [0, -1])
def test_bad_budget_raises(bad):
    with pytest.raises(ValueError, match="max_memory_bytes"):
        extract_mesh(sphere, resolution=32, max_memory_bytes=bad)
