"""What ships: the `anomaly` wheel holds the product and nothing else, and each distribution
(`anomaly`, and `anomaly-lab` beside it) declares the third-party modules its code imports, and
the wheel alone, in a fresh venv without extras, runs a cycle against real servers.

The wheel is built once per module by pip with the venv's setuptools (``--no-build-isolation``,
``--no-index``: nothing is downloaded) from a copy of the checkout, because setuptools writes
``build/`` and ``*.egg-info`` beside the sources it builds.
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
import requests
import tomllib
from anomaly_lab import synth
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import Servers, write_config

ROOT = Path(__file__).resolve().parents[2]

# Tooling and heavy dependencies of the tooling: never imported by the product.
NOT_IN_THE_PRODUCT = {"anomaly_lab", "tests", "bench", "matplotlib", "scipy", "papermill", "pytest"}


def imported_modules(source: str, filename: str) -> Iterator[tuple[str, int]]:
    """(top-level module, line) of every absolute import in `source`, in functions too."""
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name.partition(".")[0], node.lineno
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.partition(".")[0], node.lineno


def _ignore_for_copy(directory: str, names: list[str]) -> set[str]:
    """Caches, build output and local state; at the root also hidden entries (.git, .venv)
    and the default model store."""
    ignored = {n for n in names if n in {"__pycache__", "build", "dist"} or n.endswith(".egg-info")}
    if Path(directory) == ROOT:
        ignored |= {n for n in names if n.startswith(".") or n == "models"}
    return ignored


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "checkout"
    shutil.copytree(ROOT, source, ignore=_ignore_for_copy)
    out = tmp / "dist"
    cmd = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
    result = subprocess.run(
        [*cmd, "--no-index", "-w", str(out), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, (
        "pip wheel failed (the build needs setuptools and wheel in the venv: the dev extras)\n"
        + result.stderr[-3000:]
    )
    (built,) = out.glob("anomaly-*.whl")
    return zipfile.ZipFile(built)


def test_the_wheel_holds_the_anomaly_package_and_nothing_else(wheel: zipfile.ZipFile) -> None:
    names = wheel.namelist()
    top = {name.split("/")[0] for name in names}
    (dist_info,) = {t for t in top if t.endswith(".dist-info")}
    assert re.fullmatch(r"anomaly-[^-]+\.dist-info", dist_info)
    assert top == {"anomaly", dist_info}, f"unexpected in the wheel: {top - {'anomaly', dist_info}}"
    assert wheel.read(f"{dist_info}/top_level.txt").decode().split() == ["anomaly"]
    # Every module of the package made it in: a folder without __init__.py would be left out.
    in_checkout = {p.relative_to(ROOT).as_posix() for p in (ROOT / "anomaly").rglob("*.py")}
    assert in_checkout == {n for n in names if n.endswith(".py")}


def test_the_wheel_imports_no_tooling(wheel: zipfile.ZipFile) -> None:
    found = [
        f"{name}:{line} imports {module}"
        for name in wheel.namelist()
        if name.endswith(".py")
        for module, line in imported_modules(wheel.read(name).decode("utf-8"), name)
        if module in NOT_IN_THE_PRODUCT
    ]
    assert not found, "\n".join(found)


def test_the_console_script_is_the_cli(wheel: zipfile.ZipFile) -> None:
    (entry_points,) = [n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt")]
    text = wheel.read(entry_points).decode()
    assert re.search(r"^\[console_scripts\]\s*\nanomaly = anomaly\.cli:main$", text, re.M), text


@pytest.mark.parametrize(
    ("package", "pyproject"),
    [
        (ROOT / "anomaly", ROOT / "pyproject.toml"),
        (ROOT / "lab" / "anomaly_lab", ROOT / "lab" / "pyproject.toml"),
    ],
    ids=["anomaly", "anomaly-lab"],
)
def test_imports_are_declared_dependencies(package: Path, pyproject: Path) -> None:
    """Each third-party module the package imports at module level comes from a distribution
    in its ``[project].dependencies``; one imported only inside a function (an optional
    reference, e.g. scikit-learn's forest) may come from an extra instead. Import names are
    mapped to distributions by the installed metadata (``yaml`` is PyYAML)."""
    project = tomllib.loads(pyproject.read_text())["project"]
    declared = _names(project["dependencies"])
    optional = _names(
        r for extra in project.get("optional-dependencies", {}).values() for r in extra
    )
    undeclared = []
    for path, module, line, top_level in _third_party_imports(package):
        distributions = _providers(module)
        if not distributions & (declared if top_level else declared | optional):
            where = f"{path.relative_to(ROOT)}:{line}"
            provided = ", ".join(sorted(distributions)) or "no installed distribution"
            undeclared.append(f"{where} imports {module} ({provided})")
    assert not undeclared, f"not in {pyproject.relative_to(ROOT)}:\n" + "\n".join(undeclared)


@pytest.mark.parametrize(
    ("package", "pyproject"),
    [
        (ROOT / "anomaly", ROOT / "pyproject.toml"),
        (ROOT / "lab" / "anomaly_lab", ROOT / "lab" / "pyproject.toml"),
    ],
    ids=["anomaly", "anomaly-lab"],
)
def test_every_dependency_is_imported(package: Path, pyproject: Path) -> None:
    """A declared dependency earns its place: the package imports it somewhere (the lab's
    dependency on the package itself excepted)."""
    declared = _names(tomllib.loads(pyproject.read_text())["project"]["dependencies"])
    imported: set[str] = {canonicalize_name("anomaly")}
    for _, module, _, _ in _third_party_imports(package):
        imported |= _providers(module)
    assert declared - imported == set()


def _names(requirements: Iterable[str]) -> set[str]:
    return {canonicalize_name(Requirement(r).name) for r in requirements}


def _providers(module: str) -> set[str]:
    return {
        canonicalize_name(d) for d in importlib.metadata.packages_distributions().get(module, [])
    }


def _third_party_imports(package: Path) -> Iterator[tuple[Path, str, int, bool]]:
    """(file, top-level module, line, imported at module level?) of every import in
    ``package`` that is neither the standard library nor the package itself."""
    for path in sorted(package.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        # Imports run when the module loads: its body and its classes' and top-level
        # `try`/`if` blocks, not functions, nor `if TYPE_CHECKING:` (type checkers only).
        module_level = {id(node) for node in _load_time_nodes(tree)}
        for node in ast.walk(tree):
            for module, line in _imports_of(node):
                if module in sys.stdlib_module_names or module == package.name:
                    continue
                yield path, module, line, id(node) in module_level


def _load_time_nodes(node: ast.AST) -> Iterator[ast.AST]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            continue
        if isinstance(child, ast.If) and ast.unparse(child.test) == "TYPE_CHECKING":
            continue
        yield child
        yield from _load_time_nodes(child)


def _imports_of(node: ast.AST) -> Iterator[tuple[str, int]]:
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield alias.name.partition(".")[0], node.lineno
    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        yield node.module.partition(".")[0], node.lineno


@pytest.mark.e2e
def test_the_wheel_alone_runs_a_cycle_against_real_servers(
    wheel: zipfile.ZipFile, servers: Servers, tmp_path: Path
) -> None:
    """The wheel in a fresh venv, without extras (what the image installs), runs
    ``anomaly run --once`` against a real Prometheus and Pushgateway."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", wheel.filename],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    listed = subprocess.run(
        [str(python), "-m", "pip", "list", "--format=json", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        check=True,
    )
    installed = {canonicalize_name(d["name"]) for d in json.loads(listed.stdout)}
    assert "anomaly" in installed
    assert (
        installed & {"anomaly-lab", "scikit-learn", "statsmodels", "scipy", "matplotlib"} == set()
    )

    dataset = synth.generate(3, days=11.0, seed=5)  # the shipped AI spend forecast reads 10 d
    with servers.stack(dataset=dataset, with_alertmanager=False) as stack:
        config = write_config(tmp_path / "config.yaml", stack)
        run = subprocess.run(
            [str(venv / "bin" / "anomaly"), "run", "--once", "--config", str(config)]
            + ["--at", str(dataset.end)],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=tmp_path,
        )
        assert run.returncode == 0, run.stderr[-3000:]
        groups = requests.get(f"{stack.pushgateway_url}/api/v1/metrics", timeout=10).json()["data"]
    pushed = {g["labels"].get("organization_id") for g in groups} - {None}
    assert pushed == set(dataset.tenants)
    assert "scored" in run.stdout
