"""fields-app's application layer: tasks, the trainer, presets, the CLI and the Python API.

Example:
    >>> from app import load_run, train            # doctest: +SKIP
    >>> run = load_run("outputs/spot-sdf")         # doctest: +SKIP
"""

from app.run import Run, load_run, train

__all__ = ["Run", "load_run", "train"]
