"""The lock is current: every dependency pyproject.toml names is pinned (with hashes) in the
files `make venv` and the Dockerfile install, within pyproject's ranges, and this venv holds
exactly those versions (`make test-latest` sets VT_TEST_LATEST and is exempt from that check)."""

from __future__ import annotations

import os
import re
import sys
import tomllib
from importlib import metadata

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from tests.support import ROOT

PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
LOCKED_EXTRAS = ("dev", "vectorwave-lite")  # what the Makefile installs


def _pins(name: str) -> dict[str, tuple[str, frozenset[str]]]:
    """package -> (version, sha256 digests) of one lock file (path from the repository root)."""
    text = (ROOT / name).read_text()
    pins: dict[str, tuple[str, frozenset[str]]] = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        m = re.match(r"([A-Za-z0-9_.\-\[\]]+)==([^\s\\;]+)", block)
        if m:
            pins[canonicalize_name(m.group(1).split("[")[0])] = (m.group(2), frozenset(re.findall(r"--hash=sha256:([0-9a-f]{64})", block)))
    return pins


def _requirements(*extras: str) -> list[Requirement]:
    reqs = [Requirement(r) for r in PROJECT["dependencies"]]
    for extra in extras:
        reqs += [Requirement(r) for r in PROJECT["optional-dependencies"][extra]]
    return reqs


@pytest.mark.parametrize(("lock", "extras"), [("requirements.txt", LOCKED_EXTRAS), ("requirements/runtime.txt", ())])
def test_every_dependency_is_pinned_with_hashes_within_its_range(lock: str, extras: tuple[str, ...]) -> None:
    pins = _pins(lock)
    assert pins, f"{lock} pins nothing"
    unhashed = [name for name, (_v, hashes) in pins.items() if not hashes]
    assert unhashed == [], f"pinned without a hash in {lock}: {unhashed}"
    for req in _requirements(*extras):
        name = canonicalize_name(req.name)
        assert name in pins, f"{req} is not in {lock}: run 'make lock'"
        assert req.specifier.contains(pins[name][0], prereleases=True), (
            f"{lock} pins {name}=={pins[name][0]} outside pyproject's {req}: run 'make lock'"
        )
    for build in ("setuptools", "wheel"):  # the project is installed with --no-build-isolation
        assert build in pins, f"the build backend {build} is not locked in {lock}"


def test_the_image_lock_agrees_with_the_development_lock() -> None:
    dev, runtime = _pins("requirements.txt"), _pins("requirements/runtime.txt")
    differ = {n: (v, dev[n][0]) for n, (v, _h) in runtime.items() if n in dev and dev[n][0] != v}
    assert differ == {}, f"requirements/runtime.txt and requirements.txt pin different versions: {differ}"
    assert set(runtime) <= set(dev)


def test_pylock_toml_is_the_same_lock_in_the_standard_format() -> None:
    """pylock.toml (PEP 751) is what `make lock` makes of requirements.txt: the same packages and
    versions, and every file it names has a digest that requirements.txt allows."""
    pylock = tomllib.loads((ROOT / "pylock.toml").read_text())
    assert pylock["lock-version"] == "1.0"
    pins = _pins("requirements.txt")
    locked = {canonicalize_name(p["name"]): p["version"] for p in pylock["packages"]}
    assert locked == {name: version for name, (version, _h) in pins.items()}, "pylock.toml and requirements.txt differ: run 'make lock'"
    for package in pylock["packages"]:
        files = [*package.get("wheels", []), *([package["sdist"]] if "sdist" in package else [])]
        assert files, f"pylock.toml names no file of {package['name']}"
        allowed = pins[canonicalize_name(package["name"])][1]
        assert {f["hashes"]["sha256"] for f in files} <= allowed, f"pylock.toml has a digest of {package['name']} that requirements.txt lacks"


