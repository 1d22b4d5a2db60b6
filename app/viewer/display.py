"""Is there a display the viewer can open a window on? And a virtual one when there is not.

Dear PyGui aborts the whole process (a failed GLFW assertion, SIGABRT) when it shows a viewport
without a usable display, so :func:`display_problem` checks first — cheaply (``DISPLAY`` set, the
X server answers) and then for real, by opening a viewport in a child process — and the CLI turns
a problem into a clear message and a non-zero exit. :func:`virtual_display` starts Xvfb (the
tests and ``fields-app view --xvfb`` use it on machines without a screen).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator

__all__ = ["display_problem", "virtual_display", "NO_DISPLAY_HELP"]

NO_DISPLAY_HELP = (
    "On a machine without a screen, train and render headless — `fields-app train spot-sdf`, "
    "then `fields-app render|export|eval RUN_DIR` — or give the viewer a virtual display: "
    "`fields-app view spot-sdf --xvfb` or `xvfb-run -a fields-app view spot-sdf` "
    "(Debian/Ubuntu: apt install xvfb)."
)


def _x_server_answers(name: str) -> bool:
    lib = ctypes.util.find_library("X11")
    if lib is None:
        return True  # cannot tell without Xlib; the child-process probe decides
    try:
        x11 = ctypes.CDLL(lib)
    except OSError:
        return True
    x11.XOpenDisplay.restype = ctypes.c_void_p
    x11.XOpenDisplay.argtypes = [ctypes.c_char_p]
    x11.XCloseDisplay.argtypes = [ctypes.c_void_p]
    handle = x11.XOpenDisplay(name.encode())
    if not handle:
        return False
    x11.XCloseDisplay(handle)
    return True


def display_problem(probe: bool = True, timeout: float = 60.0) -> str | None:
    """``None`` when a viewer window can open here, else why not (one line)."""
    if sys.platform.startswith("linux"):
        display = os.environ.get("DISPLAY")
        if not display and not os.environ.get("WAYLAND_DISPLAY"):
            return "no display: neither DISPLAY nor WAYLAND_DISPLAY is set"
        if display and not _x_server_answers(display):
            return f"cannot open the X display {display!r} (is the X server running?)"
    if not probe:
        return None
    try:
        done = subprocess.run([sys.executable, "-m", "app.viewer.display", "--probe"],
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"opening a test window took more than {timeout:.0f} s"
    if done.returncode != 0:
        lines = [ln for ln in (done.stderr or "").splitlines() if ln.strip()]
        detail = lines[-1] if lines else f"exit status {done.returncode}"
        return f"a test window could not open ({detail})"
    return None


@contextlib.contextmanager
def virtual_display(width: int = 1280, height: int = 800) -> Iterator[str]:
    """Start Xvfb on a free display number, point ``DISPLAY`` at it, stop it afterwards."""
    exe = shutil.which("Xvfb")
    if exe is None:
        raise FileNotFoundError("Xvfb is not installed (Debian/Ubuntu: apt install xvfb)")
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        [exe, "-displayfd", str(write_fd), "-screen", "0", f"{width}x{height}x24", "-nolisten",
         "tcp", "+extension", "GLX"],
        pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    os.close(write_fd)
    try:
        with os.fdopen(read_fd) as fh:
            number = fh.readline().strip()
        if not number:
            raise RuntimeError("Xvfb did not start (no display number reported)")
        old = os.environ.get("DISPLAY")
        os.environ["DISPLAY"] = f":{number}"
        try:
            yield f":{number}"
        finally:
            if old is None:
                os.environ.pop("DISPLAY", None)
            else:
                os.environ["DISPLAY"] = old
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _probe() -> None:
    """Open a small viewport, draw two frames, close (run in a child process)."""
    import dearpygui.dearpygui as dpg

    dpg.create_context()
    dpg.create_viewport(title="fields-app probe", width=64, height=64, decorated=False)
    dpg.setup_dearpygui()
    dpg.show_viewport()
    for _ in range(2):
        dpg.render_dearpygui_frame()
    dpg.destroy_context()


if __name__ == "__main__" and "--probe" in sys.argv:
    _probe()
