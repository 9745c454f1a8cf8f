"""The Colab path, tested in its parts (Colab itself cannot be reached from here).

A reader opens a chapter on Colab and runs it from the top. That works when

1. the first code cell installs the book's package on Colab, and only there, at the
   release the notebook's outputs came from (the tag ``v<version>``, never a moving
   branch), and says which version and profile run;
2. the package installs on top of the torch that Colab already has, without replacing
   it: checked by installing a wheel built from this checkout into a fresh virtual
   environment in which torch is already present, offline, through that install cell,
   and by checking the requirement ranges against the versions Colab ships;
3. no notebook needs a file that exists only in this repository (on Colab there is no
   checkout: data, models and caches come through the installed package);
4. the GPU profile is coherent and every chapter takes every setting the profile
   defines from the profile;
5. Colab's free T4 has no native bfloat16: training there runs in float16 with a
   gradient scaler, a path tested here on the CPU;
6. each Colab notebook is a fresh machine: an optional Google Drive cache keeps the
   teacher across chapters.
"""

from __future__ import annotations

import ast
import json
import math
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
import torch
import yaml
from IPython.core.inputtransformer2 import TransformerManager
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
BOOK_NOTEBOOKS = sorted((ROOT / "book").glob("*.ipynb"))
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
PACKAGE = canonicalize_name(PROJECT["name"])
HOMEPAGE = PROJECT["urls"]["Homepage"].rstrip("/")
VERSION = PROJECT["version"]
#: the git ref a chapter installs: the release tag of the version its outputs came from
RELEASE_REF = f"v{VERSION}"
INSTALL_URL = f"git+{HOMEPAGE}@{RELEASE_REF}"
COLAB_GUARD = '"google.colab" in sys.modules'
PIP_MAGICS = {"pip", "conda", "mamba", "uv"}

#: The first code cell of every chapter (the text handed to the chapters' authors in
#: /work/notes/issue-16-chapter-todo.md). The checks below accept any cell that does the
#: same; this one is the reference the tests run.
INSTALL_CELL = f"""import sys

# on Colab only: install the release these outputs came from
if "google.colab" in sys.modules:
    %pip install -q "atkd-lite @ {INSTALL_URL}"

import atkd_lite as ak

# Colab: True keeps the trained teacher in your Google Drive for every chapter
USE_DRIVE = False
if USE_DRIVE:
    ak.config.drive_cache()
P = ak.profile()
print(f"atkd-lite {{ak.__version__}}, profile {{P.name}}: {{P.notes}}")"""

#: Chapters whose first cell is still an old one (installs a moving branch, prints no
#: version, offers no Drive cache). Strict xfail: a chapter that passes while listed here
#: fails; remove it from the list. Empty since issue 16 (the check of the committed output
#: needs each chapter re-executed after its install cell changed).
PENDING_INSTALL_CELL: set[str] = set()


def _chapters(pending: set[str], reason: str):
    """The chapter notebooks as parameters, those in ``pending`` as strict xfails."""
    return [pytest.param(p, id=p.name, marks=pytest.mark.xfail(strict=True, reason=reason))
            if p.name in pending else pytest.param(p, id=p.name) for p in BOOK_NOTEBOOKS]


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
    code = ast.unparse(tree)
    if "__version__" not in code:
        problems.append("the cell does not print ak.__version__ (which release made the "
                        "outputs below)")
    if "drive_cache" not in code:
        problems.append("the cell does not offer the Google Drive cache "
                        "(ak.config.drive_cache(), see atkd_lite.config)")
    return problems


def _pip_target_problems(line: str | None) -> list[str]:
    if line is None:
        return ["the pip command is not a plain string"]
    words = shlex.split(line)
    if words[:1] != ["install"]:
        return ["expected `%pip install ...`"]
    flags = [w for w in words[1:] if w.startswith("-")]
    targets = [w for w in words[1:] if not w.startswith("-")]
    # -U / --upgrade would also upgrade what Colab already has (e.g. mlxtend, numpy)
    problems = [f"option {f} is not allowed here: install the package by its requirement"
                for f in flags if f not in ("-q", "--quiet")]
    if len(targets) != 1:
        return problems + [f"installs {targets}: expected exactly the book's package"]
    req = Requirement(targets[0])
    if canonicalize_name(req.name) != PACKAGE:
        problems.append(f"installs {req.name!r}, not the book's package {PROJECT['name']!r}")
    if req.url != INSTALL_URL:
        problems.append(f"installs from {req.url or 'the package index'}, expected "
                        f"{INSTALL_URL} (the release tag of version {VERSION}, which made "
                        "the committed outputs; never a moving branch)")
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


