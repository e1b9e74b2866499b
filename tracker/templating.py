"""The one Jinja2 environment for e-mails and reports, built from the shipped templates.

A folder of one's own (`TRACKER_TEMPLATES_DIR`) comes first: a template there replaces the
shipped one of the same name. The shipped templates live in the repository's top-level
templates/ folder; pyproject.toml ships that folder inside the package as `tracker.templates`,
so an installed wheel reads them from its own files, wherever it runs from. HTML templates are
always autoescaped.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from jinja2 import (
    BaseLoader,
    ChoiceLoader,
    Environment,
    FileSystemLoader,
    PackageLoader,
    StrictUndefined,
    Undefined,
    select_autoescape,
)

PACKAGE = "tracker.templates"
CHECKOUT = Path(__file__).resolve().parents[1] / "templates"


def environment(*, override: Path | None = None, strict: bool = True) -> Environment:
    """Templates from `override` first, then the shipped ones, looked up by file name.

    `strict` makes an undefined variable an error instead of an empty string.
    """
    loaders: list[BaseLoader] = [FileSystemLoader(override)] if override else []
    loaders.append(shipped())
    return Environment(loader=ChoiceLoader(loaders), autoescape=select_autoescape(["html"]),
                       trim_blocks=True, lstrip_blocks=True,
                       undefined=StrictUndefined if strict else Undefined)


def shipped() -> BaseLoader:
    """The shipped templates: the `tracker.templates` package of an installed wheel.

    setuptools' editable installs cannot import a package mapped from a folder without an
    __init__.py (pypa/setuptools#4248), so with `pip install -e .`, or no install at all, the
    templates are read from the checkout's templates/ folder beside tracker/.
    """
    if importlib.util.find_spec(PACKAGE) is None and CHECKOUT.is_dir():
        return FileSystemLoader(CHECKOUT)
    return PackageLoader(PACKAGE, ".")
