"""One queue per domain module that has tasks, plus `default` for everything else."""

from __future__ import annotations

import importlib.util
import os
import pkgutil
from functools import cache
from typing import Any

DEFAULT_QUEUE = "default"
APPLICATION_PACKAGE = "app"


@cache
def task_modules() -> tuple[str, ...]:
    """The domain modules that define tasks: `user` for app/user/tasks.py, and so on.

    Found by looking at files, without importing anything.
    """
    package = importlib.util.find_spec(APPLICATION_PACKAGE)
    if package is None or package.submodule_search_locations is None:
        return ()
    return tuple(
        sorted(
            module.name
            for module in pkgutil.iter_modules(package.submodule_search_locations)
            if module.ispkg
            and any(
                os.path.isfile(os.path.join(path, module.name, "tasks.py"))
                for path in package.submodule_search_locations
            )
        )
    )


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
