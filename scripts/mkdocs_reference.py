"""MkDocs hook: the API reference pages, written at build time from the package tree.

One page per package of ``libs/shoprec`` (``reference/<package>.md``, a ``:::`` block per
public module, rendered from docstrings by mkdocstrings) and one for the top-level modules,
plus an index; the pages are added to the navigation under "API reference". Nothing is
written to disk, so a module that moves or is renamed changes the reference on the next
build, and a page that links to a name that no longer exists fails ``mkdocs build --strict``.
"""

from __future__ import annotations

import os
from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "libs" / "shoprec"
SECTION = "API reference"


def _public(name: str) -> bool:
    return not name.startswith("_")


def modules(package: Path, dotted: str) -> list[str]:
    """The dotted names of ``package``'s public modules, sub-packages' modules included."""
    found = []
    for path in sorted(package.iterdir()):
        if path.is_dir() and (path / "__init__.py").exists() and _public(path.name):
            found += modules(path, f"{dotted}.{path.name}")
        elif path.suffix == ".py" and _public(path.stem):
            found.append(f"{dotted}.{path.stem}")
    return found


def pages() -> dict[str, tuple[str, list[str]]]:
    """``reference/<page>.md`` -> (title, the modules it documents), in navigation order."""
    top = [f"shoprec.{p.stem}" for p in sorted(PACKAGE.glob("*.py")) if _public(p.stem)]
    out = {"reference/shoprec.md": ("shoprec", top)}
    for path in sorted(PACKAGE.iterdir()):
        if path.is_dir() and (path / "__init__.py").exists() and _public(path.name):
            dotted = f"shoprec.{path.name}"
            out[f"reference/{path.name}.md"] = (dotted, [dotted, *modules(path, dotted)])
    return out


def page_text(title: str, names: list[str]) -> str:
    blocks = "\n\n".join(f"::: {name}" for name in names)
    return f"# `{title}`\n\n{blocks}\n"


def index_text(all_pages: dict[str, tuple[str, list[str]]]) -> str:
    rows = "\n".join(
        f"| [`{title}`]({os.path.basename(uri)}) | {', '.join(f'`{n}`' for n in names)} |"
        for uri, (title, names) in all_pages.items()
    )
    return (
        "# API reference\n\nGenerated from the docstrings of `libs/shoprec` at every build (see\n"
        "`scripts/mkdocs_reference.py`): one page per package, one section per module.\n\n"
        f"| page | modules |\n|---|---|\n{rows}\n"
    )


def on_config(config: MkDocsConfig) -> MkDocsConfig:
    entries = [{"Overview": "reference/index.md"}, *({title: uri} for uri, (title, _) in pages().items())]
    nav = [item for item in (config.nav or []) if not (isinstance(item, dict) and SECTION in item)]
    config.nav = [*nav, {SECTION: entries}]
    return config


def on_files(files: Files, config: MkDocsConfig) -> Files:
    all_pages = pages()
    files.append(File.generated(config, "reference/index.md", content=index_text(all_pages)))
    for uri, (title, names) in all_pages.items():
        files.append(File.generated(config, uri, content=page_text(title, names)))
    return files
