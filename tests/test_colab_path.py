"""The Colab path, tested in its parts (Colab itself cannot be reached from here).

A reader opens a chapter on Colab and runs it from the top. That works when

1. the first code cell installs the book's package on Colab, and only there;
2. the package installs on top of the torch that Colab already has, without replacing
   it: checked by installing a wheel built from this checkout into a fresh virtual
   environment in which torch is already present, offline, through that install cell;
3. no notebook needs a file that exists only in this repository (on Colab there is no
   checkout: data, models and caches come through the installed package).
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import types
from pathlib import Path

import nbformat
import pytest
import tomllib
import yaml
from IPython.core.inputtransformer2 import TransformerManager
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
BOOK_NOTEBOOKS = sorted((ROOT / "book").glob("*.ipynb"))
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
PACKAGE = canonicalize_name(PROJECT["name"])
HOMEPAGE = PROJECT["urls"]["Homepage"].rstrip("/")
COLAB_GUARD = '"google.colab" in sys.modules'
PIP_MAGICS = {"pip", "conda", "mamba", "uv"}


def _python_source(cell_source: str) -> str:
    """A cell's code with IPython syntax (``%pip``, ``!cmd``) turned into plain Python."""
    return TransformerManager().transform_cell(cell_source)


def _install_cell(nb) -> nbformat.NotebookNode:
    return next(c for c in nb.cells if c.cell_type == "code")


# ---------------------------------------------------------------- 1. the install cell


def _install_calls(tree: ast.AST):
    """Yield ``(call node, kind, argument)`` for each install in a cell's Python code.

    kind is the magic's name (``%pip`` → "pip") or "system" for ``!command``; an argument
    that is not a plain string is reported as None.
    """
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        args = [a.value if isinstance(a, ast.Constant) else None for a in node.args]
        if node.func.attr in ("run_line_magic", "run_cell_magic") and args and args[0] in PIP_MAGICS:
            yield node, args[0], args[1] if len(args) > 1 else None
        elif node.func.attr in ("system", "getoutput") and args and args[0] and re.search(
                r"\b(pip|conda|mamba|uv)\b.*\binstall\b", args[0]):
            yield node, "system", args[0]


def _guarded_by_colab(tree: ast.AST, target: ast.AST) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "google.colab" in ast.unparse(node.test):
            if any(target is sub for stmt in node.body for sub in ast.walk(stmt)):
                return True
    return False


def install_cell_problems(nb) -> list[str]:
    """What is wrong with a notebook's install cell (its first code cell); [] if nothing."""
    cell = _install_cell(nb)
    tree = ast.parse(_python_source(cell.source))
    calls = list(_install_calls(tree))
    problems = []
    if not calls:
        problems.append("the first code cell installs nothing (Colab needs the package)")
    for node, kind, argument in calls:
        shown = ast.unparse(node)
        if not _guarded_by_colab(tree, node):
            problems.append(f"{shown}: runs outside Colab too; put it under "
                            f"`if {COLAB_GUARD}:`")
        if kind == "system":
            problems.append(f"{shown}: use %pip (installs into the kernel's environment)")
            continue
        problems += [f"{shown}: {p}" for p in _pip_target_problems(argument)]
    return problems


def _pip_target_problems(line: str | None) -> list[str]:
    if line is None:
        return ["the pip command is not a plain string"]
    words = shlex.split(line)
    if words[:1] != ["install"]:
        return ["expected `%pip install ...`"]
    flags = [w for w in words[1:] if w.startswith("-")]
    targets = [w for w in words[1:] if not w.startswith("-")]
    problems = [f"option {f} is not allowed here: install the package by its requirement"
                for f in flags if f not in ("-q", "--quiet", "-U", "--upgrade")]
    if len(targets) != 1:
        return problems + [f"installs {targets}: expected exactly the book's package"]
    req = Requirement(targets[0])
    if canonicalize_name(req.name) != PACKAGE:
        problems.append(f"installs {req.name!r}, not the book's package {PROJECT['name']!r}")
    if req.url is not None and req.url != f"git+{HOMEPAGE}@main":
        problems.append(f"installs from {req.url}, expected git+{HOMEPAGE}@main "
                        "(the repository's main branch)")
    if req.specifier and any(s.operator == "==" for s in req.specifier):
        problems.append("pins a version: the notebook should get the package of its branch")
    return problems


