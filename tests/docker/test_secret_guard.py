"""The pre-commit secret guard refuses env files and private keys, and lets the example pass."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def guarded() -> re.Pattern[str]:
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    hooks = [hook for repo in config["repos"] for hook in repo["hooks"]]
    (guard,) = [hook for hook in hooks if hook["id"] == "no-secrets"]
    return re.compile(guard["files"])


@pytest.mark.parametrize(
    "path",
    [
        *(".env", "docker/.env", ".env.local", ".env.production"),
        *("id_rsa", "keys/id_ed25519", "id_ecdsa", "tls/server.key", "tls/server.pem", "cert.p12"),
    ],
)
def test_a_secret_file_is_refused(path: str) -> None:
    assert guarded().search(path)


@pytest.mark.parametrize("path", [".env.example", ".envrc", "core/config.py", "README.md"])
def test_an_ordinary_file_passes(path: str) -> None:
    assert not guarded().search(path)
