"""The Dear PyGui window: a render view and side panels over a :class:`ViewerController`.

Widgets only read and write the controller; every bit of torch work happens on its engine
thread, so this thread only draws (frame time is what Dear PyGui needs, not what training
needs). Layout, top to bottom of the side panel: status, Training (preset, data, start / pause /
step / reset, learning rate, live loss and metric plots), FreSh spectra (only when the task
ran a FreSh search: the image's and the chosen untrained field's spectra, mean W1 per
candidate), Render (mode, scale, light, background, time budget), Camera, Export, Checkpoint &
stats, Properties (generated from the task's ``properties()``), Messages.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dearpygui.dearpygui as dpg
import numpy as np

from app.tasks.base import Task
from app.viewer.controller import ViewerController

__all__ = ["ViewerWindow"]

PANEL_WIDTH = 400
MARGIN = 8
ERROR_COLOUR = (255, 110, 100)


_ASCII = str.maketrans({"→": "->", "…": "...", "×": "x", "°": " deg", "·": "|", "—": "-",
                        "³": "^3", "²": "^2", "≤": "<=", "≥": ">=", "✓": "ok"})


def _text(value: object) -> str:
    """Dear PyGui's default font is ASCII-only: spell the few symbols we use in ASCII."""
    return str(value).translate(_ASCII).encode("ascii", "replace").decode()