class _RecordingShell:
    """Stands in for ``get_ipython()``: records magics and shell commands, runs none."""

    def __init__(self):
        self.calls = []

    def run_line_magic(self, name, line):
        self.calls.append((name, line))

    def run_cell_magic(self, name, line, cell):
        self.calls.append((name, line))

    def system(self, command):
        self.calls.append(("system", command))

    getoutput = system


def _run_cell_recording(source: str) -> list[tuple[str, str]]:
    shell = _RecordingShell()
    exec(compile(_python_source(source), "<install cell>", "exec"),
         {"get_ipython": lambda: shell, "__name__": "__main__"})
    return shell.calls


@pytest.mark.parametrize("path", BOOK_NOTEBOOKS, ids=lambda p: p.name)
def test_install_cell_installs_the_package_on_colab_only(path, monkeypatch, capsys):
    nb = nbformat.read(path, as_version=4)
    problems = install_cell_problems(nb)
    assert not problems, f"{path.name}, first code cell:\n" + "\n".join(problems)

    # and when it runs: nothing installed here, the package (only) on Colab
    source = _install_cell(nb).source
    assert _run_cell_recording(source) == []
    monkeypatch.setitem(sys.modules, "google", types.ModuleType("google"))
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    calls = _run_cell_recording(source)
    assert [name for name, _ in calls] == ["pip"], calls
    assert "profile:" in capsys.readouterr().out  # the rest of the cell ran too


def test_colab_launch_settings_point_at_this_repository():
    """The book's Colab button opens the notebook of the repository the cell installs."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    repo, launch = config["repository"], config["launch_buttons"]
    assert repo["url"].rstrip("/") == HOMEPAGE, "_config.yml's repository is not the package's"
    assert repo["branch"] == "main", f"_config.yml: the Colab button opens branch {repo['branch']}"
    assert launch["colab_url"] == "https://colab.research.google.com"


@pytest.mark.parametrize("source, expected", [
    ('%pip install -q "atkd-lite @ git+https://github.com/atkd-lite/atkd-lite@main"',
     "runs outside Colab too"),
    ('import sys\nif "google.colab" in sys.modules:\n    %pip install -q numpy',
     "not the book's package"),
    ('import sys\nif "google.colab" in sys.modules:\n'
     '    %pip install "atkd-lite @ git+https://github.com/someone/fork@dev"',
     "expected git+"),
    ('import sys\nif "google.colab" in sys.modules:\n    !pip install atkd-lite',
     "use %pip"),
    ("import sys\nprint(1)", "installs nothing"),
])
def test_install_cell_check_catches_mistakes(source, expected):
    nb = new_notebook(cells=[new_markdown_cell("# T"), new_code_cell(source)])
    assert any(expected in p for p in install_cell_problems(nb)), install_cell_problems(nb)


# -------------------------------------------------- 2. the wheel on top of a present torch


def _site_packages() -> list[Path]:
    paths = sysconfig.get_paths()
    return sorted({Path(paths["purelib"]), Path(paths["platlib"])})


def _is_this_package(name: str) -> bool:
    low = name.lower().replace("-", "_")
    return low.startswith(("atkd_lite", "__editable__")) or low.endswith((".pth", ".egg-link"))


def _preinstalled_layer(target: Path) -> Path:
    """A folder that shows everything installed here except this package (symlinks).

    It plays Colab's preinstalled packages: torch, torchvision, numpy, matplotlib, ...
    """
    target.mkdir()
    for site in _site_packages():
        for entry in site.iterdir():
            if not _is_this_package(entry.name) and not (target / entry.name).exists():
                (target / entry.name).symlink_to(entry)
    return target


def _build_wheel(workdir: Path) -> Path:
    """``pip wheel . --no-deps`` on a copy of the package's sources (the checkout stays clean)."""
    src = workdir / "src"
    src.mkdir()
    shutil.copytree(ROOT / "atkd_lite", src / "atkd_lite",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md", "LICENSE", "MANIFEST.in", "setup.py", "setup.cfg"):
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, src / name)
    wheels = workdir / "wheels"
    cmd = [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "-w", str(wheels),
           "--disable-pip-version-check"]
    # offline when the build backend is already here (as in the book's environment);
    # otherwise pip fetches setuptools for an isolated build
    proc = subprocess.run(cmd + ["--no-build-isolation"], capture_output=True, text=True)
    if proc.returncode != 0:
        proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, f"building the wheel failed:\n{proc.stdout}\n{proc.stderr}"
    [wheel] = wheels.glob("*.whl")
    return wheel


