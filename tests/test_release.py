"""Releases and publishing: one version everywhere, a release tool, the workflows.

``tools/release.py`` writes the version of ``pyproject.toml`` into every place that
names it (the package, the chapters' install cells, the student copies, the README's
Colab link, the changelog) and checks that they agree. The workflows in
``.github/workflows/`` cannot run here (they need GitHub's hosted service); they are
parsed and checked against what they must do: build the book with the README's command
and deploy ``_build/html``; on a version tag, build, check and attach the wheel and the
sdist. That the wheel builds and installs in a fresh virtual environment is checked by
``tests/test_colab_path.py``.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"


def _load_tool():
    spec = importlib.util.spec_from_file_location("release", ROOT / "tools" / "release.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


release = _load_tool()


def _copy_project(dest: Path) -> Path:
    """The files the release tool reads and writes, copied (the checkout stays as it is)."""
    for name in ("pyproject.toml", "README.md", "CHANGELOG.md"):
        shutil.copy(ROOT / name, dest / name)
    (dest / "atkd_lite").mkdir()
    shutil.copy(ROOT / "atkd_lite" / "__init__.py", dest / "atkd_lite" / "__init__.py")
    shutil.copytree(ROOT / "tools", dest / "tools",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (dest / "book" / "student").mkdir(parents=True)
    for path in (ROOT / "book").glob("*.ipynb"):
        shutil.copy(path, dest / "book" / path.name)
    for path in (ROOT / "book" / "student").glob("*.ipynb"):
        shutil.copy(path, dest / "book" / "student" / path.name)
    for path in (ROOT / "book" / "figures").glob("*"):  # the student copies embed them
        (dest / "book" / "figures").mkdir(exist_ok=True)
        shutil.copy(path, dest / "book" / "figures" / path.name)
    return dest


# ----------------------------------------------------------------- one version


def test_every_place_names_the_projects_version():
    assert release.problems() == [], "run: python tools/release.py --check"


def test_the_version_check_runs_from_the_command_line():
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "release.py"), "--check"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert f"version {release.project_version()}: every place agrees" in proc.stdout


def test_the_check_names_each_place_that_disagrees(tmp_path):
    root = _copy_project(tmp_path)
    version = release.project_version(root)
    init = root / "atkd_lite" / "__init__.py"
    init.write_text(init.read_text().replace(f'"{version}"', '"9.9.9"'))
    chapter = sorted((root / "book").glob("0*.ipynb"))[0]
    chapter.write_text(chapter.read_text().replace(f"@v{version}", "@main"))
    readme = root / "README.md"
    readme.write_text(readme.read_text().replace(f"blob/v{version}/", "blob/main/"))
    changelog = root / "CHANGELOG.md"
    changelog.write_text(changelog.read_text().replace(f"## [{version}] - ", f"## {version} "))
    found = "\n".join(release.problems(root, tag="v9.9.9"))
    assert "the tag 'v9.9.9' is not v" in found
    assert "__version__ is '9.9.9'" in found
    assert f"{chapter.relative_to(root)}: the install cell installs ['main']" in found
    assert "README.md: the Colab link opens ['main']" in found
    assert f"no '## [{version}] - YYYY-MM-DD' section" in found


@pytest.mark.slow
def test_a_new_version_is_written_everywhere_and_nothing_else_changes(tmp_path):
    root = _copy_project(tmp_path)
    old = release.project_version(root)
    major, minor, _ = (int(x) for x in old.split(".")[:3])
    new = f"{major}.{minor + 1}.0"  # the next minor release, whatever the current one
    before = {p.relative_to(root): json.loads(p.read_text()) for p in release.notebooks(root)}
    unreleased = (root / "CHANGELOG.md").read_text().split("## [Unreleased]")[1] \
        .split(f"## [{old}]")[0].strip()
    release.set_version(new, root=root, date="2027-01-15")

    assert release.problems(root) == []
    assert release.project_version(root) == new
    for rel, nb in before.items():  # only the install cell's ref, in chapters and copies
        after = json.loads((root / rel).read_text())
        assert len(after["cells"]) == len(nb["cells"]), rel
        changed = [i for i, (a, b) in enumerate(zip(nb["cells"], after["cells"])) if a != b]
        first_code = next(i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code")
        assert changed == [first_code], (rel, changed)
        src = "".join(after["cells"][first_code]["source"])
        assert f"@v{new}\"" in src and f"@v{old}" not in src
    text = (root / "CHANGELOG.md").read_text()
    assert f"## [Unreleased]\n\n## [{new}] - 2027-01-15\n" in text
    assert f"[Unreleased]: {release.homepage(root)}/compare/v{new}...HEAD" in text
    assert f"[{new}]: {release.homepage(root)}/compare/v{old}...v{new}" in text
    assert release.release_notes(new, root).strip() == unreleased
    assert f"## [{old}] - " in text  # the old release stays
    assert f"blob/v{new}/book/" in (root / "README.md").read_text()


@pytest.mark.parametrize("version, message", [
    ("0.2", "not a release version"),
    ("v0.2.0", "not a release version"),
])
def test_a_bad_version_is_refused_before_anything_is_written(tmp_path, version, message):
    root = _copy_project(tmp_path)
    before = (root / "pyproject.toml").read_text()
    with pytest.raises(release.ReleaseError, match=message):
        release.set_version(version, root=root)
    assert (root / "pyproject.toml").read_text() == before


def test_the_current_version_is_refused_as_a_new_one(tmp_path):
    root = _copy_project(tmp_path)
    with pytest.raises(release.ReleaseError, match="already"):
        release.set_version(release.project_version(root), root=root)


def test_the_changelog_keeps_a_changelog():
    text = (ROOT / "CHANGELOG.md").read_text()
    versions = re.findall(r"^## \[([^\]]+)\](?: - (\d{4}-\d{2}-\d{2}))?$", text, re.MULTILINE)
    assert versions[0] == ("Unreleased", ""), "the first section is [Unreleased]"
    assert all(date for _, date in versions[1:]), "every release has its date"
    for name, _ in versions:
        assert re.search(rf"^\[{re.escape(name)}\]: https://\S+$", text, re.MULTILINE), \
            f"no link for [{name}] at the foot"
    notes = release.release_notes(release.project_version())
    assert notes.startswith("The first release") or "###" in notes


# ------------------------------------------------------------------- the workflows


def _workflow(name: str) -> dict:
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as True
    return data


def _steps(job: dict) -> list[dict]:
    return job.get("steps", [])


def _readme_build_command() -> str:
    """The book-build part of the README's command (a), as run from a shell with the venv."""
    readme = (ROOT / "README.md").read_text()
    command = re.search(r"\*\*\(a\) Build the book\*\*.*?```bash\n(.*?)\n```", readme,
                        flags=re.DOTALL).group(1)
    build = next(part.strip() for part in command.split("&&") if "jupyter-book build" in part)
    return build.removeprefix(".venv/bin/")


