"""MkDocs hook: the committed diagrams (diagrams/*.svg and *.mmd at the top of the
repository) are published with the site, so the pages show the very files CI checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files


def on_files(files: Files, config: Any) -> Files:
    root = Path(config.config_file_path).parent
    for path in sorted((root / "diagrams").iterdir()):
        if path.suffix in (".svg", ".mmd"):
            files.append(
                File(
                    f"diagrams/{path.name}",
                    src_dir=str(root),
                    dest_dir=config.site_dir,
                    use_directory_urls=config.use_directory_urls,
                )
            )
    return files
