"""The rooms of the product and the one way their imports run (README, "Layout"); assets and sensors
reach MLflow, AWS and exchanges only through resources.

    python -m tests.test_architecture     # prints every violation, exits 1 when there is one

Every import statement counts, including the ones inside functions: a lazy import is still a
dependency of the program that runs it.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable
from pathlib import Path

import grimp
import pytest

PACKAGES = (
    "tradai_dev", "tradai_assets", "sensors", "tradai_api", "tradai_client", "tradai_bot", "resources", "tradai_core",
    "simulator",
)
STRATEGIES = Path(__file__).resolve().parents[1] / "strategies"  # files, not a package: read one by one

# What each room may import of the others. Anything not listed is an upward or sideways import.
ALLOWED = {
    "tradai_dev": {"tradai_assets", "resources", "tradai_core"},
    "tradai_core": set(),
    "resources": {"tradai_core"},
    "tradai_bot": {"resources", "tradai_core"},
    "tradai_api": {"resources", "tradai_core"},
    "tradai_client": {"tradai_api", "tradai_bot", "tradai_core", "resources"},
    "sensors": {"resources", "tradai_core"},
    "tradai_assets": {"sensors", "resources", "tradai_core"},
    "simulator": {"tradai_core"},
}
# The clients of the outside world that only resources may use: the programs above them ask a resource.
RESOURCE_ONLY_CLIENTS = ("mlflow", "boto3", "botocore", "ccxt")
CLIENT_FREE_ROOMS = ("tradai_assets", "sensors", "tradai_api", "tradai_client", "tradai_bot")
# Strategies must also run under plain Freqtrade: of the product, they see only the strategy base class.
STRATEGY_SDK = {"tradai_core.model_strategy", "tradai_core.model_settings"}


def build_graph(include_external_packages: bool = False) -> grimp.ImportGraph:
    return grimp.build_graph(*PACKAGES, include_external_packages=include_external_packages, cache_dir=None)


def room(module: str) -> str:
    return module.split(".")[0]


def upward_imports(graph: grimp.ImportGraph) -> list[str]:
    problems = []
    for importer in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            source, target = room(importer), room(imported)
            if source == target:
                continue
            if target not in ALLOWED[source]:
                problems.append(f"{importer} imports {imported} ({_line(graph, importer, imported)}): {source} may "
                                f"import only {', '.join(sorted(ALLOWED[source])) or 'nothing of the product'}")
    return problems


def client_imports(graph: grimp.ImportGraph) -> list[str]:
    """Imports of MLflow, AWS or exchange clients by assets and sensors (the graph includes external packages)."""
    problems = []
    for importer in sorted(graph.modules):
        if room(importer) not in CLIENT_FREE_ROOMS:
            continue
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            if room(imported) in RESOURCE_ONLY_CLIENTS:
                problems.append(f"{importer} imports {imported} ({_line(graph, importer, imported)}): "
                                f"{room(importer)} reaches {room(imported)} only through a resource")
    return problems


def strategy_imports(directory: Path = STRATEGIES) -> list[str]:
    """Imports of the product by strategy files other than the strategy base class."""
    problems = []
    for file in sorted(directory.glob("*.py")):
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"), filename=str(file))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else [])
            for name in names:
                if room(name) in PACKAGES and name not in STRATEGY_SDK:
                    problems.append(f"{file.name} imports {name} (line {node.lineno}): strategies may import only "
                                    f"{', '.join(sorted(STRATEGY_SDK))}")
    return problems


def _line(graph: grimp.ImportGraph, importer: str, imported: str) -> str:
    details = graph.get_import_details(importer=importer, imported=imported)
    return ", ".join(f"line {d['line_number']}" for d in details) or "?"


def import_cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each one cycle or more."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = 0

    def edges(module: str) -> Iterable[str]:
        return sorted(graph.find_modules_directly_imported_by(module))

    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(edges(root)))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(edges(child))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))
    return components


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return build_graph()


def test_every_package_is_a_known_room(graph):
    assert {room(m) for m in graph.modules} == set(PACKAGES)


def test_imports_run_one_way(graph):
    assert upward_imports(graph) == []


def test_assets_and_sensors_use_no_client_of_the_outside_world():
    assert client_imports(build_graph(include_external_packages=True)) == []


def test_strategies_import_only_the_strategy_base_class():
    assert strategy_imports() == []


def test_no_import_cycle(graph):
    assert import_cycles(graph) == []


def test_the_checks_find_what_they_look_for():
    """The checker itself, on a graph with an upward import and a cycle."""
    graph = grimp.ImportGraph()
    for module in ("resources.a", "tradai_assets.b", "tradai_assets.c"):
        graph.add_module(module)
    graph.add_import(importer="resources.a", imported="tradai_assets.b", line_number=3, line_contents="import")
    graph.add_import(importer="tradai_assets.b", imported="tradai_assets.c", line_number=4, line_contents="import")
    graph.add_import(importer="tradai_assets.c", imported="tradai_assets.b", line_number=5, line_contents="import")
    assert [p.split(" (")[0] for p in upward_imports(graph)] == ["resources.a imports tradai_assets.b"]
    assert import_cycles(graph) == [["tradai_assets.b", "tradai_assets.c"]]


def test_a_client_import_by_an_asset_or_sensor_is_named():
    graph = grimp.ImportGraph()
    for module in ("tradai_assets.training", "sensors.drift", "resources.registry", "mlflow", "boto3"):
        graph.add_module(module, is_squashed=room(module) in RESOURCE_ONLY_CLIENTS)
    graph.add_import(importer="tradai_assets.training", imported="mlflow", line_number=7, line_contents="import mlflow")
    graph.add_import(importer="sensors.drift", imported="boto3", line_number=9, line_contents="import boto3")
    graph.add_import(importer="resources.registry", imported="mlflow", line_number=3, line_contents="import mlflow")
    assert client_imports(graph) == [
        "sensors.drift imports boto3 (line 9): sensors reaches boto3 only through a resource",
        "tradai_assets.training imports mlflow (line 7): tradai_assets reaches mlflow only through a resource",
    ]


def test_a_strategy_importing_the_product_is_named(tmp_path):
    (tmp_path / "Peeks.py").write_text("from tradai_core.model_strategy import ModelStrategy\n"
                                       "def f():\n    from resources.arctic import ArcticStore\n")
    assert strategy_imports(tmp_path) == [
        "Peeks.py imports resources.arctic (line 3): strategies may import only "
        "tradai_core.model_settings, tradai_core.model_strategy"
    ]


@pytest.mark.parametrize(
    ("entry_point", "not_loaded"),
    [
        ("tradai_bot.runtime", {"tradai_assets", "sensors", "tradai_api", "tradai_client", "simulator"}),
        # `tradai run-bot`, the bot image's command, starts from the CLI module.
        ("tradai_client.cli", {"tradai_assets", "sensors", "tradai_api", "simulator", "fastapi"}),
    ],
)
def test_the_bot_runtime_starts_without_the_code_location(entry_point, not_loaded):
    """The bot image's entry point loads no Dagster asset module, API or simulator."""
    import subprocess

    code = f"import sys, {entry_point}; print(sorted({{m.split('.')[0] for m in sys.modules}} & set({sorted(not_loaded)!r})))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def main() -> int:
    graph = build_graph()
    problems = upward_imports(graph) + client_imports(build_graph(include_external_packages=True)) + strategy_imports() + [
        " -> ".join(c) + ": an import cycle" for c in import_cycles(graph)
    ]
    print("\n".join(problems) or f"{len(graph.modules)} modules: imports run one way, no cycle")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