def test_the_book_workflow_builds_with_the_readmes_command_and_deploys_the_html():
    wf = _workflow("book.yml")
    assert wf["on"]["push"]["branches"] == ["main"]
    assert wf["permissions"]["pages"] == "write" and wf["permissions"]["id-token"] == "write"
    build = wf["jobs"]["build"]
    runs = [s.get("run", "") for s in _steps(build)]
    assert _readme_build_command() in runs, (_readme_build_command(), runs)
    assert not any("jupyter execute" in r or "--execute" in r for r in runs), \
        "the published book shows the committed outputs: nothing is executed"
    upload = [s for s in _steps(build) if s.get("uses", "").startswith(
        "actions/upload-pages-artifact@")]
    assert upload and upload[0]["with"]["path"] == "_build/html"
    deploy = wf["jobs"]["deploy"]
    assert deploy["needs"] == "build"
    assert any(s.get("uses", "").startswith("actions/deploy-pages@") for s in _steps(deploy))
    assert deploy["environment"]["name"] == "github-pages"


def test_the_release_workflow_builds_checks_and_attaches_the_distributions():
    wf = _workflow("release.yml")
    assert wf["on"]["push"]["tags"] == ["v*"]
    dist = wf["jobs"]["dist"]
    runs = "\n".join(s.get("run", "") for s in _steps(dist))
    assert 'tools/release.py --check --tag "$GITHUB_REF_NAME"' in runs
    assert "python -m build" in runs and "twine check --strict dist/*" in runs
    assert runs.index("release.py --check") < runs.index("python -m build")
    gh = wf["jobs"]["github-release"]
    assert gh["needs"] == "dist" and gh["permissions"]["contents"] == "write"
    gh_runs = "\n".join(s.get("run", "") for s in _steps(gh))
    assert "gh release create" in gh_runs and "dist/*" in gh_runs
    assert 'release.py --notes "$GITHUB_REF_NAME"' in gh_runs
    pypi = wf["jobs"]["pypi"]
    assert pypi["if"] == "vars.PUBLISH_TO_PYPI == 'true'"
    assert pypi["permissions"]["id-token"] == "write"
    assert any(s.get("uses", "").startswith("pypa/gh-action-pypi-publish@")
               for s in _steps(pypi))


def test_the_release_notes_of_a_tag_come_from_the_changelog():
    version = release.project_version()
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "release.py"), "--notes",
                           f"v{version}"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == release.release_notes(version)
    assert "## [" not in proc.stdout and proc.stdout.strip()
