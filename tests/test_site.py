"""The built book, as a reader meets it: built with zero warnings, then read in Chromium.

The book is built once for this module (``jupyter-book build -W -n --keep-going`` into a
temporary folder, or into ``$ATKD_SITE_BUILD_DIR`` to keep it; the notebooks' committed
outputs are used, nothing is executed). That build is the "zero warnings" test. The HTML
is then served on localhost and every page of ``_toc.yml`` is opened in headless
Chromium (Debian's ``/usr/bin/chromium``, driven by Playwright), which checks what a
reader would notice:

- the page loads (HTTP 200) with its title as the heading, and nothing it loads from the
  site fails (stylesheets, scripts, images);
- every image is drawn (``naturalWidth > 0``), and a chapter page draws as many figures in
  its cell outputs as its notebook holds image outputs (at least one), and never the text
  ``<Figure size …>`` in their place; no code cell scrolls sideways;
- every link into the book points at a page that exists, and at an anchor on it;
- every formula is typeset by MathJax without a TeX error;
- the Colab and Binder entries of the launch (rocket) menu open the chapter's student
  copy (``book/student/``, no solutions) at the release tag ``v<version>``, the
  ``.ipynb`` download is that student copy, and a second download is the instructor
  version with the solutions;
- no live widget is left on a page (no dead sliders, no widget scripts), and every
  interactive explorer of the chapter shows a static figure;
- every exercise is shown and every solution is folded and opens on a click.

The book's diagrams (``book/figures/*.svg``) are opened on their own: every text stays
inside the drawing and inside the box it labels.

A screenshot of each page's first screen goes to ``_build/html/_screenshots/`` of the
build. The browser may not touch the network: every request outside localhost is
aborted. MathJax, which the book loads from a CDN, is answered from a local copy of the
same version (MathJax 3 from the ``django-static-mathjax`` package, or the folder in
``$ATKD_MATHJAX_DIR`` that holds ``tex-mml-chtml.js``); without one, only the math markup
is checked.

Without ``/usr/bin/chromium`` (or Playwright) the browser tests are skipped, unless
``ATKD_REQUIRE_BROWSER=1`` (set in CI), where they fail instead.
"""

from __future__ import annotations

import contextlib
import functools
import html as html_lib
import http.server
import importlib
import importlib.util
import inspect
import os
import pkgutil
import re
import subprocess
import sys
import threading
import types
import warnings
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-quic", "--no-first-run", "--disable-component-update",
                 "--disable-sync"]
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
_REPO = urlsplit(CONFIG["repository"]["url"]).path.strip("/")  # "atkd-lite/atkd-lite"
VERSION = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(),
                    flags=re.MULTILINE).group(1)
RELEASE_REF = f"v{VERSION}"
COLAB = f"{CONFIG['launch_buttons']['colab_url']}/github/{_REPO}/blob/{RELEASE_REF}/"
BINDER = f"{CONFIG['launch_buttons']['binderhub_url']}/v2/gh/{_REPO}/{RELEASE_REF}?urlpath=tree/"
STUDENT_DIR = "book/student"
# a cell that shows an explorer of atkd_lite.book.widgets
EXPLORER = re.compile(r"\bwidgets\.(?:explore|\w+_explorer)\(")
MATHJAX_CDN = re.compile(r"^https://cdn\.jsdelivr\.net/npm/mathjax@3[^/]*/es5/([^?#]+)")
REQUIRE_BROWSER = os.environ.get("ATKD_REQUIRE_BROWSER") == "1"
SOURCE_SUFFIXES = (".ipynb", ".md", ".rst")


# ------------------------------------------------------------------- table of contents


def toc_files(toc_path: Path = ROOT / "_toc.yml") -> list[str]:
    """Every document of the table of contents, in reading order (``book/intro``, ...)."""
    toc = yaml.safe_load(toc_path.read_text())
    files: list[str] = []

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                files.append(re.sub(r"\.(ipynb|md|rst)$", "", str(node["file"])))
            if "glob" in node:
                for path in sorted(ROOT.glob(str(node["glob"]))):
                    if path.suffix in SOURCE_SUFFIXES:
                        files.append(path.relative_to(ROOT).with_suffix("").as_posix())
            for key in ("parts", "chapters", "sections"):
                walk(node.get(key))
        elif isinstance(node, list):
            for item in node:
                walk(item)

    files.append(re.sub(r"\.(ipynb|md|rst)$", "", str(toc["root"])))
    walk(toc)
    return list(dict.fromkeys(files))


def source_path(doc: str) -> Path:
    for suffix in SOURCE_SUFFIXES:
        if (ROOT / f"{doc}{suffix}").exists():
            return ROOT / f"{doc}{suffix}"
    raise FileNotFoundError(f"_toc.yml lists {doc!r} but no {doc}.ipynb/.md/.rst exists")


