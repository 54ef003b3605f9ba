"""Print constraints.txt: the installed version of every package the extras and the build pull in.

Walks the requirements of ``ternaryclip[train,eval,bench,test]`` (and the build tools) through the
installed distributions, so that unrelated packages in the environment stay out.
"""

from __future__ import annotations

import importlib.metadata as metadata
import re

from packaging.requirements import Requirement

EXTRAS = ("train", "eval", "bench", "test", "all", "quickstart", "docs")
BUILD = ("scikit-build-core", "nanobind")
HEADER = """\
# Versions CI installs for the extras (train, eval, bench, test) and the build: pip install -c constraints.txt.
# The tested set, from pip freeze of a working environment, limited to what the extras pull in.
# Refresh deliberately (make constraints), then run the whole suite; drift broke clip_benchmark once (NumPy 2)."""


def _key(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pulled_in(name: str, extras: tuple[str, ...], found: dict[str, str]) -> None:
    """Add ``name`` and, recursively, what it requires (with these extras) to ``found``."""
    try:
        dist = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return
    if _key(name) in found and not extras:
        return
    found[_key(name)] = dist.version
    for text in dist.requires or []:
        requirement = Requirement(text)
        wanted = extras or ("",)
        if requirement.marker and not any(requirement.marker.evaluate({"extra": e}) for e in wanted):
            continue
        pulled_in(requirement.name, tuple(requirement.extras), found)


def main() -> None:
    found: dict[str, str] = {}
    pulled_in("ternaryclip", EXTRAS, found)
    for tool in BUILD:
        pulled_in(tool, (), found)
    found.pop("ternaryclip", None)
    print(HEADER)
    print("\n".join(f"{name}=={version}" for name, version in sorted(found.items())))


if __name__ == "__main__":
    main()