def _clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PIP_", "VIRTUAL_ENV"))}
    # no pip configuration of this machine (extra wheel folders, constraints): only what
    # the commands say
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1",
               ATKD_LITE_PROFILE="cpu", **extra)
    return env


# Runs the install cell inside the fresh environment, as Colab would: google.colab is
# present, and %pip installs the wheel instead of the git URL (there is no network).
_COLAB_RUNNER = textwrap.dedent('''
    import json, shlex, subprocess, sys, types
    from packaging.requirements import Requirement

    sys.modules["google"] = types.ModuleType("google")
    sys.modules["google.colab"] = types.ModuleType("google.colab")
    wheel, wheels, package, code = sys.argv[1:5]
    log = []

    class Shell:
        def run_line_magic(self, name, line):
            assert name == "pip", name
            words = [wheel if not w.startswith("-") and w != "install"
                     and Requirement(w).name.replace("_", "-").lower() == package else w
                     for w in shlex.split(line)]
            proc = subprocess.run([sys.executable, "-m", "pip", *words, "--no-index",
                                   "--find-links", wheels], capture_output=True, text=True)
            log.append({"args": words, "rc": proc.returncode,
                        "out": proc.stdout + proc.stderr})
            print(proc.stdout + proc.stderr)

    exec(compile(open(code).read(), "<install cell>", "exec"),
         {"get_ipython": Shell, "__name__": "__main__"})
    import atkd_lite, torch
    print(json.dumps({"pip": log, "atkd_lite": atkd_lite.__file__, "torch": torch.__file__,
                      "torch_version": torch.__version__}))
''')


@pytest.fixture(scope="module")
def fresh_env(tmp_path_factory):
    """A fresh venv (``--system-site-packages``) with torch & co. present, and the wheel."""
    work = tmp_path_factory.mktemp("colab")
    wheel = _build_wheel(work)
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip",
                    str(venv)], check=True)
    python = venv / "bin" / "python"
    # The venv's "system" site-packages are the base interpreter's, not this
    # environment's, so torch is made present through a .pth file, as preinstalled
    # packages are on Colab. This package itself is left out of that layer.
    layer = _preinstalled_layer(work / "preinstalled")
    venv_site = Path(subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True).stdout.strip())
    (venv_site / "_preinstalled.pth").write_text(f"{layer}\n")
    return types.SimpleNamespace(work=work, wheel=wheel, python=python, site=venv_site,
                                 layer=layer)


def _install_cells() -> dict[str, list[str]]:
    """Each distinct install cell of the book -> the notebooks that have it."""
    cells: dict[str, list[str]] = {}
    for path in BOOK_NOTEBOOKS:
        source = _install_cell(nbformat.read(path, as_version=4)).source
        cells.setdefault(source, []).append(path.name)
    return cells


@pytest.mark.slow
@pytest.mark.skipif(not BOOK_NOTEBOOKS, reason="no notebooks in book/")
def test_wheel_installs_on_a_present_torch_without_reinstalling_it(fresh_env):
    env = _clean_env()
    probe = subprocess.run([fresh_env.python, "-c", "import atkd_lite"], capture_output=True,
                           text=True, cwd=fresh_env.work, env=env)
    assert probe.returncode != 0, "the fresh environment already sees atkd_lite"
    torch_before = subprocess.run(
        [fresh_env.python, "-c", "import torch; print(torch.__file__, torch.__version__)"],
        capture_output=True, text=True, check=True, cwd=fresh_env.work, env=env).stdout.split()

    # what pip would install, resolving every requirement of the wheel (offline)
    report = fresh_env.work / "report.json"
    dry = subprocess.run(
        [fresh_env.python, "-m", "pip", "install", "--dry-run", "--report", str(report),
         "--no-index", "--find-links", str(fresh_env.wheel.parent), str(fresh_env.wheel)],
        capture_output=True, text=True, cwd=fresh_env.work, env=env)
    assert dry.returncode == 0, (
        "the packages already present do not meet the wheel's requirements: on Colab pip "
        "would download and install others (e.g. replace torch):\n" + dry.stdout + dry.stderr)
    planned = {canonicalize_name(item["metadata"]["name"])
               for item in json.loads(report.read_text())["install"]}
    assert planned == {PACKAGE}, f"pip would also install {sorted(planned - {PACKAGE})}"

    # the install cells themselves, as on Colab (the first one installs, the others find
    # the package already there)
    runner = fresh_env.work / "colab_runner.py"
    runner.write_text(_COLAB_RUNNER)
    for number, (source, names) in enumerate(_install_cells().items()):
        code = fresh_env.work / f"install_cell_{number}.py"
        code.write_text(_python_source(source))
        proc = subprocess.run([fresh_env.python, runner, str(fresh_env.wheel),
                               str(fresh_env.wheel.parent), PACKAGE, str(code)],
                              capture_output=True, text=True, cwd=fresh_env.work, env=env,
                              timeout=300)
        where = f"the install cell of {', '.join(names)}"
        assert proc.returncode == 0, f"{where} failed:\n{proc.stdout}\n{proc.stderr}"
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        [pip] = result["pip"]
        assert pip["rc"] == 0, f"{where}: pip failed:\n{pip['out']}"
        assert "profile:" in proc.stdout, f"{where} did not get past the install"
    installed = sorted(p.name.split("-")[0] for p in fresh_env.site.glob("*.dist-info"))
    assert installed == ["atkd_lite"], f"installed into the fresh environment: {installed}"

    # the package came from the wheel, torch is the one that was there before
    assert Path(result["atkd_lite"]).is_relative_to(fresh_env.site)
    assert not Path(result["atkd_lite"]).is_relative_to(ROOT)
    assert [result["torch"], result["torch_version"]] == torch_before
    assert not (fresh_env.site / "torch").exists()