def _prose(path: Path) -> str:
    """The markdown text of a document (notebook: its markdown cells), code removed."""
    if path.suffix == ".ipynb":
        nb = nbformat.read(path, as_version=4)
        text = "\n\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    else:
        text = path.read_text()
        text = re.sub(r"\A---\n.*?\n---\n", "", text, flags=re.DOTALL)  # front matter
    text = re.sub(r"^(`{3,})(?!\{).*?^\1", "", text, flags=re.DOTALL | re.MULTILINE)
    return re.sub(r"`[^`\n]+`", "", text)


def expected_title(path: Path) -> str | None:
    match = re.search(r"^# (.+)$", _prose(path), flags=re.MULTILINE)
    if not match:
        return None
    return _normalise(re.sub(r"[*_`]|\{[a-z]+\}", "", match.group(1)))


def has_math(path: Path) -> bool:
    text = _prose(path)
    return bool(re.search(r"\$\$|(?<![\\$])\$[^\s$][^$\n]*?(?<![\s\\])\$|\{math\}|\\begin\{",
                          text))


def count_directives(path: Path, *names: str) -> int:
    pattern = r"^[ \t]*(?:`{3,}|:{3,})\{(?:" + "|".join(map(re.escape, names)) + r")\}"
    return len(re.findall(pattern, _prose(path), flags=re.MULTILINE))


def _normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().rstrip("#¶").strip()


# ---------------------------------------------------------------------- the build


def _build(out: Path) -> types.SimpleNamespace:
    cmd = [sys.executable, "-c",
           "import sys; from jupyter_book.cli.main import main; sys.argv[0] = 'jupyter-book';"
           " sys.exit(main())",
           "build", str(ROOT), "--path-output", str(out), "-W", "-n", "--keep-going"]
    env = dict(os.environ)
    # document the package of this checkout, whatever else is installed
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    log = re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout + proc.stderr)
    return types.SimpleNamespace(returncode=proc.returncode, log=log,
                                 html=out / "_build" / "html")


@pytest.fixture(scope="module")
def built_book(tmp_path_factory):
    keep = os.environ.get("ATKD_SITE_BUILD_DIR")
    out = Path(keep) if keep else tmp_path_factory.mktemp("book")
    return _build(out)


def test_book_builds_with_zero_warnings(built_book):
    problems = list(dict.fromkeys(line for line in built_book.log.splitlines()
                                  if re.search(r"\b(WARNING|ERROR|CRITICAL)\b", line)))
    if built_book.returncode != 0 or problems:
        tail = [line for line in built_book.log.splitlines() if line.strip()][-8:]
        pytest.fail(f"jupyter-book build -W -n --keep-going exited with "
                    f"{built_book.returncode}; {len(problems)} warnings/errors:\n"
                    + "\n".join(problems[:60]) + "\n--- end of the log ---\n" + "\n".join(tail),
                    pytrace=False)


def test_chapters_are_listed_in_the_order_of_their_numbers():
    numbers = [int(m.group(1)) for doc in toc_files()
               if (m := re.match(r"book/(\d+)_", doc))]
    assert numbers == sorted(numbers), f"_toc.yml lists the chapters as {numbers}"


def test_the_intro_names_every_chapter():
    intro = (ROOT / "book" / "intro.md").read_text()
    missing = [doc for doc in toc_files() if re.match(r"book/\d+_", doc)
               and f"**{expected_title(source_path(doc))}**" not in intro]
    assert not missing, f"book/intro.md's 'What you will build' does not name {missing}"


def test_every_toc_page_is_built(built_book):
    missing = [doc for doc in toc_files() if not (built_book.html / f"{doc}.html").exists()]
    assert not missing, f"pages of _toc.yml missing from the build: {missing}"


# -------------------------------------------------------------------- the API page


def _public_objects():
    """(module name, object name, object) for everything the package documents as public."""
    import atkd_lite

    names = [m.name for m in pkgutil.walk_packages(atkd_lite.__path__, "atkd_lite.")
             if not m.name.split(".")[-1].startswith("_")]
    for module_name in names:
        module = importlib.import_module(module_name)
        public = getattr(module, "__all__", None)
        if public is None:
            public = [n for n, o in vars(module).items() if not n.startswith("_")
                      and getattr(o, "__module__", None) == module_name]
        for name in public:
            obj = getattr(module, name)
            if inspect.isclass(obj) or inspect.isfunction(obj):
                yield module_name, name, obj


def test_api_page_documents_every_public_function_and_class(built_book):
    if "book/api" not in toc_files():
        pytest.skip("book/api is not in _toc.yml")
    page = built_book.html / "book" / "api.html"
    assert page.exists(), "the API page was not built"
    ids = set(re.findall(r'\bid="([^"]+)"', page.read_text()))
    import atkd_lite

    modules = {m.name for m in pkgutil.walk_packages(atkd_lite.__path__, "atkd_lite.")
               if not m.name.split(".")[-1].startswith("_")}
    missing = sorted(f"module {m}" for m in modules if f"module-{m}" not in ids)
    for _, _name, obj in _public_objects():
        home = f"{obj.__module__}.{obj.__qualname__}"
        if home not in ids:
            missing.append(home)
    for name in atkd_lite.__all__:
        obj = getattr(atkd_lite, name)
        if (inspect.isclass(obj) or inspect.isfunction(obj)) and \
                f"{obj.__module__}.{obj.__qualname__}" not in ids:
            missing.append(f"atkd_lite.{name}")
    assert not missing, ("not on the API page (add the module to book/api.md, or a "
                         f"docstring to the object): {sorted(set(missing))}")


