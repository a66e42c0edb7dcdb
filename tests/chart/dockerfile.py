"""The Dockerfile read as instructions and stages (no container engine needed)."""

from __future__ import annotations

import re

from helm_render import ROOT

DOCKERFILE = ROOT / "Dockerfile"

# An image reference fixed by the digest of its content; a tag may stand beside it but is
# ignored by the builder once a digest is given.
PINNED = re.compile(r"^[a-z0-9][a-z0-9./_-]*(:[\w][\w.-]{0,127})?@sha256:[0-9a-f]{64}$")


def instructions(text: str | None = None) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text() if text is None else text)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def stages(text: str | None = None) -> list[dict]:
    """Each FROM with its image, its stage name (or None) and the instructions under it."""
    result: list[dict] = []
    for word, rest in instructions(text):
        if word == "FROM":
            args = [a for a in rest.split() if not a.startswith("--")]
            name = args[2] if len(args) >= 3 and args[1].upper() == "AS" else None
            result.append({"image": args[0], "name": name, "body": []})
        else:
            assert result, f"{word} before the first FROM"
            result[-1]["body"].append((word, rest))
    return result


def unpinned_bases(text: str | None = None) -> list[str]:
    """Base images that are neither digest-pinned, `scratch`, nor an earlier stage."""
    seen: set[str] = set()
    bad = []
    for stage in stages(text):
        image = stage["image"]
        if image != "scratch" and image not in seen and not PINNED.match(image):
            bad.append(image)
        if stage["name"]:
            seen.add(stage["name"])
    return bad


def labels(body: list[tuple[str, str]]) -> dict[str, str]:
    """key -> value of every LABEL in a stage (quoted or bare values)."""
    found = {}
    for word, rest in body:
        if word == "LABEL":
            for m in re.finditer(r'([\w.-]+)=("(?:[^"\\]|\\.)*"|\S+)', rest):
                found[m.group(1)] = m.group(2).strip('"')
    return found
