"""The docs are self-contained: every relative link in README.md and docs/ resolves to a
file in the repository, and the README's quick start holds the commands CI runs."""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]

FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.S | re.M)
CODE_SPAN = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]*)>?(?:\s+[\"'][^)]*[\"'])?\s*\)")
EXTERNAL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")  # http:, https:, mailto:, ...


def relative_links(text: str) -> list[str]:
    """The relative link targets of Markdown ``[..](path)`` and ``![..](path)``, outside code."""
    prose = CODE_SPAN.sub("", FENCE.sub("", text))
    targets = (m.group(1).split("#", 1)[0] for m in LINK.finditer(prose))
    return [t for t in targets if t and not EXTERNAL.match(t) and not t.startswith("//")]


def tracked_files() -> set[Path] | None:
    """Files git tracks (what a fresh clone has), or None outside a git checkout."""
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return {(ROOT / p).resolve() for p in out.decode().split("\0") if p}


def broken_link(source: Path, target: str, tracked: set[Path] | None) -> str | None:
    path = (source.parent / target).resolve()
    if not path.is_relative_to(ROOT):
        return "points outside the repository"
    if not path.exists():
        return "does not exist"
    if tracked is not None and path not in tracked and not any(p.is_relative_to(path) for p in tracked):
        return "is not tracked by git (a fresh clone would not have it)"
    return None


def test_relative_links_resolve():
    assert (ROOT / "docs" / "README.md") in DOCS
    tracked = tracked_files()
    broken, n_links = [], 0
    for source in DOCS:
        for target in relative_links(source.read_text(encoding="utf-8")):
            n_links += 1
            why = broken_link(source, target, tracked)
            if why:
                broken.append(f"{source.relative_to(ROOT)}: ({target}) {why}")
    assert n_links > 0
    assert not broken, "broken relative links:\n" + "\n".join(broken)


def test_link_parser():
    text = (
        '[a](docs/a.md) ![fig](img/b.png "title") [web](https://x.org/c.md) [anchor](#top)\n'
        "[part](d.md#sec) `[code](no.md)`\n```\n[fenced](no2.md)\n```\n[mail](mailto:a@b.c)"
    )
    assert relative_links(text) == ["docs/a.md", "img/b.png", "d.md"]


def test_readme_quick_start_runs_experiments_and_tests():
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", (ROOT / "README.md").read_text(encoding="utf-8"), re.S | re.M)
    assert blocks, "README.md has no fenced code block"
    for command in ("python -m experiments", "pytest"):
        assert command in blocks[0], f"README.md's first code block lacks {command!r}"