# ------------------------------------------------------------------ serving, browser


@contextlib.contextmanager
def serve(directory: Path):
    """Serve a folder on an ephemeral localhost port; yields the base URL."""

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def mathjax_dir() -> Path | None:
    """A local MathJax 3 ``es5`` folder to answer the CDN's requests with, if any."""
    candidates = []
    if os.environ.get("ATKD_MATHJAX_DIR"):
        candidates.append(Path(os.environ["ATKD_MATHJAX_DIR"]))
    spec = importlib.util.find_spec("mathjax")  # the django-static-mathjax package
    if spec and spec.submodule_search_locations:
        candidates += [Path(p) / "static" / "mathjax" / "es5"
                       for p in spec.submodule_search_locations]
    return next((c for c in candidates if (c / "tex-mml-chtml.js").is_file()), None)


def _unavailable(reason: str):
    if REQUIRE_BROWSER:
        pytest.fail(f"{reason} (ATKD_REQUIRE_BROWSER=1: the browser test must run)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} is missing: apt-get install chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed: pip install playwright")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def site(built_book, browser):
    if not (built_book.html / "index.html").exists():
        pytest.fail("the book was not built; see test_book_builds_with_zero_warnings")
    with serve(built_book.html) as base:
        yield types.SimpleNamespace(base=base, html=built_book.html, browser=browser,
                                    mathjax=mathjax_dir())


class PageVisit:
    """One page in a fresh browser tab, offline but for localhost."""

    def __init__(self, browser, base: str, mathjax: Path | None):
        self.base, self.mathjax = base, mathjax
        self.context = browser.new_context(viewport={"width": 1280, "height": 800})
        self.page = self.context.new_page()
        self.blocked: list[str] = []
        self.failed: list[str] = []
        self.page.route("**/*", self._route)
        self.page.on("response", self._response)
        self.page.on("requestfailed", self._request_failed)

    def _route(self, route):
        url = route.request.url
        if url.startswith(self.base):
            return route.continue_()
        match = MATHJAX_CDN.match(url)
        if match and self.mathjax and (self.mathjax / match.group(1)).is_file():
            return route.fulfill(path=str(self.mathjax / match.group(1)))
        self.blocked.append(url)
        return route.abort()

    def _response(self, response):
        if response.url.startswith(self.base) and response.status >= 400:
            self.failed.append(f"{response.status} {response.url}")

    def _request_failed(self, request):
        if request.url.startswith(self.base):
            self.failed.append(f"failed {request.url}")

    def close(self):
        self.context.close()


_IMAGES_JS = """async () => {
  const imgs = Array.from(document.images);
  imgs.forEach(img => { if (img.loading === 'lazy') img.loading = 'eager'; });
  await Promise.all(imgs.map(img => img.complete ? null : new Promise(done => {
    img.addEventListener('load', done, {once: true});
    img.addEventListener('error', done, {once: true});
    setTimeout(done, 10000);
  })));
  return imgs.map(img => [img.currentSrc || img.src, img.naturalWidth]);
}"""


# Each typeset formula with a TeX error (MathJax draws an merror) or an undefined macro
# (drawn in red by MathJax's noundefined extension), with its TeX source.
_TEX_PROBLEMS_JS = """() => {
  const found = {error: [], undefined: []};
  for (const item of MathJax.startup.document.math) {
    const root = item.typesetRoot;
    if (!root || !root.querySelector) continue;
    const error = root.querySelector('mjx-merror');
    if (error) found.error.push(`${item.math} (${error.textContent})`);
    if (root.querySelector('mjx-mtext[style*="color: red"]')) found.undefined.push(item.math);
  }
  return found;
}"""


def _ids_of(file: Path, cache: dict) -> set[str]:
    if file not in cache:
        text = file.read_text(errors="replace")
        cache[file] = {html_lib.unescape(i) for i in
                       re.findall(r'\b(?:id|name)="([^"]*)"', text)}
    return cache[file]


def check_links(hrefs: list[str], base: str, root: Path, ids_cache: dict) -> list[str]:
    """The internal links among hrefs (absolute URLs) whose target is not in the build."""
    broken = []
    for href in sorted(set(hrefs)):
        if not href.startswith(base):
            continue
        parts = urlsplit(href)
        rel = unquote(parts.path)[len(urlsplit(base).path):]
        target = root / rel
        if rel == "" or rel.endswith("/") or target.is_dir():
            target = target / "index.html"
        if not target.is_file():
            broken.append(f"{href} (no file {target.relative_to(root)})")
        elif parts.fragment and target.suffix == ".html" and \
                unquote(parts.fragment) not in _ids_of(target, ids_cache):
            broken.append(f"{href} (no anchor #{unquote(parts.fragment)} in "
                          f"{target.relative_to(root)})")
    return broken


