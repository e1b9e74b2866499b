"""The package's layers as the README draws them: every module listed once, and each one
importing only from the layers below it, so the flow stays one-way."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "tracker"


def readme_layers() -> list[list[str]]:
    """The layers of the README's Layout section, top first."""
    layout = (ROOT / "README.md").read_text().split("## Layout", 1)[1]
    block = re.search(r"```text\n(.*?)```", layout, re.DOTALL)
    assert block, "the Layout section has no ```text block of layers"
    return [[name.strip() for name in line.split(":", 1)[0].split(",")]
            for line in block.group(1).splitlines() if line.strip()]


def imports(module: Path) -> set[str]:
    """The tracker modules `module` imports, wherever in it the import is."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(module.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and \
                node.module.split(".")[0] == "tracker":
            parts = node.module.split(".")
            found.update([parts[1]] if len(parts) > 1 else [a.name for a in node.names])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names
                         if a.name.startswith("tracker."))
    return found - {module.stem, "__version__"}


def test_the_readme_lists_every_module_once() -> None:
    listed = [name for layer in readme_layers() for name in layer]
    modules = sorted(p.stem for p in PACKAGE.glob("*.py")
                     if p.stem not in ("__init__", "__main__"))

    assert sorted(listed) == modules


def test_every_module_imports_only_from_the_layers_below_it() -> None:
    layers = readme_layers()
    depth = {name: number for number, layer in enumerate(layers) for name in layer}
    upward = []
    for module in sorted(PACKAGE.glob("*.py")):
        if module.stem in ("__init__", "__main__"):
            continue
        for used in sorted(imports(module)):
            if depth.get(used, -1) <= depth[module.stem]:
                upward.append(f"{module.stem} imports {used}")

    assert upward == []
