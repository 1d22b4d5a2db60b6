"""The desktop viewer: a controller (state + actions, no GUI) and a Dear PyGui window over it.

Only :mod:`app.viewer.window` imports Dear PyGui; everything else here works without a display.
"""

from app.viewer.camera import OrbitCamera
from app.viewer.controller import ViewerController

__all__ = ["OrbitCamera", "ViewerController", "run_viewer"]


def run_viewer(controller: ViewerController, **options):
    """Open the window over ``controller`` (see :meth:`app.viewer.window.ViewerWindow.run`)."""
    from app.viewer.window import ViewerWindow

    size = options.pop("size", (1280, 800))
    return ViewerWindow(controller, width=size[0], height=size[1]).run(**options)
