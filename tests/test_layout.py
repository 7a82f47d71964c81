"""The layout stays the architecture: README's code map names every package, the top
level stays small, and imports run one way (no stage package imports another)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "watchdesk"
README = (ROOT / "README.md").read_text()

# What each package may import from watchdesk (besides itself). Lower layers never
# import upward; the stage packages never import one another.
BOTTOM = {"models", "errors", "web"}
ALLOWED = {
    "language": BOTTOM,
    "config": BOTTOM | {"language"},
    "ingest": BOTTOM | {"config"},
    "matching": BOTTOM | {"config", "language"},
    "store": BOTTOM | {"config", "language"},
    "notify": BOTTOM | {"config"},
    "stories": BOTTOM | {"config", "language"},
    "ops": BOTTOM,  # logs and metrics: read the plain data (PollSummary), import no stage
}
STAGES = set(ALLOWED)


def subpackages() -> list[str]:
    return sorted(p.parent.name for p in PACKAGE.glob("*/__init__.py"))


def watchdesk_imports(file: Path) -> set[str]:
    """The top-level watchdesk names (package or module) a file imports."""
    relative_to = file.relative_to(PACKAGE).parts
    found: set[str] = set()
    for node in ast.walk(ast.parse(file.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0:
                parts = (node.module or "").split(".")
                if parts[0] == "watchdesk" and len(parts) > 1:
                    found.add(parts[1])
                continue
            base = list(relative_to[:-1])[: len(relative_to) - node.level]
            target = [*base, *(node.module.split(".") if node.module else [])]
            if target:
                found.add(target[0])
            else:  # from .. import name: a top-level module or an attribute of the package
                found.update(a.name for a in node.names if (PACKAGE / f"{a.name}.py").exists())
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "watchdesk" and len(parts) > 1:
                    found.add(parts[1])
    return {name.removesuffix(".py") for name in found}


def test_readme_code_map_names_every_package() -> None:
    section = README.split("## Code map", 1)[1].split("\n## ", 1)[0]
    missing = [name for name in subpackages() if f"{name}/" not in section]
    assert not missing, f"README's Code map does not name: {missing}"
    top = [p.stem for p in PACKAGE.glob("*.py") if not p.stem.startswith("__")]
    unnamed = [m for m in top if f"{m}.py" not in section]
    assert not unnamed, f"README's Code map does not name: {unnamed}"


def test_top_level_stays_small() -> None:
    modules = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(modules) <= 12, modules


def test_stage_packages_import_only_below_themselves() -> None:
    wrong = []
    for package in STAGES:
        for file in (PACKAGE / package).rglob("*.py"):
            for name in watchdesk_imports(file) - {package}:
                if name not in ALLOWED[package]:
                    wrong.append(f"{file.relative_to(ROOT)} imports watchdesk.{name}")
    assert not wrong, "\n".join(wrong)


def test_bottom_modules_import_nothing_above() -> None:
    wrong = []
    for name in BOTTOM:
        for imported in watchdesk_imports(PACKAGE / f"{name}.py") - {name}:
            if imported not in BOTTOM:
                wrong.append(f"{name}.py imports watchdesk.{imported}")
    assert not wrong, wrong


def test_the_layer_check_sees_a_wrong_import(tmp_path: Path) -> None:
    """The check itself can fail: a relative import two levels up is resolved."""
    file = PACKAGE / "store" / "entries.py"
    assert "language" in watchdesk_imports(file)
    assert "models" in watchdesk_imports(file)