def _check_install_cell(source: str, monkeypatch, capsys) -> None:
    """Run an install cell without Colab (installs nothing), then as on Colab (pip only)."""
    assert _run_cell_recording(source) == []
    monkeypatch.setitem(sys.modules, "google", types.ModuleType("google"))
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    calls = _run_cell_recording(source)
    assert [name for name, _ in calls] == ["pip"], calls
    out = capsys.readouterr().out
    assert f"atkd-lite {VERSION}" in out and "profile" in out, out  # the rest ran too


def test_reference_install_cell_passes_the_checks(monkeypatch, capsys):
    nb = new_notebook(cells=[new_markdown_cell("# T"), new_code_cell(INSTALL_CELL)])
    assert install_cell_problems(nb) == []
    _check_install_cell(INSTALL_CELL, monkeypatch, capsys)


@pytest.mark.parametrize("path", _chapters(PENDING_INSTALL_CELL, "install cell not yet "
                                           "updated (issue 16, see PENDING_INSTALL_CELL)"))
def test_install_cell_installs_the_release_on_colab_only(path, monkeypatch, capsys):
    nb = nbformat.read(path, as_version=4)
    problems = install_cell_problems(nb)
    assert not problems, f"{path.name}, first code cell:\n" + "\n".join(problems)
    _check_install_cell(_install_cell(nb).source, monkeypatch, capsys)
    # the committed outputs came from the release the cell installs
    printed = "".join(o.get("text", "") for o in _install_cell(nb).get("outputs", []))
    assert f"atkd-lite {VERSION}" in printed, (
        f"{path.name}: the committed output of the first cell does not say 'atkd-lite "
        f"{VERSION}': re-execute the chapter with this version")


def test_colab_launch_settings_point_at_this_repository():
    """The book's Colab button opens a notebook of the repository the cell installs.

    (tools/book_extension.py then points it at the student copy at the release tag; the
    browser test in tests/test_site.py checks the links on the built pages.)
    """
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    repo, launch = config["repository"], config["launch_buttons"]
    assert repo["url"].rstrip("/") == HOMEPAGE, "_config.yml's repository is not the package's"
    assert repo["branch"] == "main", f"_config.yml: the Colab button opens branch {repo['branch']}"
    assert launch["colab_url"] == "https://colab.research.google.com"