def check_page(visit: PageVisit, url: str, root: Path, source: Path | None,
               screenshot: Path | None = None, ids_cache: dict | None = None) -> list[str]:
    """Open url and return what a reader would find wrong with it ([] if nothing)."""
    page, problems = visit.page, []
    response = page.goto(url, wait_until="load")
    if response is None or response.status != 200:
        return [f"HTTP {response.status if response else 'no response'} for {url}"]

    # title
    headings = [_normalise(t) for t in page.locator("main h1, article h1").all_inner_texts()]
    want = expected_title(source) if source else None
    if not headings or not headings[0]:
        problems.append("no <h1> title")
    elif want and headings[0] != want:
        problems.append(f"the <h1> is {headings[0]!r}, the source's title is {want!r}")
    elif headings[0] not in _normalise(page.title()):
        problems.append(f"<title> {page.title()!r} does not contain {headings[0]!r}")

    # math: typeset by MathJax (served locally), or at least MathJax-ready markup
    n_math = page.locator(".math").count()
    if source and has_math(source) and n_math == 0:
        problems.append("the source has math but the page has no .math element")
    if n_math:
        if visit.mathjax:
            try:
                page.wait_for_function("window.MathJax && MathJax.startup && "
                                       "MathJax.startup.promise", timeout=15000)
                page.evaluate("MathJax.startup.promise")
                raw = page.evaluate(
                    "[...document.querySelectorAll('.math')].filter("
                    "e => !e.querySelector('mjx-container')).map(e => e.textContent)")
                errors = page.evaluate(_TEX_PROBLEMS_JS)
                if raw:
                    problems.append(f"MathJax typeset {n_math - len(raw)} of {n_math} "
                                    f"formulas; not typeset: {raw[:5]}")
                if errors["error"]:
                    problems.append(f"TeX errors: {errors['error'][:5]}")
                if errors["undefined"]:
                    problems.append(f"undefined TeX macros in: {errors['undefined'][:5]}")
            except Exception as err:  # the script did not load or never finished
                mj = [u for u in visit.blocked if "mathjax" in u.lower()]
                problems.append(f"MathJax did not run ({type(err).__name__}); blocked: {mj}")
        else:
            raw = page.locator(".math").all_text_contents()
            if not all(re.search(r"\\\(|\\\[|\$", t) for t in raw):
                problems.append("a .math element has no TeX delimiters for MathJax")
            if not page.locator("script[src*='mathjax' i]").count():
                problems.append("the page loads no MathJax")

    # images (all drawn, after MathJax so the screenshot shows the typeset page)
    for src, width in page.evaluate(_IMAGES_JS):
        if not width:
            why = "" if src.startswith(visit.base) else " (outside the book: no network)"
            problems.append(f"image not drawn: {src}{why}")
    if source and source.suffix == ".ipynb":
        problems += _check_figures(page, source, screenshot)
        problems += _check_code_fits(page)
    if screenshot:
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(screenshot))

    # internal links
    hrefs = page.eval_on_selector_all("a[href]", "els => els.map(a => a.href)")
    problems += [f"broken link: {b}" for b in
                 check_links(hrefs, visit.base, root, {} if ids_cache is None else ids_cache)]

    # launch and download buttons, static explorers (notebook pages)
    if source and source.suffix == ".ipynb":
        problems += _check_launch(page, source, visit)
        problems += _check_static_widgets(page, source)

    # exercises shown, solutions folded and opening on a click; answers only in folds
    if source:
        problems += _check_toggles(page, source)
        problems += _check_answers_folded(page)

    problems += [f"could not load {f}" for f in visit.failed]
    return problems


IMAGE_MIMES = ("image/png", "image/svg+xml", "image/jpeg")
#: cells whose outputs the book does not show
_HIDDEN_OUTPUT_TAGS = {"remove-cell", "remove-output"}


def notebook_figures(source: Path) -> int:
    """How many of the notebook's outputs the page should show as pictures."""
    nb = nbformat.read(source, as_version=4)
    return sum(1 for cell in nb.cells if cell.cell_type == "code"
               and not _HIDDEN_OUTPUT_TAGS & set(cell.metadata.get("tags", []))
               for out in cell.get("outputs", [])
               if any(m in out.get("data", {}) for m in IMAGE_MIMES))


#: a figure shown at less than this share of its size has text too small to read
MIN_FIGURE_SCALE = 0.5


