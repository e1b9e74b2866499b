"""The templates ship inside the package: the wheel and the sdist carry every file in
templates/, and the one Jinja2 environment finds them all, a folder of one's own first."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from jinja2 import UndefinedError

from tracker import report, templating
from tracker.config import Settings
from tracker.digest import Renderer

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = sorted(p.relative_to(ROOT / "templates").as_posix()
                   for p in (ROOT / "templates").rglob("*")
                   if p.is_file() and p.suffix in (".html", ".txt", ".md"))


def test_the_environment_finds_every_template_in_the_templates_folder() -> None:
    env = templating.environment()
    assert env.loader is not None and TEMPLATES
    for name in TEMPLATES:
        source, _, _ = env.loader.get_source(env, name)
        assert source == (ROOT / "templates" / name).read_text(encoding="utf-8")


def test_a_template_in_the_override_folder_wins_over_the_shipped_one(tmp_path: Path) -> None:
    (tmp_path / "confirm.txt").write_text("Confirm: {{ confirm_url }}\n")
    env = templating.environment(override=tmp_path)

    assert env.get_template("confirm.txt").render(confirm_url="https://x/c") == "Confirm: https://x/c"
    shipped = env.get_template("confirm.html").filename
    assert shipped is not None and Path(shipped).name == "confirm.html"
    assert Path(shipped).parent != tmp_path


def test_html_is_autoescaped_in_an_override_too(tmp_path: Path) -> None:
    (tmp_path / "digest.html").write_text("<p>{{ title }}</p>")
    env = templating.environment(override=tmp_path)
    assert env.get_template("digest.html").render(title="<b>x</b>") == "<p>&lt;b&gt;x&lt;/b&gt;</p>"


def test_strict_environments_refuse_an_undefined_variable(tmp_path: Path) -> None:
    (tmp_path / "note.txt").write_text("[{{ missing }}]")
    with pytest.raises(UndefinedError):
        templating.environment(override=tmp_path).get_template("note.txt").render()
    assert templating.environment(override=tmp_path, strict=False).get_template(
        "note.txt").render() == "[]"


def test_digests_and_reports_use_the_templates_folder_setting(tmp_path: Path) -> None:
    (tmp_path / "confirm.txt").write_text("Mine: {{ days }} days\n")
    (tmp_path / "report_index.html").write_text("{% for w in weeks %}{{ w }};{% endfor %}")
    settings = Settings(templates_dir=tmp_path, confirm_days=5)

    assert Renderer(settings).env.get_template("confirm.txt").render(days=5) == "Mine: 5 days"
    assert report.render_index(["2026-W47"], tmp_path) == "2026-W47;"
    assert report.render_index(["2026-W47"]) != "2026-W47;"  # default: the shipped template


@pytest.mark.slow
def test_the_wheel_and_the_sdist_carry_every_template(tmp_path: Path) -> None:
    pytest.importorskip("build", reason="pip install -e '.[test]'")
    # A copy of what the build reads, so nothing (egg-info, build/) is written into the checkout.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for folder in ("tracker", "templates"):
        shutil.copytree(ROOT / folder, source / folder,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    # Without --wheel, build makes the sdist and then the wheel from it, as pip would.
    result = subprocess.run([sys.executable, "-m", "build", "--outdir", str(tmp_path / "dist"),
                             str(source)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr

    (wheel,) = (tmp_path / "dist").glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        in_wheel = set(archive.namelist())
    (sdist,) = (tmp_path / "dist").glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        in_sdist = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    for name in TEMPLATES:
        assert f"tracker/templates/{name}" in in_wheel
        assert f"templates/{name}" in in_sdist