@pytest.mark.parametrize("source, expected", [
    (f'%pip install -q "atkd-lite @ {INSTALL_URL}"', "runs outside Colab too"),
    ('import sys\nif "google.colab" in sys.modules:\n'
     '    %pip install -q "atkd-lite @ git+https://github.com/atkd-lite/atkd-lite@main"',
     "never a moving branch"),
    ('import sys\nif "google.colab" in sys.modules:\n    %pip install -q atkd-lite',
     "the package index"),
    (f'import sys\nif "google.colab" in sys.modules:\n    %pip install -U "atkd-lite @ {INSTALL_URL}"',
     "option -U is not allowed"),
    (INSTALL_CELL.replace("ak.__version__", "ak.profile().name"), "does not print ak.__version__"),
    (INSTALL_CELL.replace("ak.config.drive_cache()", "pass"), "Google Drive cache"),
    ('import sys\nif "google.colab" in sys.modules:\n    %pip install -q numpy',
     "not the book's package"),
    ('import sys\nif "google.colab" in sys.modules:\n'
     '    %pip install "atkd-lite @ git+https://github.com/someone/fork@dev"',
     f"expected {INSTALL_URL}"),
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
    cells.setdefault(INSTALL_CELL, []).append("INSTALL_CELL (the reference)")
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
        assert "profile" in proc.stdout, f"{where} did not get past the install"
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


# ------------------------------------------- 2b. the ranges against what Colab ships

#: Colab's preinstalled versions (googlecolab/backend-info, pip-freeze.gpu.txt of
#: 2026-08-19, Python 3.13); captum is not preinstalled. Update from that repository.
COLAB_PREINSTALLED = {
    "torch": "2.11.0", "torchvision": "0.26.0", "numpy": "2.1.3", "ipywidgets": "7.7.1",
    "matplotlib": "3.10.0", "scipy": "1.16.3", "tqdm": "4.67.3", "mlxtend": "0.23.4",
}
#: never replaced, now or when Colab moves on: no upper bound, no exclusion
PROTECTED = {"torch", "torchvision", "numpy", "ipywidgets"}


def _requirements() -> dict[str, Requirement]:
    reqs = [Requirement(r) for r in PROJECT["dependencies"]]
    return {canonicalize_name(r.name): r for r in reqs}


@pytest.mark.parametrize("name, colab", sorted(COLAB_PREINSTALLED.items()))
def test_requirement_accepts_what_colab_has(name, colab):
    req = _requirements().get(name)
    if req is None:
        pytest.skip(f"{name} is not a requirement")
    assert req.specifier.contains(Version(colab), prereleases=True), (
        f"{req}: Colab has {name} {colab}, so pip would replace it on Colab; lower the bound")
    if name in PROTECTED:
        caps = [str(s) for s in req.specifier if s.operator not in (">=", ">")]
        assert not caps, (f"{req}: {caps} would make pip replace a newer {name} that Colab "
                          "ships later; keep only a lower bound")


def test_requirement_ranges_keep_numpy():
    """captum is not on Colab, so pip installs it: a captum that pins numpy<2 would
    downgrade Colab's numpy (captum 0.8.0 requires numpy<2.0; 0.9.0 does not)."""
    captum = _requirements()["captum"]
    assert not captum.specifier.contains("0.8.0"), f"{captum}: allows captum 0.8 (numpy<2)"
    assert captum.specifier.contains("0.9.0")


def test_mlxtend_range_never_pulls_a_newer_numpy():
    """mlxtend 0.24.0 and 0.25.0 require numpy>=2.3.5 (their wheels' metadata), above
    Colab's numpy: where mlxtend is not preinstalled, pip must not pick them."""
    mlxtend = _requirements()["mlxtend"]
    assert not mlxtend.specifier.contains("0.24.0") and not mlxtend.specifier.contains("0.25.0")
    assert mlxtend.specifier.contains(COLAB_PREINSTALLED["mlxtend"])


def test_every_protected_package_is_a_requirement():
    assert PROTECTED <= set(_requirements()), "a protected package is no longer required?"


# ---------------------------------------------------------- 4. a coherent GPU profile


def test_profiles_train_students_with_the_tuned_recipe():
    """Every profile's students: the tuned epochs and batch (DistillConfig's defaults,
    chosen by benchmarks/tune_defaults.py), enough steps on the low-data set."""
    from atkd_lite.engine import DistillConfig
    from atkd_lite.experiments.profiles import PROFILES

    tuned = DistillConfig()
    for prof in PROFILES.values():
        assert prof.student_epochs == tuned.epochs, prof
        assert prof.batch_size == tuned.batch_size, prof
        images = 10 * prof.low_data_per_class
        steps = -(-images // prof.batch_size)  # by hand: ceil(1,000 / 128) = 8
        assert prof.student_steps_per_epoch == steps >= 8, (
            f"{prof.name}: batch {prof.batch_size} on {images} images gives {steps} steps "
            "an epoch")
        assert len(prof.seeds) >= 3 and len(set(prof.seeds)) == len(prof.seeds)


def test_gpu_profile_has_more_data_and_seeds_than_the_cpu_profile():
    from atkd_lite.experiments.profiles import PROFILES

    cpu, gpu = PROFILES["cpu"], PROFILES["gpu"]
    assert gpu.dataset == "mnist" and cpu.dataset == "mnist5k"
    assert set(cpu.seeds) < set(gpu.seeds)
    assert gpu.teacher_epochs >= cpu.teacher_epochs


# ------------------------------------------ 4b. chapters take the profile's settings

#: calls that train or build data, and the profile settings they must be given
PROFILE_KEYWORDS = {
    "pretrained_teacher": {"epochs"},
    "distill": {"epochs", "batch_size"},
    "train_model": {"epochs", "batch_size"},
    "run_experiment": {"epochs", "batch_size", "seeds", "per_class"},
}
#: keyword arguments that carry a profile setting wherever they appear
SETTING_KEYWORDS = {"epochs", "teacher_epochs", "batch_size", "seeds", "per_class",
                    "dataset"}
#: a line that deliberately keeps its own value says so, with a reason
OPT_OUT = re.compile(r"#\s*not from the profile:\s*\S")


def _profile_datasets() -> set[str]:
    from atkd_lite.experiments.profiles import PROFILES

    return {p.dataset for p in PROFILES.values()}


def _call_name(node: ast.Call) -> str:
    f = node.func
    return f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")


def profile_problems(nb) -> list[str]:
    """Where a notebook's code sets something the profile defines from anywhere else.

    Flags (each with its cell and line): a setting keyword (``epochs=``, ``batch_size=``,
    ``seeds=``, ``per_class=``, ``dataset=``) whose value does not come from ``P.*``
    (directly or through a name assigned from it); a training call that leaves a
    profile setting to the function's default; a profile dataset's name typed as a
    string (``"mnist5k"``, ``"mnist"``); ``.per_class(<number>)`` on a training set;
    and ``for epoch in range(<number>)``. A line with ``# not from the profile: <why>``
    (on any line of the flagged call, or in the comment just above it) is accepted.
    """
    from atkd_lite.experiments.profiles import Profile

    fields = {f for f in Profile.__dataclass_fields__ if f not in ("name", "notes")}
    datasets = _profile_datasets()
    cells = [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    trees = [(i, c, ast.parse(_python_source(c.source))) for i, c in cells]

    def from_profile(node, tainted) -> bool:
        for sub in ast.walk(node):
            if (isinstance(sub, ast.Attribute) and isinstance(sub.value, ast.Name)
                    and sub.value.id == "P" and sub.attr in fields):
                return True
            if isinstance(sub, ast.Name) and sub.id in tainted:
                return True
        return False

    tainted: set[str] = set()  # names assigned from the profile, anywhere in the notebook
    changed = True
    while changed:
        changed = False
        for _, _, tree in trees:
            for node in ast.walk(tree):
                if isinstance(node, ast.Assign) and from_profile(node.value, tainted):
                    for target in node.targets:
                        for name in ast.walk(target):
                            if isinstance(name, ast.Name) and name.id not in tainted:
                                tainted.add(name.id)
                                changed = True

    problems = []
    for index, cell, tree in trees:
        lines = _python_source(cell.source).splitlines()

        def flag(node, message, lines=lines, index=index):
            line = lines[node.lineno - 1] if node.lineno <= len(lines) else ""
            # the opt-out may stand on any line of a call written over several lines, or
            # in the comment lines just above it
            first = node.lineno - 1
            while first > 0 and lines[first - 1].lstrip().startswith("#"):
                first -= 1
            span = lines[first:getattr(node, "end_lineno", None) or node.lineno]
            if not any(OPT_OUT.search(text) for text in span):
                problems.append(f"cell {index}, line {node.lineno}: {message}: "
                                f"{line.strip()[:90]}")

        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                name = _call_name(node)
                given = {k.arg for k in node.keywords if k.arg}
                for kw in node.keywords:
                    if kw.arg in SETTING_KEYWORDS and not from_profile(kw.value, tainted):
                        flag(node, f"{kw.arg}={ast.unparse(kw.value)} is not from the "
                                   "profile (P.*)")
                missing = PROFILE_KEYWORDS.get(name, set()) - given
                if missing:
                    flag(node, f"{name}() without {', '.join(sorted(missing))}= takes the "
                               "function's default, not the profile's")
                if name == "pretrained_teacher" and not node.args and "dataset" not in given:
                    flag(node, "pretrained_teacher() without a dataset takes the default, "
                               "not P.dataset")
                if (name == "per_class" and isinstance(node.func, ast.Attribute)
                        and node.args and not from_profile(node.args[0], tainted)
                        and "train" in ast.unparse(node.func.value)):
                    flag(node, f"{ast.unparse(node.func.value)}.per_class"
                               f"({ast.unparse(node.args[0])}) on training data: use "
                               "P.low_data_per_class")
            elif (isinstance(node, ast.Constant) and isinstance(node.value, str)
                  and node.value in datasets):
                flag(node, f"the dataset {node.value!r} typed in: use P.dataset")
            elif (isinstance(node, ast.For) and isinstance(node.iter, ast.Call)
                  and _call_name(node.iter) == "range" and "epoch" in ast.unparse(node.target)
                  and not from_profile(node.iter, tainted)):
                flag(node, "an epoch loop whose length is not from the profile")
    return problems


#: Chapters that still read a profile setting from elsewhere. Strict xfail: remove a
#: chapter once it passes. Empty since issue 16.
PENDING_PROFILE: set[str] = set()


@pytest.mark.parametrize("path", _chapters(PENDING_PROFILE, "reads profile settings from "
                                           "elsewhere (issue 16, see PENDING_PROFILE)"))
def test_chapter_takes_every_profile_setting_from_the_profile(path):
    problems = profile_problems(nbformat.read(path, as_version=4))
    assert not problems, (f"{path.name} sets what the profile defines (use P.*, or say "
                          "'# not from the profile: <why>' on the line):\n  "
                          + "\n  ".join(problems))


@pytest.mark.parametrize("code, expected", [
    ("ak.distill(t, s, train, epochs=3, batch_size=P.batch_size)", "epochs=3 is not from"),
    ("ak.distill(t, s, train, epochs=P.student_epochs)", "without batch_size="),
    ('train = ak.load_dataset("mnist5k", "train")', "'mnist5k' typed in"),
    ("teacher, meta = ak.pretrained_teacher()", "without a dataset"),
    ("train = ak.load_dataset(P.dataset, 'train').per_class(100)", "on training data"),
    ("for epoch in range(4):\n    pass", "epoch loop"),
    ("EPOCHS = 2\nak.train_model(m, d, epochs=EPOCHS, batch_size=P.batch_size)",
     "epochs=EPOCHS is not from"),
])
def test_profile_check_catches_settings_from_elsewhere(code, expected):
    nb = new_notebook(cells=[new_code_cell("P = ak.profile()"), new_code_cell(code)])
    problems = profile_problems(nb)
    assert any(expected in p for p in problems), problems


def test_profile_check_accepts_settings_from_the_profile():
    code = ("E = P.student_epochs\n"
            "train = ak.load_dataset(P.dataset, 'train').per_class(P.low_data_per_class)\n"
            "probe = test.per_class(10)\n"
            "ak.distill(t, s, train, epochs=E, batch_size=P.batch_size)\n"
            "teacher, meta = ak.pretrained_teacher(P.dataset, epochs=P.teacher_epochs)\n"
            "for epoch in range(P.student_epochs):\n    pass\n"
            "ak.distill(t, s, train, epochs=2, batch_size=P.batch_size)  "
            "# not from the profile: a timing run, two epochs suffice\n"
            "ak.distill(t, s, train,\n"
            "           epochs=2,  # not from the profile: the opt-out inside the call\n"
            "           batch_size=P.batch_size)\n"
            "# not from the profile: a comment above the call\n"
            "ak.distill(t, s, train, epochs=3, batch_size=P.batch_size)\n")
    nb = new_notebook(cells=[new_code_cell("P = ak.profile()"), new_code_cell(code)])
    assert profile_problems(nb) == []


# ----------------------------------------------- 5. float16 with a gradient scaler (T4)


def test_autocast_dtype_is_float16_without_native_bfloat16(monkeypatch):
    """A T4 (compute capability 7.5) gets float16 and a scaler; an A100/H100 bfloat16.

    ``torch.cuda.is_bf16_supported()`` also says yes where bfloat16 is only emulated
    (a T4), so the choice goes by the compute capability."""
    from atkd_lite.device import AMP_DTYPE_ENV, autocast_dtype
    from atkd_lite.engine import needs_grad_scaler

    cuda = torch.device("cuda", 0)
    monkeypatch.delenv(AMP_DTYPE_ENV, raising=False)
    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # emulated
    for capability, dtype in [((7, 5), torch.float16), ((8, 0), torch.bfloat16),
                              ((9, 0), torch.bfloat16), ((6, 1), torch.float16)]:
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda i=None, c=capability: c)
        assert autocast_dtype(cuda) == dtype, capability
        assert needs_grad_scaler(cuda) is (dtype == torch.float16)
        assert needs_grad_scaler(cuda, amp=False) is False
    assert autocast_dtype(torch.device("cpu")) is None
    assert needs_grad_scaler(torch.device("cpu")) is False


def test_float16_can_be_forced_and_a_bad_value_is_a_clear_error(monkeypatch):
    from atkd_lite.device import AMP_DTYPE_ENV, autocast_dtype
    from atkd_lite.engine import needs_grad_scaler

    cuda = torch.device("cuda", 0)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda i=None: (9, 0))
    monkeypatch.setenv(AMP_DTYPE_ENV, "float16")  # the T4's path on an H100
    assert autocast_dtype(cuda) == torch.float16 and needs_grad_scaler(cuda)
    monkeypatch.setenv(AMP_DTYPE_ENV, "fp8")
    with pytest.raises(ValueError, match="float16"):
        autocast_dtype(cuda)


def _tiny_regression(seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Linear(4, 1)
    x = torch.randn(16, 4)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])
    return model, [(x[i:i + 8], y[i:i + 8], torch.arange(i, i + 8)) for i in (0, 8)]


def _fit(model, batches, grad_scaler, step=None, epochs=3):
    from atkd_lite.engine import fit

    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)

    def mse(x, y, idx):
        out = model(x)
        return out, {"loss": torch.nn.functional.mse_loss(out.float(), y)}

    fit(step or mse, model, batches, epochs, opt, sched, device=torch.device("cpu"),
        progress=False, grad_scaler=grad_scaler)
    return opt


