"""From fields to pixels and meshes: cameras, sphere tracing, shading, meshing."""

from renderer.cameras import Camera
from renderer.meshing import export_mesh, extract_mesh
from renderer.sphere_trace import sphere_trace
from renderer.surface import render_surface

__all__ = ["Camera", "export_mesh", "extract_mesh", "render_surface", "sphere_trace"]