def _check_figures(page, source: Path, screenshot: Path | None = None) -> list[str]:
    """The page draws every figure its notebook holds (at least one), and no figure text.

    Each figure is shown at no less than ``MIN_FIGURE_SCALE`` of its size in the page's
    column; with ``screenshot``, each is saved as it is seen, beside the page's
    screenshot (``<page>-figures/figure-NN.png``).
    """
    problems = []
    expected = notebook_figures(source)
    images = page.locator(".cell_output img")
    sizes = images.evaluate_all("imgs => imgs.map(i => [i.naturalWidth, i.clientWidth])")
    drawn = sum(1 for natural, _ in sizes if natural > 0)
    for k, (natural, shown) in enumerate(sizes, start=1):
        if natural and shown and shown / natural < MIN_FIGURE_SCALE:  # 0: in a fold
            problems.append(f"figure {k} is shown at {shown / natural:.0%} of its size "
                            f"({shown} of {natural} px): too small to read in the column")
    if screenshot:
        folder = screenshot.with_name(screenshot.stem + "-figures")
        folder.mkdir(parents=True, exist_ok=True)
        for k in range(images.count()):
            if images.nth(k).is_visible():  # not inside a folded solution
                images.nth(k).screenshot(path=str(folder / f"figure-{k + 1:02d}.png"),
                                         timeout=10000)
    if drawn != expected:
        problems.append(f"{drawn} figures drawn in the cell outputs, {expected} image "
                        "outputs in the notebook")
    if expected == 0:
        problems.append("a chapter without a single figure (the notebook has no image "
                        "outputs)")
    stranded = [t for t in page.locator(".cell_output").all_inner_texts()
                if re.search(r"<Figure size [\d.]+x[\d.]+ with \d+ Axes>", t)]
    if stranded:
        problems.append(f"{len(stranded)} outputs show the text '<Figure size …>' "
                        "instead of the figure")
    return problems


def _check_code_fits(page) -> list[str]:
    """No code cell is wider than the column (the reader would scroll sideways)."""
    wide = page.eval_on_selector_all(
        ".cell_input pre",
        "pres => pres.filter(p => p.scrollWidth > p.clientWidth + 1).map(p => "
        "p.textContent.split('\\n').reduce((a, l) => l.length > a.length ? l : a, ''))")
    return [f"a code cell scrolls sideways at {page.viewport_size['width']} px: "
            f"{line.strip()[:70]!r}" for line in wide]


def _open_menu(page, group: str):
    toggle = page.locator(f".dropdown-{group} button.dropdown-toggle")
    if toggle.count() != 1:
        return f"no {group} menu"
    toggle.click()
    return None


def _menu_href(page, group: str, selector: str, name: str) -> tuple[str | None, str | None]:
    """(href, problem) of the one entry matching selector in a header menu."""
    link = page.locator(f".dropdown-{group} {selector}")
    if link.count() != 1:
        return None, f"the {group} menu has {link.count()} {name} entries, expected 1"
    problem = _open_menu(page, group)
    if problem:
        return None, problem
    try:
        link.wait_for(state="visible", timeout=5000)
    except Exception:
        return None, f"the {name} entry did not appear when its menu was clicked"
    page.keyboard.press("Escape")
    return link.get_attribute("href"), None


def _check_launch(page, source: Path, visit=None) -> list[str]:
    """Colab, Binder and the download open the student copy; the instructor's is there."""
    problems = []
    name = source.name
    student = f"{STUDENT_DIR}/{name}"
    for entry, selector, expected in [
            ("Colab", "a[href*='colab.research.google.com']", COLAB + student),
            ("Binder", "a[href*='mybinder.org']", BINDER + student)]:
        href, problem = _menu_href(page, "launch-buttons", selector, entry)
        if problem:
            problems.append(problem)
        elif href != expected:
            problems.append(f"{entry} link is {href}, expected the student copy {expected}")
    if visit is None:
        return problems
    try:
        root = source.resolve().relative_to(ROOT)
    except ValueError:  # a test page outside the repository
        root = None
    for label, want, what in [
            ("download-source-button", ROOT / student, "the student copy"),
            ("download-instructor-button", source, "the instructor version")]:
        href, problem = _menu_href(page, "download-buttons", f"a.btn-{label}", label)
        if problem:
            problems.append(problem)
            continue
        response = page.request.get(urljoin(page.url, href))
        if response.status != 200:
            problems.append(f"{label}: {href} gives HTTP {response.status}")
        elif root is not None and (not want.exists() or response.body() != want.read_bytes()):
            problems.append(f"{label}: {href} is not {what} ({want.relative_to(ROOT)})")
        elif label == "download-source-button" and b"### BEGIN SOLUTION" in response.body():
            problems.append(f"{label}: {href} contains the solutions")
    return problems


_WIDGET_SELECTORS = ("script[type^='application/vnd.jupyter.widget']", ".jupyter-widgets",
                     ".widget-area", "script[src*='@jupyter-widgets']")


