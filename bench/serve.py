"""Serve one app for `make bench`, and say which files it was imported from.

Run by path, with the tree under test first on PYTHONPATH and safe-path on (-P), so it imports
that tree's code and never the one installed in the venv:

    python -P bench/serve.py app.server:create_app --factory --port P --loop uvloop --report F

It imports nothing of the bench package, whose copy in another tree may differ.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import uvicorn
from uvicorn.importer import import_from_string


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("app", help="module:attribute, as uvicorn takes it")
    parser.add_argument("--factory", action="store_true")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--loop", default="uvloop", help="uvicorn's --loop")
    parser.add_argument("--report", type=Path, required=True)
    args = parser.parse_args()
    app = import_from_string(args.app)
    module = sys.modules[args.app.partition(":")[0]]
    core = sys.modules.get("core")
    args.report.write_text(
        json.dumps(
            {
                "app": args.app,
                "module_file": module.__file__,
                "core_file": getattr(core, "__file__", None),
                "sys_path": sys.path[:4],
                "loop": args.loop,
                "python": sys.executable,
            }
        )
    )
    uvicorn.run(
        app,
        factory=args.factory,
        host="127.0.0.1",
        port=args.port,
        loop=args.loop,
        http="httptools",
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
