"""The docs point at things that exist: the link checker scripts/docs runs on the built site
finds what it must, every page is in the book's table of contents, the repository paths the
docs name exist, and the links of the Markdown files read on GitHub (README, CONTRIBUTING,
the chart README) resolve."""

from __future__ import annotations

import importlib.util
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "src"
REPO_WEB = "https://github.com/kserve-keda-webhook/kserve-keda-webhook"
# Markdown read on GitHub (relative links resolve in the repository there).
GITHUB_PAGES = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", ROOT / "charts" / "kserve-keda-webhook" / "README.md"]
# Top-level folders and files a docs page may name as a path in `code`.
REPO_ROOTS = (
    "src/", "tests/", "scripts/", "charts/", "e2e/", "examples/", "benches/", "docs/", "webhook-config/", ".ci/"
)


def load_checker():
    spec = importlib.util.spec_from_file_location("docs_links", ROOT / "scripts" / "docs_links.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_link_checker_finds_broken_links_and_anchors(tmp_path):
    site = tmp_path / "site"
    (site / "dev").mkdir(parents=True)
    (site / "css").mkdir()
    (site / "css" / "style.css").write_text("")
    (site / "index.html").write_text(
        '<link href="css/style.css"><h2 id="top">t</h2>'
        '<a href="dev/page.html#here">ok</a> <a href="#top">ok</a> <a href="dev/">ok: the folder\'s index</a>'
        '<a href="missing.html">file</a> <a href="dev/page.html#nowhere">anchor</a>'
        '<a href="https://example.com/x#y">external</a> <a href="mailto:a@b">mail</a>'
        f'<a href="{REPO_WEB}/blob/main/scripts/docs">own file</a>'
        f'<a href="{REPO_WEB}/blob/main/no/such/file.md#L1">own, missing</a>'
    )
    (site / "dev" / "index.html").write_text('<a href="../index.html#top">up</a>')
    (site / "dev" / "page.html").write_text('<p id="here"></p><img src="../img.svg"><a name="legacy"></a>')
    # mdBook's 404 page resolves links from the root, but its heading links stay on the page.
    (site / "404.html").write_text(
        '<base href="/"><h1 id="gone"><a href="#gone">404</a></h1><a href="dev/page.html#legacy">from the root</a>'
    )
    broken, external, checked = load_checker().check(site, ROOT, REPO_WEB)
    assert sorted(broken) == sorted(
        [
            "index.html: missing.html: no such file missing.html",
            "index.html: dev/page.html#nowhere: no id 'nowhere' in dev/page.html",
            f"index.html: {REPO_WEB}/blob/main/no/such/file.md#L1: no such file in the repository (no/such/file.md)",
            "dev/page.html: ../img.svg: no such file img.svg",
        ]
    )
    assert external == {"https://example.com/x": {"index.html"}}
    assert checked == 14


def test_every_page_is_in_the_table_of_contents():
    summary = (DOCS / "SUMMARY.md").read_text()
    listed = set(re.findall(r"\]\(([^)#]+\.md)\)", summary))
    pages = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")} - {"SUMMARY.md"}
    assert pages - listed == set(), "pages mdBook would not build (not in SUMMARY.md)"
    assert listed - pages == set(), "SUMMARY.md names pages that do not exist"


def named_paths(text: str) -> set[str]:
    """Repository paths written in `code` (no placeholders or globs)."""
    out = set()
    for span in re.findall(r"`([^`\s]+)`", text):
        span = span.rstrip(".,:;")
        if span.startswith(REPO_ROOTS) and not re.search(r"[<>*{}$]", span):
            out.add(span.split("#")[0].split(":")[0])
    return out


DOC_FILES = sorted(DOCS.rglob("*.md")) + GITHUB_PAGES


@pytest.mark.parametrize("path", DOC_FILES, ids=[p.relative_to(ROOT).as_posix() for p in DOC_FILES])
def test_the_repository_paths_the_docs_name_exist(path):
    missing = sorted(p for p in named_paths(path.read_text()) if not (ROOT / p).exists())
    assert not missing, f"{path.relative_to(ROOT)} names paths that do not exist: {missing}"


@pytest.mark.parametrize("path", GITHUB_PAGES, ids=[p.relative_to(ROOT).as_posix() for p in GITHUB_PAGES])
def test_the_links_of_pages_read_on_github_resolve(path):
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    broken = []
    for link in re.findall(r"\]\(([^)\s]+)\)", text):
        if link.startswith(REPO_WEB + "/"):
            m = re.match(re.escape(REPO_WEB) + r"/(?:blob|tree)/main/([^#?]*)", link)
            target = ROOT / m.group(1) if m else None
        elif re.match(r"[a-z]+:", link) or link.startswith("#"):
            continue
        else:
            target = path.parent / link.split("#")[0]
        if target is None or not target.exists():
            broken.append(link)
    assert not broken, f"{path.relative_to(ROOT)}: links to nothing: {broken}"
