"""constraints.txt pins what the install brings (README: `pip install -c constraints.txt ...`).

A dependency added to pyproject.toml, or a range moved, without regenerating the file fails here;
so does a test run on a runtime dependency other than the pinned one (say a newer aiogram).
"""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")


def pins() -> dict[str, str]:
    found = {}
    for line in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines():
        if match := _PIN.match(line):
            found[canonicalize_name(match[1])] = match[2]
    return found


def requirements(*, extras: bool) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    lines = list(project["dependencies"])
    if extras:
        lines += [line for group in project["optional-dependencies"].values() for line in group]
    return [Requirement(line) for line in lines]


def test_every_dependency_is_pinned_within_its_range():
    pinned = pins()
    problems = []
    for requirement in requirements(extras=True):
        version = pinned.get(canonicalize_name(requirement.name))
        if version is None:
            problems.append(f"{requirement.name}: not in constraints.txt")
        elif not requirement.specifier.contains(version, prereleases=True):
            problems.append(f"{requirement.name}=={version} is outside {requirement.specifier}")
    assert not problems, "regenerate constraints.txt (README, Set up and test): " + "; ".join(
        problems
    )


def test_the_runtime_dependencies_installed_are_the_pinned_ones():
    pinned = pins()
    installed = {
        requirement.name: metadata.version(requirement.name)
        for requirement in requirements(extras=False)
    }
    differ = {
        name: f"installed {version}, pinned {pinned[canonicalize_name(name)]}"
        for name, version in installed.items()
        if version != pinned[canonicalize_name(name)]
    }
    assert not differ, f"install with -c constraints.txt: {differ}"
