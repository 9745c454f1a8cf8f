"""The project's metadata stays consistent: pyproject.toml, environment.yml, README, CI."""

import re
import subprocess
import sys
from pathlib import Path

import tomllib
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _norm(req: str) -> str:
    return re.sub(r"\s+", "", req).lower()


def test_environment_yml_lists_the_same_requirements():
    project = _pyproject()["project"]
    wanted = {_norm(r) for r in project["dependencies"] + project["optional-dependencies"]["book"]}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    listed = {_norm(r) for r in pip_section if not r.startswith("-e")}
    assert listed == wanted, (f"missing from environment.yml: {wanted - listed}; "
                              f"extra in environment.yml: {listed - wanted}")
    assert any(r.startswith("-e") for r in pip_section)  # installs the package itself


def test_requirements_are_ranges_not_pins():
    for req in _pyproject()["project"]["dependencies"]:
        assert "==" not in req, f"{req}: use a range so the package installs on Colab's torch"


def test_ci_runs_exactly_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"```bash\n(.+?)\n```", readme)
    test_cmd = next(c for c in commands if "pytest" in c)
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_cmd in ci


def test_version_matches_pyproject():
    import atkd_lite

    assert atkd_lite.__version__ == _pyproject()["project"]["version"]


def test_public_names_resolve():
    import atkd_lite

    for name in atkd_lite.__all__:
        assert getattr(atkd_lite, name) is not None
    assert callable(atkd_lite.distill) and atkd_lite.distill.__name__ == "distill"
    assert callable(atkd_lite.ATCam) and callable(atkd_lite.saliency_map)


def test_ruff_is_clean():
    # the chapters too (book/CONVENTIONS.md); their student copies' stubs leave names
    # undefined on purpose
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "atkd_lite", "tests",
                           "benchmarks", "tools", "book", "--extend-exclude", "book/student"],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_pytest_does_not_collect_the_student_copies():
    """book/student/ holds exercise stubs that raise on purpose: nbval must not run them
    (pyproject's norecursedirs); the chapters themselves are collected."""
    proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p",
                           "no:cacheprovider", "book"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "book/01_cnn_basics.ipynb::" in proc.stdout
    assert "book/student/" not in proc.stdout
