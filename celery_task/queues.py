"""One queue per domain module that has tasks, plus `default` for everything else."""

from __future__ import annotations

import importlib.util
import os
import pkgutil
from pathlib import Path
from typing import Any

DEFAULT_QUEUE = "default"
APPLICATION_PACKAGE = "app"


def _application_paths() -> list[str]:
    """Where the `app` package lives: beside this package, where the layout puts it."""
    # The `celery` command puts the working directory on sys.path only while it imports the
    # Celery app, so a lookup on sys.path alone can come back empty later in the same process.
    beside = Path(__file__).resolve().parent.parent / APPLICATION_PACKAGE
    if (beside / "__init__.py").is_file():
        return [str(beside)]
    spec = importlib.util.find_spec(APPLICATION_PACKAGE)
    if spec is None or spec.submodule_search_locations is None:
        return []
    return list(spec.submodule_search_locations)


def task_modules() -> tuple[str, ...]:
    """The domain modules that define tasks: `user` for app/user/tasks.py, and so on.

    Found by looking at files, without importing anything; looked up on every call (a few
    directory listings, at startup), so a lookup made too early is never kept.
    """
    paths = _application_paths()
    return tuple(
        sorted(
            module.name
            for module in pkgutil.iter_modules(paths)
            if module.ispkg
            and any(os.path.isfile(os.path.join(path, module.name, "tasks.py")) for path in paths)
        )
    )


def task_module_names() -> list[str]:
    """The importable names of those modules: `app.user.tasks`, ..."""
    return [f"{APPLICATION_PACKAGE}.{module}.tasks" for module in task_modules()]


def queue_names() -> list[str]:
    return [DEFAULT_QUEUE, *task_modules()]


def queue_for_module(module: str) -> str:
    """`app.<module>.tasks` -> `<module>`; anything else -> `default`."""
    parts = module.split(".")
    if len(parts) == 3 and parts[0] == APPLICATION_PACKAGE and parts[2] == "tasks":
        return parts[1]
    return DEFAULT_QUEUE


def route_task(
    name: str, args: Any, kwargs: Any, options: dict[str, Any], task: Any = None, **_: Any
) -> dict[str, str]:
    """Celery router: by where the task is defined, whatever name it was given."""
    if options.get("queue"):
        return {"queue": options["queue"]}
    module = getattr(task, "__module__", None) or ""
    return {"queue": queue_for_module(module)}