def _check_static_widgets(page, source: Path) -> list[str]:
    """No live widget on the page; each explorer cell shows a figure (its static form)."""
    problems = [f"a live widget is left on the page ({sel})" for sel in _WIDGET_SELECTORS
                if page.locator(sel).count()]
    nb = nbformat.read(source, as_version=4)
    expected = sum(1 for c in nb.cells if c.cell_type == "code" and EXPLORER.search(c.source))
    cells = [c for c in page.locator("div.cell").all()
             if c.locator(".cell_input").count()
             and EXPLORER.search(c.locator(".cell_input").first.inner_text())]
    if len(cells) != expected:
        problems.append(f"{len(cells)} explorer cells on the page, {expected} in the source")
    for cell in cells:
        code = cell.locator(".cell_input").first.inner_text().strip().splitlines()[-1]
        output = cell.locator(".cell_output")
        text = output.first.inner_text() if output.count() else ""
        if not cell.locator(".cell_output img").count():
            problems.append(f"the explorer `{code[:60]}` shows no figure")
        if re.search(r"\b(HBox|VBox|IntSlider|Dropdown)\(|Explorer\(", text):
            problems.append(f"the explorer `{code[:60]}` shows a widget's text: {text[:80]!r}")
    return problems


def _check_toggles(page, source: Path) -> list[str]:
    problems = []
    n_exercises = count_directives(source, "exercise", "exercise-start")
    n_solutions = count_directives(source, "solution", "solution-start")
    exercises, solutions = page.locator("div.exercise"), page.locator("div.solution")
    if exercises.count() != n_exercises:
        problems.append(f"{exercises.count()} exercises on the page, {n_exercises} in the source")
    if solutions.count() != n_solutions:
        problems.append(f"{solutions.count()} solutions on the page, {n_solutions} in the source")
    for kind, boxes in (("exercise", exercises), ("solution", solutions)):
        for i in range(boxes.count()):
            box = boxes.nth(i)
            title = _normalise(box.locator(".admonition-title").first.inner_text())
            body = box.locator(":scope > :not(.admonition-title)").first
            folded = "dropdown" in (box.get_attribute("class") or "")
            if kind == "solution" and not folded:
                problems.append(f"{title!r} is not folded (add ':class: dropdown')")
            if not folded:
                if not body.is_visible():
                    problems.append(f"{title!r}: its text is not visible")
                continue
            if body.is_visible():
                problems.append(f"{title!r}: open before any click")
            box.locator(".admonition-title").first.click()
            try:
                body.wait_for(state="visible", timeout=5000)
            except Exception:
                problems.append(f"{title!r}: did not open on a click")
    return problems


#: what an exercise check prints: it gives the answer away
_CHECK_OUTPUT = re.compile(r"✅ Correct|❌ Not yet")


def is_check_cell(cell) -> bool:
    """A code cell that checks an exercise's answer (and prints it when right)."""
    return cell.cell_type == "code" and ("exercises.check_" in cell.source
                                         or "❌" in cell.source)


def checks_outside_folds(nb) -> list[str]:
    """The check cells of a notebook that are not between a solution's start and end."""
    inside, found = False, []
    for cell in nb.cells:
        if cell.cell_type == "markdown" and "{solution-start}" in cell.source:
            inside = True
        elif cell.cell_type == "markdown" and "{solution-end}" in cell.source:
            inside = False
        elif is_check_cell(cell) and not inside:
            found.append(cell.source.strip().splitlines()[-1][:70])
    return found


def _check_answers_folded(page) -> list[str]:
    """No exercise check and no check message is shown outside a folded solution."""
    shown = page.eval_on_selector_all(
        "div.cell", "cells => cells.filter(c => !c.closest('div.solution')).map(c => "
        "c.innerText)")
    return [f"an exercise's check is visible outside its folded solution: "
            f"{text.strip().splitlines()[0][:70]!r}"
            for text in shown if _CHECK_OUTPUT.search(text) or "exercises.check_" in text]


def _screenshot_name(doc: str) -> str:
    return doc.replace("/", "__") + ".png"


@pytest.mark.slow
@pytest.mark.parametrize("doc", toc_files())
def test_page_in_a_real_browser(doc, site):
    source = source_path(doc)
    visit = PageVisit(site.browser, site.base, site.mathjax)
    try:
        problems = check_page(visit, f"{site.base}{doc}.html", site.html, source,
                              screenshot=site.html / "_screenshots" / _screenshot_name(doc))
    finally:
        visit.close()
    if site.mathjax is None and has_math(source):
        message = ("no local MathJax 3 (pip install django-static-mathjax, or set "
                   "ATKD_MATHJAX_DIR): only the math markup was checked")
        if REQUIRE_BROWSER:
            problems.append(message)
        else:
            warnings.warn(message, stacklevel=1)
    if problems:
        pytest.fail(f"{doc}.html:\n  " + "\n  ".join(problems), pytrace=False)


@pytest.mark.parametrize("path", sorted((ROOT / "book").glob("[0-9][0-9]_*.ipynb")),
                         ids=lambda p: p.stem)
def test_every_exercise_check_is_inside_its_folded_solution(path):
    outside = checks_outside_folds(nbformat.read(path, as_version=4))
    assert not outside, (f"{path.name}: these check cells print the answer outside the "
                         f"folded solution (move each above its {{solution-end}}): {outside}")


