"""The one error and the one warning that every loader in fields-app raises for bad input.

A loader that meets a missing, unreadable or malformed file raises :class:`DataError`, whose
message is a single line naming the file first: ``"{path}: {problem}"``. Recoverable oddities
(an open mesh given to a task that wants a closed one, …) are reported with
:class:`DataWarning` so that users can filter them with the standard ``warnings`` machinery.
"""

from __future__ import annotations

import os

__all__ = ["DataError", "DataWarning"]


class DataError(Exception):
    """Bad input data: the file ``path`` has ``problem``.

    The rendered message is always one line, ``"{path}: {problem}"`` (newlines in ``problem``
    are folded into spaces), so that it reads well in a CLI error and in a log.

    Attributes:
        path: the offending file (or directory), as given by the caller.
        problem: a short description of what is wrong with it.

    Example:
        >>> err = DataError("meshes/cow.obj", "file not found")
        >>> str(err)
        'meshes/cow.obj: file not found'
        >>> err.path, err.problem
        ('meshes/cow.obj', 'file not found')
    """

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path = os.fspath(path)
        self.problem = " ".join(str(problem).split())
        super().__init__(f"{self.path}: {self.problem}")

    def __reduce__(self) -> tuple[type[DataError], tuple[str, str]]:
        # Exceptions pickle as ``cls(*self.args)``; ours takes two arguments, not the message.
        # Data loaders in worker processes send exceptions back by pickling them.
        return (type(self), (self.path, self.problem))


class DataWarning(UserWarning):
    """Input that can be used but probably not as the user intends (e.g. an open mesh for SDF).

    Example:
        >>> import warnings
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     warnings.warn("cow.obj: mesh is not watertight", DataWarning, stacklevel=1)
        >>> caught[0].category.__name__
        'DataWarning'
    """