def test_the_dockerfile_and_the_makefile_install_from_the_lock() -> None:
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert "--require-hashes -r requirements/runtime.txt" in dockerfile
    assert "--no-deps --no-build-isolation ." in dockerfile
    makefile = (ROOT / "Makefile").read_text()
    assert "LOCK        := requirements.txt" in makefile and "--require-hashes -r $(LOCK)" in makefile
    assert "--require-hashes --no-deps -r $(LOCK_NODEPS)" in makefile


def test_the_tools_that_build_the_source_only_packages_are_locked_and_installed_first() -> None:
    """A package the lock has only as source (no wheel digest: hnswlib) is built at install time; what
    its build needs is pinned with hashes in requirements/build-sdists.txt, at the lock's versions
    where the lock has them, and both installs use it instead of an isolated build environment."""
    build = _pins("requirements/build-sdists.txt")
    assert {"setuptools", "wheel", "numpy", "pybind11"} <= set(build)  # hnswlib 0.8.0's build-system.requires
    assert all(digests for _v, digests in build.values())
    for lock in ("requirements.txt", "requirements/runtime.txt"):
        pins = _pins(lock)
        assert {n: v for n, (v, _h) in build.items() if n in pins and pins[n][0] != v} == {}, f"{lock} and build-sdists.txt differ"
        assert "hnswlib" in pins and len(pins["hnswlib"][1]) == 1  # still the one sdist this lock builds
    makefile = (ROOT / "Makefile").read_text()
    assert makefile.index("--require-hashes -r $(LOCK_BUILD)") < makefile.index("--no-build-isolation --require-hashes -r $(LOCK)")
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert dockerfile.index("--require-hashes -r requirements/build-sdists.txt") < dockerfile.index(
        "--no-build-isolation --require-hashes -r requirements/runtime.txt"
    )


def test_the_lock_tool_and_the_readme_s_install_come_from_hashed_pins() -> None:
    """Nothing a user or `make lock` installs takes the registry's versions of the day: uv from
    requirements/lock-tool.txt, and the README's way to run the processor from the lock."""
    tool = _pins("requirements/lock-tool.txt")
    assert set(tool) == {"uv"} and len(tool["uv"][1]) > 1  # every platform's file
    makefile = (ROOT / "Makefile").read_text()
    assert "LOCK_TOOL   := requirements/lock-tool.txt" in makefile
    assert "$(LOCK_VENV)/bin/$(PIP) --require-hashes -r $(LOCK_TOOL)" in makefile and "'uv==" not in makefile
    readme = (ROOT / "README.md").read_text()
    running = readme[readme.index("## Running it next to your Kafka") :]
    running = running[: running.index("\n## ", 1)]
    assert "make venv" in running and "--require-hashes -r requirements/runtime.txt" in running
    assert "pip install -e ." not in running


@pytest.mark.skipif(os.environ.get("VT_TEST_LATEST") == "1", reason="make test-latest runs without the lock on purpose")
def test_this_venv_holds_exactly_the_locked_versions() -> None:
    pins = {**_pins("requirements.txt"), **_pins("requirements/vectorwave-nodeps.txt")}
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in metadata.distributions()}
    wrong = {name: (installed.get(name), version) for name, (version, _h) in pins.items() if installed.get(name) != version}
    assert wrong == {}, f"installed (got, locked) differ: {wrong}; 'make test' installs the lock"


def test_the_supported_python_versions_are_the_tested_ones() -> None:
    """pyproject states 3.11 (the version CI runs and the lock is resolved for)."""
    classifiers = [c for c in PROJECT["classifiers"] if c.startswith("Programming Language :: Python :: 3.")]
    assert classifiers == ["Programming Language :: Python :: 3.11"]
    assert PROJECT["requires-python"] == ">=3.11"
    if os.environ.get("VT_TEST_LATEST") != "1":
        assert sys.version_info[:2] == (3, 11), "the lock is resolved for Python 3.11"
    lock_header = (ROOT / "Makefile").read_text()
    assert lock_header.count("--python-version 3.11") == lock_header.count("uv pip compile") == 6  # every lock `make lock` writes
