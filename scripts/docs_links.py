"""Checks the links of the built documentation site (scripts/docs runs it).

Usage: python scripts/docs_links.py BUILT_BOOK_DIR

Every internal link and resource (href, src) of every HTML page must name a file of the built
site, and its #fragment an id on that page. Links into this repository on GitHub (the book's
`git-repository-url` followed by /blob/main/, /tree/main/ or /edit/main/) must name a file or
folder that exists in the work tree. Other external links are printed once each, never
fetched: CI has no internet. Exits 1 when a link is broken. Standard library only.
"""

from __future__ import annotations

import html.parser
import pathlib
import re
import sys
import urllib.parse

ROOT = pathlib.Path(__file__).resolve().parents[1]
BOOK_TOML = ROOT / "docs" / "book.toml"
LINK_ATTRS = {"href", "src"}
IGNORED_SCHEMES = {"javascript", "mailto", "data", "tel"}


class Page(html.parser.HTMLParser):
    """The ids, the <base href> and the links of one HTML page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.base: str | None = None
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value is None:
                continue
            if name == "id" or (tag == "a" and name == "name"):
                self.ids.add(value)
            elif tag == "base" and name == "href":
                self.base = value
            elif name in LINK_ATTRS and tag != "base":
                self.links.append(value)

    handle_startendtag = handle_starttag


def repo_url() -> str:
    """The repository's web address, from the book's configuration (one source)."""
    # A regular expression rather than tomllib, which needs Python 3.11 (the venv may be 3.10).
    match = re.search(r'^git-repository-url\s*=\s*"([^"]*)"', BOOK_TOML.read_text(), re.M)
    return match.group(1).rstrip("/") if match else ""


def parse(path: pathlib.Path) -> Page:
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    return page


def check(
    site: pathlib.Path, repo: pathlib.Path = ROOT, repo_web: str | None = None
) -> tuple[list[str], dict[str, set[str]], int]:
    """(broken links, external link -> pages that use it, links checked) for the built site."""
    site = site.resolve()
    repo_web = repo_url() if repo_web is None else repo_web
    own = re.compile(re.escape(repo_web) + r"/(?:blob|tree|edit)/main/([^#?]*)") if repo_web else None
    pages = {p.relative_to(site).as_posix(): parse(p) for p in sorted(site.rglob("*.html"))}
    broken: list[str] = []
    external: dict[str, set[str]] = {}
    checked = 0
    for name, page in pages.items():
        # Pages are addressed as URLs under a fake origin so urljoin applies the browser's rules.
        here = urllib.parse.urljoin("http://site/", name)
        base = urllib.parse.urljoin(here, page.base) if page.base else here
        for link in page.links:
            checked += 1
            parts = urllib.parse.urlsplit(link)
            if parts.scheme in IGNORED_SCHEMES:
                continue
            if parts.scheme or link.startswith("//"):
                match = own.match(link) if own else None
                if match:
                    target = repo / urllib.parse.unquote(match.group(1))
                    if not target.exists():
                        broken.append(f"{name}: {link}: no such file in the repository ({target.relative_to(repo)})")
                else:
                    external.setdefault(link.split("#")[0], set()).add(name)
                continue
            # A fragment alone names a place on this page (mdBook's heading links), even under
            # the <base href="/"> of its 404 page.
            resolved = urllib.parse.urlsplit(urllib.parse.urljoin(here if link.startswith("#") else base, link))
            if resolved.netloc != "site":
                broken.append(f"{name}: {link}: leaves the site")
                continue
            rel = urllib.parse.unquote(resolved.path.lstrip("/"))
            target = site / rel
            if rel == "" or target.is_dir():
                rel = (rel.rstrip("/") + "/index.html").lstrip("/")
                target = site / rel
            if not target.is_file():
                broken.append(f"{name}: {link}: no such file {rel}")
                continue
            fragment = urllib.parse.unquote(resolved.fragment)
            if fragment and rel in pages and fragment not in pages[rel].ids:
                broken.append(f"{name}: {link}: no id '{fragment}' in {rel}")
    return broken, external, checked


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    site = pathlib.Path(argv[1])
    if not (site / "index.html").is_file():
        print(f"{site}: no index.html, not a built book", file=sys.stderr)
        return 2
    broken, external, checked = check(site)
    pages = len(list(site.rglob("*.html")))
    if external:
        print(f"external links (not fetched), {len(external)}:")
        for link in sorted(external):
            print(f"  {link}")
    for line in broken:
        print(f"BROKEN {line}", file=sys.stderr)
    print(
        f"{pages} pages, {checked} links checked: {len(broken)} broken,"
        f" {len(external)} external (listed, not fetched)"
    )
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