def test_forced_grad_scaler_steps_exactly_like_plain_training_on_the_cpu():
    """The scaler multiplies the loss by 2**16 and divides the gradients back before the
    step: the weights must come out as without it (SGD, float32)."""
    plain, batches = _tiny_regression()
    scaled, _ = _tiny_regression()
    _fit(plain, batches, grad_scaler=False)
    opt = _fit(scaled, batches, grad_scaler=True)
    for a, b in zip(plain.parameters(), scaled.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert opt.state is not None


def _overflowing_first_step(model):
    """A step whose first call has an infinite gradient (a float16 overflow)."""
    calls = []

    def step(x, y, idx):
        calls.append(1)
        out = model(x)
        loss = torch.nn.functional.mse_loss(out, y)
        if len(calls) == 1:
            loss = loss + model.weight.sum() * torch.tensor(float("inf"))
        return out, {"loss": loss}

    return step


def test_forced_grad_scaler_skips_a_step_whose_gradients_overflow(monkeypatch):
    """What makes float16 training safe: a step with inf/NaN gradients is skipped (the
    weights stay as they were) and the scale is halved, instead of ruining the weights."""
    scales = []
    update = torch.amp.GradScaler.update

    def spy(self, new_scale=None):
        update(self, new_scale)
        scales.append(self.get_scale())

    monkeypatch.setattr(torch.amp.GradScaler, "update", spy)
    model, batches = _tiny_regression()
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(FloatingPointError):  # the epoch's mean loss is inf: reported
        _fit(model, batches[:1], grad_scaler=True, step=_overflowing_first_step(model),
             epochs=1)
    for a, b in zip(before, model.parameters()):
        torch.testing.assert_close(a, b)  # the overflowing step was skipped
    assert scales == [65536.0 / 2]  # and the scale halved (GradScaler's backoff factor)

    # without the scaler, the same step writes inf/NaN into the weights
    model, batches = _tiny_regression()
    with pytest.raises(FloatingPointError):
        _fit(model, batches[:1], grad_scaler=False, step=_overflowing_first_step(model),
             epochs=1)
    assert not all(torch.isfinite(p).all() for p in model.parameters())


def test_float16_autocast_with_the_scaler_trains_on_the_cpu():
    """The T4's path end to end on the CPU: float16 autocast + GradScaler lowers the loss."""
    model, batches = _tiny_regression()
    losses = []

    def fp16_step(x, y, idx):
        with torch.autocast("cpu", dtype=torch.float16):
            out = model(x)
        assert out.dtype == torch.float16
        loss = torch.nn.functional.mse_loss(out.float(), y)
        losses.append(loss.item())
        return out, {"loss": loss}

    _fit(model, batches, grad_scaler=True, step=fp16_step, epochs=20)
    assert all(map(math.isfinite, losses)) and losses[-1] < 0.2 * losses[0]


# ------------------------------------------------------- 6. the Google Drive cache


def test_drive_cache_mounts_drive_and_points_the_cache_there(tmp_path, monkeypatch):
    import atkd_lite as ak
    from atkd_lite.book import colab as config

    monkeypatch.delenv(config.CACHE_ENV, raising=False)
    mounted = []

    def fake_mount(point):  # what google.colab.drive.mount leaves behind
        mounted.append(point)
        (Path(point) / "MyDrive").mkdir(parents=True)

    path = config.drive_cache(mount_point=tmp_path / "drive", mount=fake_mount)
    assert mounted == [str(tmp_path / "drive")]
    assert path == tmp_path / "drive" / "MyDrive" / config.DRIVE_FOLDER and path.is_dir()
    assert os.environ[config.CACHE_ENV] == str(path)
    assert ak.cache_dir() == path  # what pretrained_teacher and TeacherCache use
    # a second call (a second chapter) finds Drive mounted and does not mount again
    assert config.drive_cache(mount_point=tmp_path / "drive", mount=fake_mount) == path
    assert len(mounted) == 1


def test_drive_cache_outside_colab_says_what_to_do(tmp_path, monkeypatch):
    from atkd_lite.book import colab as config

    monkeypatch.setitem(sys.modules, "google.colab", None)  # not Colab: the import fails
    with pytest.raises(RuntimeError, match="ATKD_LITE_CACHE"):
        config.drive_cache(mount_point=tmp_path / "nodrive")
    with pytest.raises(RuntimeError, match="mount it by hand"):
        config.drive_cache(mount_point=tmp_path / "nodrive", mount=lambda point: None)


def _git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True,
                          check=False)


