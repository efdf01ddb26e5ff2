"""The module tables of docs/architecture.md, made from the import graph (grimp, as
import-linter builds it, TYPE_CHECKING imports included) and each module's docstring, so
that the page cannot go stale: ``tests/test_house.py`` checks the committed page against
them.

Run: .venv/bin/python docs/_architecture.py --write     (rewrite the page's tables)
     .venv/bin/python docs/_architecture.py             (print them)
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NONE = "\u2013"  # an en dash: the tables' "nothing"
PAGE = ROOT / "docs" / "architecture.md"
BEGIN = "<!-- the modules: made by docs/_architecture.py from the import graph; do not edit -->"
END = "<!-- end of the modules -->"


def _summary(path: Path) -> str:
    """The first sentence of a module's docstring, fit for a table cell (Markdown code for
    the docstring's roles and literals)."""
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    text = " ".join(doc.split())
    text = re.sub(r":\w+:`~?([^`]+)`", lambda m: f"`{m.group(1).rsplit('.', 1)[-1]}`", text)
    text = text.replace("``", "`")
    quoted = False
    for index, char in enumerate(text):  # the first full stop or colon outside code
        if char == "`":
            quoted = not quoted
        elif char in ".:" and not quoted and text[index + 1 : index + 2] in ("", " "):
            text = text[:index]
            break
    return text.replace("|", "\\|") or NONE


def tables() -> str:
    """The page's section listing each package's modules and what each imports of its
    package."""
    import grimp

    sys.path.insert(0, str(ROOT))
    try:
        graph = grimp.build_graph("engine", include_external_packages=False)
    finally:
        sys.path.remove(str(ROOT))
    packages = sorted(m for m in graph.modules if m.count(".") == 1 and graph.find_children(m))
    lines = [BEGIN, ""]
    for package in packages:
        lines += [
            f"### `{package}`",
            "",
            "| module | what it does | imports of its package |",
            "|---|---|---|",
        ]
        for module in sorted(graph.find_children(package)):
            path = ROOT / (module.replace(".", "/") + ".py")
            siblings = sorted(
                m.rsplit(".", 1)[1]
                for m in graph.find_modules_directly_imported_by(module)
                if m.rsplit(".", 1)[0] == package
            )
            uses = ", ".join(f"`{name}`" for name in siblings) or NONE
            lines.append(f"| `{module.rsplit('.', 1)[1]}` | {_summary(path)} | {uses} |")
        lines.append("")
    lines.append(END)
    return "\n".join(lines)


def write() -> None:
    """Put the tables in the page, between their markers."""
    page = PAGE.read_text(encoding="utf-8")
    start, end = page.index(BEGIN), page.index(END) + len(END)
    PAGE.write_text(page[:start] + tables() + page[end:], encoding="utf-8")


if __name__ == "__main__":
    if "--write" in sys.argv[1:]:
        write()
    else:
        print(tables())
