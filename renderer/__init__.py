"""From fields to pixels and meshes: cameras, sphere tracing, shading, meshing, scenes."""

from renderer.cameras import Camera
from renderer.envmap import EnvironmentMap
from renderer.meshing import export_mesh, extract_mesh
from renderer.occupancy import OccupancyGrid
from renderer.scene import Scene
from renderer.sphere_trace import sphere_trace
from renderer.surface import render_surface
from renderer.volume import render_rays

__all__ = [
    "Camera", "EnvironmentMap", "OccupancyGrid", "Scene", "export_mesh", "extract_mesh",
    "render_rays", "render_surface", "sphere_trace",
]