def test_the_fold_check_finds_a_check_after_its_solution():
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell(":::{solution-start} e\n:class: dropdown\n:::"),
        nbformat.v4.new_code_cell("x = 1"),
        nbformat.v4.new_code_cell("exercises.check_a(x)"),
        nbformat.v4.new_markdown_cell(":::{solution-end}\n:::"),
        nbformat.v4.new_code_cell("exercises.check_b(x)"),
        nbformat.v4.new_code_cell("assert y, '❌ Not yet: y'")])
    assert checks_outside_folds(nb) == ["exercises.check_b(x)", "assert y, '❌ Not yet: y'"]


# ------------------------------------------------- the checks themselves can fail


BROKEN_PAGE = """<!doctype html><html><head><title>Broken — a test page</title></head>
<body><main><h1>Broken</h1>
<p>Inline math: <span class="math notranslate nohighlight">\\(x^2\\)</span></p>
<img src="missing.png" alt="a missing figure">
<a href="nowhere.html">a missing page</a> <a href="ok.html#no-such-anchor">a missing anchor</a>
<a href="ok.html#there">a good link</a> <a href="https://example.org/">outside</a>
<div class="solution admonition"><p class="admonition-title">Solution to Exercise 1</p>
<section><p>The answer, not folded.</p></section></div>
<div class="cell"><div class="cell_input"><pre>exercises.check_answer(answer)</pre></div>
<div class="cell_output"><pre>✅ Correct: the answer is 42</pre></div></div>
</main></body></html>"""

# a chapter page as the book built it before: launch links to the instructor notebook on
# the branch main, a download of the instructor version only, and an explorer whose
# output is a dead widget (its controls' text, no figure)
OLD_CHAPTER_PAGE = """<!doctype html><html><head><title>Chapter — a test page</title>
<script type="application/vnd.jupyter.widget-state+json">{"state": {}}</script></head>
<body><div class="dropdown dropdown-launch-buttons">
<button class="btn dropdown-toggle" type="button" onclick="this.nextElementSibling.hidden=false">L</button>
<ul class="dropdown-menu" hidden>
<li><a href="https://mybinder.org/v2/gh/atkd-lite/atkd-lite/main?urlpath=tree/book/ch.ipynb">Binder</a></li>
<li><a href="https://colab.research.google.com/github/atkd-lite/atkd-lite/blob/main/book/ch.ipynb">Colab</a></li>
</ul></div>
<div class="dropdown dropdown-download-buttons">
<button class="btn dropdown-toggle" type="button" onclick="this.nextElementSibling.hidden=false">D</button>
<ul class="dropdown-menu" hidden>
<li><a class="btn-download-source-button" href="ch.ipynb">.ipynb</a></li></ul></div>
<main><h1>Chapter</h1>
<div class="cell"><div class="cell_input"><pre>widgets.explore(draw, i=range(3))</pre></div>
<div class="cell_output"><pre>HBox(children=(IntSlider(value=0),))</pre>
<script type="application/vnd.jupyter.widget-view+json">{"model_id": "x"}</script></div></div>
<div class="cell"><div class="cell_input"><pre style="overflow-x: auto; width: 300px">viz.bar_chart(values)  # a comment that runs far past the column of this page, far far away</pre></div>
<div class="cell_output"><pre>&lt;Figure size 640x480 with 1 Axes&gt;</pre></div></div>
</main></body></html>"""


@pytest.mark.slow
def test_page_checks_catch_a_broken_page(browser, tmp_path):
    (tmp_path / "broken.html").write_text(BROKEN_PAGE)
    (tmp_path / "ok.html").write_text('<html><body><h1 id="there">OK</h1></body></html>')
    source = tmp_path / "broken.md"
    source.write_text("# Broken\n\nInline math: $x^2$.\n\n:::{exercise}\n:label: e\nDo.\n:::\n\n"
                      ":::{solution} e\nThe answer.\n:::\n")
    with serve(tmp_path) as base:
        visit = PageVisit(browser, base, None)
        try:
            problems = "\n".join(check_page(visit, f"{base}broken.html", tmp_path, source))
        finally:
            visit.close()
    assert "image not drawn" in problems and "missing.png" in problems
    assert "could not load 404" in problems
    assert "nowhere.html (no file nowhere.html)" in problems
    assert "no anchor #no-such-anchor" in problems
    assert "#there" not in problems and "example.org" not in problems
    assert "the page loads no MathJax" in problems
    assert "0 exercises on the page, 1 in the source" in problems
    assert "'Solution to Exercise 1' is not folded" in problems
    assert "an exercise's check is visible outside its folded solution: " \
           "'exercises.check_answer(answer)'" in problems