# ------------------------------------------------------- 3. no paths of this repository

_REPO_TOP = sorted(p.name for p in ROOT.iterdir() if not p.name.startswith("."))
_PATHLIKE = re.compile(r"[\w.-]*[/\\][\w./\\-]*|[\w-]+\.\w{1,5}")


def _string_constants(source: str):
    tree = ast.parse(_python_source(source))
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.value
        elif isinstance(node, ast.JoinedStr):  # f-strings: their literal parts
            yield "".join(v.value for v in node.values if isinstance(v, ast.Constant))


def repository_paths(nb, book_dir: Path = ROOT / "book") -> list[str]:
    """The paths in a notebook's code that would only work inside this repository.

    A path counts if it climbs out of the notebook's folder (``..``), is absolute into
    this checkout (or /work), starts with a top-level folder of the repository
    (``results/``, ``book/``, ...), or names a file or folder that exists in the
    repository next to the notebook or at its root.
    """
    found = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        for text in _string_constants(cell.source):
            for word in re.split(r"[\s'\"=,;()]+", text):
                word = word.strip()
                if not word or word.startswith(("http://", "https://", "git+")):
                    continue
                parts = re.split(r"[/\\]", word)
                bad = (".." in parts
                       or word.startswith(("/work", str(ROOT)))
                       or (len(parts) > 1 and parts[0] in _REPO_TOP)
                       or (_PATHLIKE.fullmatch(word) and not word.startswith("/")
                           and ((book_dir / word).exists() or (ROOT / word).exists())))
                if bad:
                    found.append(f"cell {index}: {word!r}")
    return found


@pytest.mark.parametrize("path", BOOK_NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_needs_no_file_of_this_repository(path):
    found = repository_paths(nbformat.read(path, as_version=4))
    assert not found, (f"{path.name} uses paths that exist only in this repository "
                       f"(load them through atkd_lite instead): {found}")


@pytest.mark.parametrize("code", [
    'open("../results/mnist5k/summary.json")',
    "import json\njson.load(open('benchmarks/results.json'))",
    'import sys\nsys.path.insert(0, "..")',
    "%run ../tools/make_student_copies.py",
    "!cat references.bib",
    'df = load("/work/main/results/x.csv")',
    "p = f'book/{name}.ipynb'",
])
def test_repository_path_check_catches_them(code):
    nb = new_notebook(cells=[new_code_cell(code)])
    assert repository_paths(nb), code


def test_repository_path_check_accepts_package_calls():
    code = ('import atkd_lite as ak\ntrain = ak.load_dataset("mnist5k", "train")\n'
            'path = ak.cache_dir() / "teacher.pt"\nprint(f"{1/3:.2f} and 3/4")\n'
            '%pip install -q "atkd-lite @ git+https://github.com/atkd-lite/atkd-lite@main"')
    assert repository_paths(new_notebook(cells=[new_code_cell(code)])) == []
