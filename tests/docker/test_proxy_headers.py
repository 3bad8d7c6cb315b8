"""Behind the compose nginx profile, a client cannot choose the address it is limited under."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_nginx_replaces_x_forwarded_for_and_the_replicas_trust_only_nginx() -> None:
    nginx = (ROOT / "docker" / "nginx" / "nginx.conf").read_text()
    assert re.search(r"proxy_set_header\s+X-Forwarded-For\s+\$remote_addr;", nginx)
    assert "$proxy_add_x_forwarded_for" not in nginx

    # The file as Compose reads it: YAML with its anchors and merge keys resolved.
    services = yaml.safe_load((ROOT / "docker" / "docker-compose.yml").read_text())["services"]
    trusted = services["api-replicas"]["environment"]["FORWARDED_ALLOW_IPS"]
    nginx_address = services["nginx"]["networks"]["edge"]["ipv4_address"]
    assert trusted == nginx_address
    assert services["api-replicas"]["environment"]["ENV"] == "prod"