@pytest.mark.slow
def test_launch_and_widget_checks_catch_an_old_chapter_page(browser, tmp_path):
    (tmp_path / "ch.html").write_text(OLD_CHAPTER_PAGE)
    source = tmp_path / "ch.ipynb"
    figure = nbformat.v4.new_output("execute_result", execution_count=2, data={
        "text/plain": "<Figure size 640x480 with 1 Axes>", "image/png": "iVBORw0KGgo="})
    nbformat.write(nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# Chapter"),
        nbformat.v4.new_code_cell("widgets.explore(draw, i=range(3))"),
        nbformat.v4.new_code_cell("viz.bar_chart(values)", outputs=[figure])]), source)
    with serve(tmp_path) as base:
        visit = PageVisit(browser, base, None)
        try:
            visit.page.goto(f"{base}ch.html")
            problems = "\n".join(_check_launch(visit.page, source, visit)
                                  + _check_static_widgets(visit.page, source)
                                  + _check_figures(visit.page, source)
                                  + _check_code_fits(visit.page))
        finally:
            visit.close()
    assert f"Colab link is https://colab.research.google.com/github/atkd-lite/atkd-lite/" \
           f"blob/main/book/ch.ipynb, expected the student copy {COLAB}book/student/ch.ipynb" \
           in problems
    assert "Binder link is" in problems and f"{BINDER}book/student/ch.ipynb" in problems
    assert "0 download-instructor-button entries" in problems
    assert "a live widget is left on the page (script[type^=" in problems
    assert "shows no figure" in problems and "shows a widget's text" in problems
    assert "0 figures drawn in the cell outputs, 1 image outputs in the notebook" in problems
    assert "1 outputs show the text '<Figure size …>' instead of the figure" in problems
    assert "a code cell scrolls sideways at 1280 px: 'viz.bar_chart(values)  # a comment" \
        in problems


# ------------------------------------------------------------------------ the diagrams

FIGURES = sorted((ROOT / "book" / "figures").glob("*.svg"))

# Each text's box against the drawing and against the smallest rectangle that holds
# the point where it is anchored (the box it labels), in the SVG's own units.
_SVG_TEXT_JS = """() => {
  const svg = document.querySelector('svg');
  const vb = svg.viewBox.baseVal;
  const rects = [...svg.querySelectorAll('rect')].map(r => r.getBBox())
      .filter(b => b.width < vb.width * 0.99);
  const out = [];
  for (const t of svg.querySelectorAll('text')) {
    const b = t.getBBox();
    const ax = t.x.baseVal[0].value, ay = t.y.baseVal[0].value;
    const inside = (r, x, y) => x >= r.x && x <= r.x + r.width && y >= r.y && y <= r.y + r.height;
    const holders = rects.filter(r => inside(r, ax, ay - 4))
        .sort((p, q) => p.width * p.height - q.width * q.height);
    out.push({text: t.textContent, box: [b.x, b.y, b.width, b.height],
              view: [vb.x, vb.y, vb.width, vb.height],
              holder: holders.length ? [holders[0].x, holders[0].y, holders[0].width,
                                        holders[0].height] : null});
  }
  return out;
}"""


def svg_text_problems(items: list[dict]) -> list[str]:
    """Texts that leave the drawing or the box that holds their anchor (1-unit slack)."""
    problems = []
    for item in items:
        x, y, w, h = item["box"]
        vx, vy, vw, vh = item["view"]
        if x < vx - 1 or y < vy - 1 or x + w > vx + vw + 1 or y + h > vy + vh + 1:
            problems.append(f"{item['text']!r} leaves the drawing")
        if item["holder"]:
            hx, hy, hw, hh = item["holder"]
            if x < hx - 1 or y < hy - 1 or x + w > hx + hw + 1 or y + h > hy + hh + 1:
                problems.append(f"{item['text']!r} leaves its box")
    return problems


def test_diagrams_are_self_contained_svg():
    import xml.etree.ElementTree as ET

    assert len(FIGURES) >= 3, "the KD pipeline, ATCam and SALS diagrams"
    ns = "{http://www.w3.org/2000/svg}"
    for path in FIGURES:
        root = ET.parse(path).getroot()
        assert root.tag == f"{ns}svg" and root.get("viewBox"), path.name
        assert root.find(f"{ns}title") is not None and root.find(f"{ns}desc") is not None
        assert "http" not in re.sub(r'xmlns="[^"]+"', "", path.read_text()), \
            f"{path.name} refers to something outside the file"


@pytest.mark.slow
@pytest.mark.parametrize("path", FIGURES, ids=lambda p: p.name)
def test_diagram_texts_stay_in_their_boxes(path, browser):
    page = browser.new_page()
    try:
        page.goto(path.as_uri())
        items = page.evaluate(_SVG_TEXT_JS)
    finally:
        page.close()
    assert items, f"{path.name} has no text"
    problems = svg_text_problems(items)
    assert not problems, f"{path.name}: " + "; ".join(problems)


def test_svg_text_check_catches_overflow():
    view = [0, 0, 100, 50]
    ok = {"text": "a", "box": [10, 10, 20, 10], "view": view, "holder": [5, 5, 40, 20]}
    wide = dict(ok, text="b", box=[10, 10, 60, 10])
    out = dict(ok, text="c", box=[90, 10, 30, 10], holder=None)
    assert svg_text_problems([ok]) == []
    assert svg_text_problems([wide]) == ["'b' leaves its box"]
    assert svg_text_problems([out]) == ["'c' leaves the drawing"]
