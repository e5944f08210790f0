"""The documentation site's hook (`mkdocs.yml`): README.md is the site's home page, its links
to `docs/PAGE.md` read as links to the page, so the README and the site say it once."""

from __future__ import annotations

import re
from pathlib import Path


def on_files(files, config):
    """Adds the README as `index.md`, with its links into docs/ made relative to docs/."""
    from mkdocs.structure.files import File

    readme = Path(config.config_file_path).parent / "README.md"
    text = re.sub(r"\]\(docs/", "](", readme.read_text(encoding="utf-8"))
    files.append(File.generated(config, "index.md", content=text))
    return files