def test_the_release_the_chapters_install_exists_in_the_repository():
    """The install cell names ``v<version>``: that tag must exist in the repository and
    hold this version (RELEASING.md, step 4), or Colab's pip finds nothing to install.

    A clone that carries no tags at all (``git clone --no-tags``, some CI checkouts)
    cannot tell, and says so; a clone with tags but not this one fails.
    """
    if shutil.which("git") is None or _git("rev-parse", "--git-dir").returncode != 0:
        pytest.skip("not a git checkout: no tags to check")
    tags = _git("tag", "--list").stdout.split()
    if not tags:
        pytest.skip("this clone carries no tags (cloned without them); the release tag "
                    "cannot be checked here")
    assert RELEASE_REF in tags, (f"the chapters install {RELEASE_REF}, which is not a tag "
                                 f"of this repository (tags: {tags}); tag the release "
                                 "commit as RELEASING.md says")
    at_tag = _git("show", f"{RELEASE_REF}:pyproject.toml")
    assert at_tag.returncode == 0, at_tag.stderr
    assert tomllib.loads(at_tag.stdout)["project"]["version"] == VERSION
    for nb in BOOK_NOTEBOOKS:
        assert INSTALL_URL in nb.read_text(), f"{nb.name} installs another reference"


def test_the_first_names_of_the_cache_profiles_and_drive_still_work():
    """``atkd_lite.config`` (the chapters call ``ak.config.drive_cache()``) re-exports the
    very objects of their new homes, and nothing in the package imports it (tests/test_architecture.py: it is on top)."""
    import atkd_lite as ak
    from atkd_lite import config, files
    from atkd_lite.book import colab
    from atkd_lite.experiments import profiles

    homes = {"cache_dir": files, "CACHE_ENV": files, "drive_cache": colab,
             "DRIVE_FOLDER": colab, "DRIVE_MOUNT": colab, "PROFILES": profiles,
             "Profile": profiles, "profile": profiles, "PROFILE_ENV": profiles}
    assert sorted(config.__all__) == sorted(homes)
    for name, home in homes.items():
        assert getattr(config, name) is getattr(home, name), name
    assert ak.profile is profiles.profile and ak.cache_dir is files.cache_dir
