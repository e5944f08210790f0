"""Read an env file the way Ploomber does ({{here}} and friends expanded), for the commands."""

from __future__ import annotations

import copy
from pathlib import Path

from .errors import ConfigError


def load_env(env_file: str | Path) -> dict:
    from ploomber.env.envdict import EnvDict

    path = Path(env_file)
    if not path.is_file():
        raise ConfigError(f"{env_file}: env file not found")
    return copy.deepcopy(EnvDict(str(path.resolve()))._data)  # plain dicts, placeholders expanded
