"""Loaders and samplers. They validate input and raise ``DataError`` naming the file."""

from datasets.errors import DataError, DataWarning
from datasets.meshes import Normalization, load_mesh, normalize_mesh
from datasets.multiview import MultiViewDataset, load_multiview
from datasets.sdf_samples import MeshDistance, sample_sdf

__all__ = [
    "DataError", "DataWarning", "MeshDistance", "MultiViewDataset", "Normalization", "load_mesh",
    "load_multiview", "normalize_mesh", "sample_sdf",
]
