"""`make flower`: Flower on :5555 for this project's Celery app, with basic auth from settings.

python3 -m celery_task.flower [--port 5555]
"""

from __future__ import annotations

import sys

import click

from celery_task.application import celery_app
from core.config import config


@click.command()
@click.option("--port", type=int, default=5555, show_default=True)
@click.option("--address", default="127.0.0.1", show_default=True)
def main(port: int, address: str) -> None:
    arguments = ["flower", f"--port={port}", f"--address={address}"]
    if config.FLOWER_BASIC_AUTH:
        arguments.append(f"--basic_auth={config.FLOWER_BASIC_AUTH}")
    elif config.ENV == "prod":
        click.echo("error: FLOWER_BASIC_AUTH (user:password) is required in prod", err=True)
        sys.exit(2)
    # Without a password Flower's JSON API stays closed (its default): opened, any web page a
    # developer visits could drive it on 127.0.0.1.
    celery_app.start(arguments)


if __name__ == "__main__":
    main()