class ViewerWindow:
    """The desktop viewer. ``run()`` drives the UI loop until the window closes (or for
    ``frames`` frames)."""

    def __init__(self, controller: ViewerController, width: int = 1280, height: int = 800,
                 fps: float = 60.0, idle_fps: float = 10.0, title: str = "fields-app") -> None:
        self.ctl = controller
        self.width, self.height, self.title = width, height, title
        self.fps, self.idle_fps = fps, idle_fps
        self._active_until = 0.0
        self._textures: dict[tuple[int, int], tuple[int | str, np.ndarray]] = {}
        self._shown_version = -1
        self._drag: dict[int, tuple[float, float] | None] = {}
        self._last_slow = 0.0
        self._last_properties = 0.0
        self._task_id: int | None = None
        self._fresh_key: tuple[Any, ...] | None = None
        self._slider_names: list[str] = []
        self._message_count = -1
        self.frame_times: list[float] = []
        """Seconds of UI-thread work per frame (input, widget updates, drawing; no pacing)."""
        self.frame_intervals: list[float] = []
        """Seconds between frame starts (what the eye sees: ``1/fps`` when idle)."""

    # ======================================================================================
    # layout
    def _build(self) -> None:
        dpg.create_context()
        dpg.create_viewport(title=self.title, width=self.width, height=self.height,
                            resizable=True, min_width=640, min_height=400, vsync=False)
        self._texture_registry = dpg.add_texture_registry()
        with dpg.window(tag="main", no_scrollbar=True):
            with dpg.group(horizontal=True):
                with dpg.child_window(tag="view_panel", no_scrollbar=True, border=False):
                    self._placeholder = self._texture(8, 8)
                    dpg.add_image(self._placeholder, tag="render_image")
                with dpg.child_window(tag="side", width=PANEL_WIDTH, border=False):
                    dpg.add_text("", tag="status", wrap=PANEL_WIDTH - 20)
                    self._build_training()
                    self._build_fresh()
                    with dpg.collapsing_header(label="Task controls", tag="task_header",
                                               default_open=True, show=False):
                        dpg.add_group(tag="task_sliders")
                    self._build_render()
                    self._build_camera()
                    self._build_export()
                    self._build_checkpoint()
                    with dpg.collapsing_header(label="Properties", default_open=False):
                        dpg.add_table(tag="properties", header_row=False, resizable=True,
                                      borders_innerV=True)
                    with dpg.collapsing_header(label="Messages", default_open=True):
                        dpg.add_child_window(tag="messages", height=120)
        with dpg.handler_registry():
            dpg.add_mouse_wheel_handler(callback=self._on_wheel)
            # Any input makes the UI draw at full rate for a second; otherwise it idles at
            # idle_fps: software GL (Xvfb, no GPU) costs ~20 ms of CPU per 1280×800 frame, which
            # at 60 fps would take half of a 2-core machine from training (B12).
            dpg.add_mouse_move_handler(callback=self._on_input)
            dpg.add_mouse_click_handler(callback=self._on_input)
            dpg.add_key_press_handler(callback=self._on_input)
        dpg.set_viewport_resize_callback(lambda *_: self._layout())
        dpg.setup_dearpygui()
        dpg.show_viewport()
        dpg.set_primary_window("main", True)
        self._layout()
        self._refresh_task_widgets()

    def _build_training(self) -> None:
        ctl = self.ctl
        with dpg.collapsing_header(label="Training", default_open=True):
            dpg.add_combo(ctl.presets, default_value=ctl.preset if ctl.preset in ctl.presets
                          else ctl.presets[0], tag="preset", label="preset", width=200)
            dpg.add_input_text(tag="data_path", label="data", hint="preset's default",
                               width=200)
            dpg.add_button(label="Load preset", callback=lambda: ctl.load(
                dpg.get_value("preset"), dpg.get_value("data_path")))
            with dpg.group(horizontal=True):
                dpg.add_input_text(tag="run_path", hint="run directory", width=200)
                dpg.add_button(label="Open run", callback=lambda: ctl.open_run(
                    dpg.get_value("run_path")))
            with dpg.group(horizontal=True):
                dpg.add_button(label="Start", tag="btn_start", callback=lambda: ctl.start())
                dpg.add_button(label="Pause", tag="btn_pause", callback=lambda: ctl.pause())
                dpg.add_button(label="Step", tag="btn_step", callback=lambda: ctl.step_once())
                dpg.add_button(label="Reset", tag="btn_reset", callback=lambda: ctl.reset())
            dpg.add_input_float(tag="lr", label="learning rate", default_value=ctl.lr,
                                format="%.2e", step=0.0, on_enter=True, width=140,
                                callback=lambda s, v: ctl.set_lr(v))
            dpg.add_text("", tag="train_text")
            with dpg.plot(tag="loss_plot", height=150, width=-1, no_menus=True):
                dpg.add_plot_axis(dpg.mvXAxis, label="step", tag="loss_x")
                with dpg.plot_axis(dpg.mvYAxis, label="loss", tag="loss_y",
                                   scale=dpg.mvPlotScale_Log10):
                    dpg.add_line_series([], [], tag="loss_series", label="loss")
            with dpg.plot(tag="metric_plot", height=150, width=-1, no_menus=True, show=False):
                dpg.add_plot_legend()
                dpg.add_plot_axis(dpg.mvXAxis, label="step", tag="metric_x")
                dpg.add_plot_axis(dpg.mvYAxis, label="metric", tag="metric_y")

    def _build_fresh(self) -> None:
        """FreSh's two spectra and its W1 table; hidden until the task has a search to show."""
        with dpg.collapsing_header(label="FreSh spectra", tag="fresh_header", default_open=True,
                                   show=False):
            dpg.add_text("", tag="fresh_text", wrap=PANEL_WIDTH - 20)
            with dpg.plot(tag="fresh_plot", height=170, width=-1, no_menus=True):
                dpg.add_plot_legend(location=dpg.mvPlot_Location_NorthEast)
                dpg.add_plot_axis(dpg.mvXAxis, label="bin", tag="fresh_x")
                with dpg.plot_axis(dpg.mvYAxis, label="normalised magnitude", tag="fresh_y"):
                    dpg.add_line_series([], [], tag="fresh_target", label="image")
                    dpg.add_line_series([], [], tag="fresh_model",
                                        label="untrained field (chosen value)")
            with dpg.plot(tag="fresh_w1_plot", height=140, width=-1, no_menus=True):
                dpg.add_plot_axis(dpg.mvXAxis, label="candidate", tag="fresh_w1_x")
                with dpg.plot_axis(dpg.mvYAxis, label="mean W1 (+- SE)", tag="fresh_w1_y"):
                    dpg.add_error_series([], [], [], [], tag="fresh_w1_se", label="+- SE")
                    dpg.add_line_series([], [], tag="fresh_w1", label="mean W1")
                    dpg.add_scatter_series([], [], tag="fresh_w1_chosen", label="chosen")

    def _build_render(self) -> None:
        ctl, r = self.ctl, self.ctl.render
        with dpg.collapsing_header(label="Render", default_open=True):
            dpg.add_combo([], tag="mode", label="mode", width=200,
                          callback=lambda s, v: ctl.update_render(mode=v))
            dpg.add_slider_float(tag="render_scale", label="render scale", min_value=0.1,
                                 max_value=1.0, default_value=r.render_scale, width=200,
                                 callback=lambda s, v: ctl.update_render(render_scale=v))
            dpg.add_slider_float(tag="light_az", label="light azimuth", min_value=-180,
                                 max_value=180, default_value=r.light_azimuth, width=200,
                                 callback=lambda s, v: ctl.update_render(light_azimuth=v))
            dpg.add_slider_float(tag="light_el", label="light elevation", min_value=-90,
                                 max_value=90, default_value=r.light_elevation, width=200,
                                 callback=lambda s, v: ctl.update_render(light_elevation=v))
            dpg.add_color_edit([int(c * 255) for c in r.background], tag="background",
                               label="background", no_alpha=True, width=200,
                               callback=lambda s, v: ctl.update_render(
                                   background=tuple(float(c) / 255.0 if max(v[:3]) > 1.0
                                                    else float(c) for c in v[:3])))
            dpg.add_slider_float(tag="budget", label="frame budget (ms)", min_value=10,
                                 max_value=500, default_value=r.budget_ms, width=200,
                                 callback=lambda s, v: ctl.update_render(budget_ms=v))

    def _build_camera(self) -> None:
        ctl = self.ctl
        with dpg.collapsing_header(label="Camera", default_open=False):
            dpg.add_text("left-drag: orbit · right/middle-drag: pan · wheel: zoom")
            dpg.add_slider_float(tag="fov", label="field of view", min_value=10, max_value=120,
                                 default_value=ctl.camera.fov_y_deg, width=200,
                                 callback=lambda s, v: ctl.set_fov(v))
            with dpg.group(horizontal=True):
                dpg.add_button(label="Reset camera", callback=lambda: self._reset_camera())
                dpg.add_input_int(tag="view_index", default_value=0, width=90, min_value=0,
                                  min_clamped=True)
                dpg.add_button(label="Snap to view", callback=lambda: ctl.snap_to_view(
                    dpg.get_value("view_index")))
            dpg.add_text("", tag="camera_text")

    def _build_export(self) -> None:
        e = self.ctl.export_settings
        with dpg.collapsing_header(label="Export", default_open=False):
            dpg.add_input_int(tag="export_resolution", label="resolution",
                              default_value=e.resolution, min_value=16, max_value=2048,
                              min_clamped=True, max_clamped=True, width=140,
                              callback=lambda s, v: setattr(e, "resolution", int(v)))
            dpg.add_input_float(tag="export_level", label="iso level", default_value=e.level,
                                step=0.0, width=140, format="%.4f",
                                callback=lambda s, v: setattr(e, "level", float(v)))
            dpg.add_combo(["ply", "obj"], tag="export_format", label="format",
                          default_value=e.format, width=140,
                          callback=lambda s, v: setattr(e, "format", v))
            dpg.add_input_text(tag="export_path", label="path", hint="RUN_DIR/mesh.<format>",
                               width=240, callback=lambda s, v: setattr(e, "path", v))
            dpg.add_button(label="Export mesh", tag="btn_export", callback=self._on_export)
            dpg.add_progress_bar(tag="export_progress", default_value=0.0, width=-1)
            dpg.add_text("", tag="export_text", wrap=PANEL_WIDTH - 20)

    def _build_checkpoint(self) -> None:
        ctl = self.ctl
        with dpg.collapsing_header(label="Checkpoint & stats", default_open=False):
            with dpg.group(horizontal=True):
                dpg.add_button(label="Save checkpoint", callback=lambda: ctl.save_checkpoint())
                dpg.add_button(label="Load latest", callback=lambda: ctl.load_checkpoint())
            dpg.add_text("", tag="stats_text")

    # ======================================================================================
    # callbacks
    def _on_export(self) -> None:
        e = self.ctl.export_settings
        e.resolution = int(dpg.get_value("export_resolution"))
        e.level = float(dpg.get_value("export_level"))
        e.format = str(dpg.get_value("export_format"))
        e.path = str(dpg.get_value("export_path"))
        self.ctl.export_mesh()

    def _reset_camera(self) -> None:
        self.ctl.reset_camera()
        dpg.set_value("fov", self.ctl.camera.fov_y_deg)

    def _on_input(self, *_: Any) -> None:
        self._active_until = time.perf_counter() + 1.0

    def _on_wheel(self, sender: Any, delta: float) -> None:
        self._on_input()
        if dpg.is_item_hovered("render_image"):
            self.ctl.zoom(float(delta))

    def _layout(self) -> None:
        vw = max(dpg.get_viewport_client_width(), 320)
        vh = max(dpg.get_viewport_client_height(), 240)
        view_w = max(vw - PANEL_WIDTH - 4 * MARGIN, 64)
        view_h = max(vh - 2 * MARGIN - 4, 64)
        dpg.configure_item("view_panel", width=view_w, height=view_h)
        dpg.configure_item("side", height=view_h)
        dpg.configure_item("render_image", width=view_w, height=view_h)
        self.ctl.set_view_size(view_w, view_h)

    def _poll_mouse(self) -> None:
        """Drags that start over the render view orbit (left) or pan (right, middle)."""
        x, y = dpg.get_mouse_pos(local=False)
        hovered = dpg.is_item_hovered("render_image")
        for button, action in ((dpg.mvMouseButton_Left, self.ctl.orbit),
                               (dpg.mvMouseButton_Right, self.ctl.pan),
                               (dpg.mvMouseButton_Middle, self.ctl.pan)):
            down = dpg.is_mouse_button_down(button)
            last = self._drag.get(button)
            if down and last is None and hovered:
                self._drag[button] = (x, y)
            elif down and last is not None:
                dx, dy = x - last[0], y - last[1]
                if dx or dy:
                    action(dx, dy)
                self._drag[button] = (x, y)
            elif not down:
                self._drag[button] = None

    # ======================================================================================
    # per-frame updates
    def _texture(self, w: int, h: int) -> int | str:
        key = (w, h)
        if key not in self._textures:
            buf = np.zeros((h, w, 4), dtype=np.float32)
            buf[..., 3] = 1.0
            tag = dpg.add_raw_texture(w, h, buf, format=dpg.mvFormat_Float_rgba,
                                      parent=self._texture_registry)
            self._textures[key] = (tag, buf)
        return self._textures[key][0]

    def _show_frame(self) -> bool:
        frame = self.ctl.frame
        if frame is None or frame.version == self._shown_version:
            return False
        h, w = frame.image.shape[:2]
        tag = self._texture(w, h)
        buf = self._textures[(w, h)][1]
        buf[..., :3] = frame.image
        dpg.set_value(tag, buf)
        dpg.configure_item("render_image", texture_tag=tag)
        self._shown_version = frame.version
        return True

    def _refresh_task_widgets(self) -> None:
        """Widgets that depend on the task (render modes, lr, preset): when the task changes."""
        task = self.ctl.task
        if task is None or id(task) == self._task_id:
            return
        self._task_id = id(task)
        dpg.configure_item("mode", items=list(task.render_modes))
        dpg.set_value("mode", self.ctl.render.mode)
        dpg.set_value("lr", self.ctl.lr)
        if self.ctl.preset in self.ctl.presets:
            dpg.set_value("preset", self.ctl.preset)
        dpg.set_value("export_resolution", self.ctl.export_settings.resolution)
        dpg.set_value("fov", self.ctl.camera.fov_y_deg)
        dpg.set_value("background", [int(round(c * 255)) for c in self.ctl.render.background])
        can_export = type(task).export is not Task.export
        dpg.configure_item("btn_export", enabled=can_export)
        self._update_fresh()
        self._build_task_sliders()

    def _build_task_sliders(self) -> None:
        """One slider per entry of the task's ``sliders()`` (e.g. a naisr atlas's covariates)."""
        dpg.delete_item("task_sliders", children_only=True)
        sliders = self.ctl.task_sliders()
        dpg.configure_item("task_header", show=bool(sliders))
        self._slider_names = [name for name, *_ in sliders]
        for name, value, low, high in sliders:
            dpg.add_slider_float(label=name, default_value=value, min_value=low, max_value=high,
                                 width=200, parent="task_sliders", tag=f"task_slider_{name}",
                                 callback=lambda s, v, n=name: self.ctl.set_task_slider(n, v))

    def _update_slow(self) -> None:
        """Text, plots, properties: a few times a second is plenty."""
        ctl = self.ctl
        self._refresh_task_widgets()
        status = ctl.status
        dpg.set_value("status", _text(f"{ctl.preset} | {status}"))
        dpg.configure_item("status", color=ERROR_COLOUR if status.startswith("error")
                           else (255, 255, 255))
        scalars = ctl.last_scalars
        lines = [f"step {ctl.step} / {ctl.total_steps}   "
                 f"{ctl.stats['steps_per_s']:.1f} steps/s   "
                 f"{'training' if ctl.training else 'paused'}"]
        lines += [f"{k}: {v:.5g}" for k, v in scalars.items() if k != "lr"]
        dpg.set_value("train_text", "\n".join(lines))
        hist = ctl.history
        if hist.steps:
            dpg.set_value("loss_series", [hist.steps, hist.series.get("loss", [])])
            dpg.fit_axis_data("loss_x")
            dpg.fit_axis_data("loss_y")
            for name, values in hist.series.items():
                if name == "loss":
                    continue
                tag = f"metric_{name}"
                if not dpg.does_item_exist(tag):
                    dpg.add_line_series([], [], label=name, tag=tag, parent="metric_y")
                dpg.set_value(tag, [hist.steps, values])
            dpg.fit_axis_data("metric_x")
            dpg.fit_axis_data("metric_y")
            dpg.configure_item("metric_plot", show=len(hist.series) > 1)
        cam = ctl.camera
        target = ", ".join(f"{v:.2f}" for v in cam.target)
        dpg.set_value("camera_text", _text(
                      f"azimuth {cam.azimuth:.1f}°  elevation {cam.elevation:.1f}°  "
                      f"distance {cam.radius:.2f}\ntarget ({target})"
                      f"   dataset views: {ctl.dataset_view_count()}"))
        frame = ctl.frame
        size = "-" if frame is None else (
            f"{frame.image.shape[1]}x{frame.image.shape[0]} (1/{frame.divisor})")
        s = ctl.stats
        ui = self.frame_times[-60:]
        ui_ms = 1e3 * float(np.mean(ui)) if ui else math.nan
        gaps = self.frame_intervals[-60:]
        ui_fps = 1.0 / float(np.mean(gaps)) if gaps else math.nan
        extra = f"\nCUDA memory {s['cuda_mb']:.0f} MiB" if "cuda_mb" in s else ""
        dpg.set_value("stats_text", _text(
                      f"render {s['render_ms']:.0f} ms at {size}\n"
                      f"train {s['train_ms']:.1f} ms/step\n"
                      f"UI frame {ui_ms:.1f} ms ({ui_fps:.0f} fps)\n"
                      f"memory {s['memory_mb']:.0f} MiB{extra}"))
        progress = ctl.export_progress
        dpg.set_value("export_progress", progress if progress is not None else
                      (1.0 if ctl.last_export else 0.0))
        if ctl.last_export:
            e = ctl.last_export
            dpg.set_value("export_text", _text(f"{e['path']}\n{e['vertices']:,} vertices, "
                          f"{e['faces']:,} faces, {e['seconds']} s"))
        if time.perf_counter() - self._last_properties > 1.0:  # task.properties() costs more
            self._update_properties()
            self._update_fresh()  # appears once training loads the data (the search runs then)
            if not self._slider_names and self.ctl.task_sliders():
                self._build_task_sliders()  # e.g. an atlas built when its data loaded
            self._last_properties = time.perf_counter()
        self._update_messages()

    def _update_properties(self) -> None:
        rows = self.ctl.properties()
        table = "properties"
        existing = dpg.get_item_children(table, 1) or []
        if len(existing) != len(rows):
            dpg.delete_item(table, children_only=True)
            dpg.add_table_column(parent=table, init_width_or_weight=0.35)
            dpg.add_table_column(parent=table)
            for _ in rows:
                with dpg.table_row(parent=table):
                    dpg.add_text("")
                    dpg.add_text("", wrap=PANEL_WIDTH - 160)
            existing = dpg.get_item_children(table, 1) or []
        for row, (key, value) in zip(existing, rows):
            cells = dpg.get_item_children(row, 1)
            dpg.set_value(cells[0], _text(key))
            dpg.set_value(cells[1], _text(value))

    def _update_fresh(self) -> None:
        """Show the FreSh header with the task's search, or hide it when there is none; the
        plots are only rewritten when the search shown changes (another task or search)."""
        data = self.ctl.fresh_spectra()
        key = None if data is None else (id(self.ctl.task), data["hyperparameter"],
                                         data["chosen"], data["seconds"])
        if key == self._fresh_key:
            return
        self._fresh_key = key
        dpg.configure_item("fresh_header", show=data is not None)
        if data is None:
            return
        dpg.set_value("fresh_text", _text(
            f"chosen {data['hyperparameter']} = {data['chosen']:g}   S = {data['size']}, "
            f"{data['inits']} inits x {len(data['rows'])} candidates, {data['seconds']:.1f} s"))
        dpg.set_value("fresh_target", [data["bins"], data["target"]])
        dpg.set_value("fresh_model", [data["bins"], data["model"]])
        values = [r[0] for r in data["rows"]]
        means = [r[1] for r in data["rows"]]
        errors = [r[2] for r in data["rows"]]
        dpg.set_value("fresh_w1_se", [values, means, errors, errors])
        dpg.set_value("fresh_w1", [values, means])
        i = data["chosen_index"]
        dpg.set_value("fresh_w1_chosen", [[values[i]], [means[i]]])
        dpg.configure_item("fresh_w1_x", label=_text(data["hyperparameter"]))
        for axis in ("fresh_x", "fresh_y", "fresh_w1_x", "fresh_w1_y"):
            dpg.fit_axis_data(axis)

    def _update_messages(self) -> None:
        messages = list(self.ctl.messages)
        if len(messages) == self._message_count:
            return
        self._message_count = len(messages)
        dpg.delete_item("messages", children_only=True)
        for m in messages[-20:]:
            dpg.add_text(_text(m), parent="messages", wrap=PANEL_WIDTH - 30,
                         color=ERROR_COLOUR if "error:" in m else (200, 200, 200))

    # ======================================================================================
    # the loop
    def run(self, frames: int | None = None, screenshot: str | Path | None = None,
            on_frame: Callable[[int], None] | None = None, engine: bool = True) -> dict[str, Any]:
        """Show the window until it closes, or for ``frames`` frames (counted from the first
        frame that shows a render, after any loading; at most 10 minutes of waiting). With
        ``screenshot``, save the last frame there and the first frame that showed a render next
        to it (``NAME-first.png``). ``on_frame(i)`` runs before every drawn frame
        ``i = 0, 1, …``. ``engine=False`` leaves the controller's engine stopped (the caller
        drives it from ``on_frame``). Returns what happened (frame times, screenshots,
        render region)."""
        self._build()
        if engine:
            self.ctl.start_engine()
        report: dict[str, Any] = {}
        first_shot = None
        if screenshot is not None:
            screenshot = Path(screenshot)
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            first_shot = screenshot.with_name(screenshot.stem + "-first" + screenshot.suffix)
        index = waiting = 0
        shown_any = False
        last_start = None
        try:
            while dpg.is_dearpygui_running():
                t0 = time.perf_counter()
                if last_start is not None:
                    self.frame_intervals.append(t0 - last_start)
                last_start = t0
                self._poll_mouse()
                new_frame = self._show_frame()
                if t0 - self._last_slow > 0.2:
                    self._update_slow()
                    self._last_slow = t0
                if on_frame is not None:
                    on_frame(index + waiting)
                dpg.render_dearpygui_frame()
                if new_frame and not shown_any and first_shot is not None:
                    dpg.output_frame_buffer(file=str(first_shot))
                    report["first_screenshot"] = str(first_shot)
                    report["first_screenshot_step"] = self.ctl.frame.step
                shown_any = shown_any or new_frame
                # Frames count once the field is on screen and loading (data for training) is
                # done, so `--frames N` shows N frames of a live viewer however slow the start.
                if shown_any and not self.ctl.busy or frames is None:
                    index += 1
                else:
                    waiting += 1
                if frames is not None and (index >= frames or waiting > 600 * self.fps):
                    break
                spent = time.perf_counter() - t0
                self.frame_times.append(spent)
                active = (t0 < self._active_until or self.ctl.busy or screenshot is not None
                          or any(v is not None for v in self._drag.values()))
                period = 1.0 / (self.fps if active else self.idle_fps)
                self.ctl.set_ui_busy(active)
                if spent < period:
                    time.sleep(period - spent)
            if screenshot is not None:
                # Show the field as it is now: one fresh render (the engine may be mid-step).
                version = self.ctl.frame.version if self.ctl.frame is not None else -1
                self.ctl.refresh()
                deadline = time.perf_counter() + 120.0
                while (self.ctl.frame is None or self.ctl.frame.version == version) and (
                        time.perf_counter() < deadline and dpg.is_dearpygui_running()):
                    dpg.render_dearpygui_frame()
                    time.sleep(1.0 / self.fps)
                self._show_frame()
                self._update_slow()
                dpg.render_dearpygui_frame()
                dpg.output_frame_buffer(file=str(screenshot))
                for _ in range(3):
                    dpg.render_dearpygui_frame()
                x, y = dpg.get_item_rect_min("render_image")
                w, h = dpg.get_item_rect_size("render_image")
                report.update({"screenshot": str(screenshot), "render_region": [x, y, w, h],
                               "screenshot_step": self.ctl.frame.step if self.ctl.frame else 0})
        finally:
            self.ctl.close(save=True)
            dpg.destroy_context()
        times = np.array(self.frame_times) * 1e3
        gaps = np.array(self.frame_intervals) * 1e3
        report.update({
            "frames": index, "step": self.ctl.step,
            "ui_frame_ms_p50": float(np.percentile(times, 50)) if len(times) else None,
            "ui_frame_ms_p95": float(np.percentile(times, 95)) if len(times) else None,
            "ui_interval_ms_p95": float(np.percentile(gaps, 95)) if len(gaps) else None,
        })
        return report
