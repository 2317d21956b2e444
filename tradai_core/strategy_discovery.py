"""Finding Freqtrade strategies in ``strategies/*.py`` without importing them.

Importing Freqtrade costs about 10 s, and a strategy file may not import at all: the code location
reads each file's syntax tree instead. A class is a strategy when it derives from ``IStrategy`` or
the product's ``ModelStrategy`` (directly, or through another strategy class in the same file); the
latter makes it a model strategy, with a ``strategies/<Name>/model`` asset. Its optional metadata are plain
class attributes with literal values (``category``, ``pairs``, ``description``, ``config_overrides``,
``bias_checks``, ``live``, ``model_settings``, Freqtrade's own ``timeframe``) and Freqtrade's ``version()`` method returning a literal; the class
docstring is the description when there is no ``description``. A file that cannot be parsed still
yields a strategy (named after the file) whose assets fail with the reason.
"""

from __future__ import annotations

import ast
import hashlib
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

METADATA_ATTRIBUTES = (
    "timeframe", "category", "pairs", "description", "config_overrides", "can_short", "bias_checks", "live",
    "model_settings",
)
# Product base classes a strategy may derive from instead of IStrategy (tradai_core/model_strategy.py).
STRATEGY_BASES = {"IStrategy": False, "ModelStrategy": True}


@dataclass
class StrategySpec:
    name: str
    file: Path
    timeframe: str | None = None
    version: str | None = None
    category: str | None = None
    pairs: list[str] | None = None
    description: str | None = None
    config_overrides: dict[str, Any] = field(default_factory=dict)
    bias_checks: bool = False
    """Run Freqtrade's lookahead- and recursive-analysis as checks of the backtest (slow: opt-in)."""
    live: bool = False
    """The strategy's own consent to live trading (``live = True``); one of the live interlocks."""
    model_settings: dict[str, Any] | None = None
    """Set for model strategies (derived from ``ModelStrategy``): their literal ``model_settings``."""
    problem: str | None = None
    """Why this strategy cannot run (syntax error, a non-literal metadata value ...), naming the file."""

    @property
    def code_version(self) -> str:
        """The strategy file's source hash: the code version of its assets, so Dagster shows when it changed."""
        return source_hash(self.file)

    def ui_metadata(self) -> dict[str, Any]:
        out: dict[str, Any] = {"file": str(self.file)}
        for key in ("version", "category", "timeframe", "pairs"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.bias_checks:
            out["bias_checks"] = True
        if self.live:
            out["live"] = True
        if self.is_model:
            out["model"] = True
        if self.problem:
            out["problem"] = self.problem
        return out


    @property
    def is_model(self) -> bool:
        return self.model_settings is not None


def source_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _base_name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _class_metadata(cls: ast.ClassDef, path: Path) -> tuple[dict[str, Any], list[str]]:
    values: dict[str, Any] = {}
    problems = []
    for stmt in cls.body:
        targets: list[ast.expr] = []
        value = None
        if isinstance(stmt, ast.Assign):
            targets, value = stmt.targets, stmt.value
        elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
            targets, value = [stmt.target], stmt.value
        elif isinstance(stmt, ast.FunctionDef) and stmt.name == "version":
            returns = [s for s in stmt.body if isinstance(s, ast.Return)]
            if returns and isinstance(returns[0].value, ast.Constant):
                values["version"] = str(returns[0].value.value)
            continue
        for target in targets:
            if isinstance(target, ast.Name) and target.id in METADATA_ATTRIBUTES:
                try:
                    values[target.id] = ast.literal_eval(value)
                except ValueError:
                    if target.id in ("config_overrides", "model_settings"):  # the platform cannot do without these
                        problems.append(f"{path}:{stmt.lineno}: {cls.name}.{target.id} must be a literal dict")
    docstring = ast.get_docstring(cls)
    if docstring and "description" not in values:
        values["description"] = docstring.strip().split("\n\n")[0]
    return values, problems


def _spec(name: str, path: Path, values: dict[str, Any], problems: list[str]) -> StrategySpec:
    spec = StrategySpec(name=name, file=path)
    for key in ("timeframe", "version", "category", "description"):
        if key in values:
            setattr(spec, key, None if values[key] is None else str(values[key]))
    if "pairs" in values:
        pairs = values["pairs"]
        if isinstance(pairs, list | tuple) and all(isinstance(p, str) for p in pairs):
            spec.pairs = list(pairs)
        else:
            problems.append(f"{path}: {name}.pairs must be a list of pair names, got {pairs!r}")
    if "config_overrides" in values:
        if isinstance(values["config_overrides"], dict):
            spec.config_overrides = values["config_overrides"]
        else:
            problems.append(f"{path}: {name}.config_overrides must be a dict")
    if values.get("is_model"):
        settings = values.get("model_settings", {})
        if isinstance(settings, dict):
            spec.model_settings = settings
        else:
            problems.append(f"{path}: {name}.model_settings must be a literal dict")
            spec.model_settings = {}
    if "live" in values:
        if isinstance(values["live"], bool):
            spec.live = values["live"]
        else:
            problems.append(f"{path}: {name}.live must be True or False, got {values['live']!r}")
    if "bias_checks" in values:
        if isinstance(values["bias_checks"], bool):
            spec.bias_checks = values["bias_checks"]
        else:
            problems.append(f"{path}: {name}.bias_checks must be True or False, got {values['bias_checks']!r}")
    spec.problem = "; ".join(problems) or None
    return spec


# CPython 3.11 keeps the AST constructor's recursion depth in interpreter-wide state: two threads
# parsing at once (the API's request threads) can interleave there, when a garbage collection in the
# middle of one parse runs Python code and lets the other thread in, and the parse then fails with
# "SystemError: AST constructor recursion depth mismatch" (python/cpython#106905). One parse at a time.
_PARSE_LOCK = threading.Lock()


def strategies_in_file(path: Path) -> list[StrategySpec]:
    try:
        source = path.read_text(encoding="utf-8")
        with _PARSE_LOCK:
            tree = ast.parse(source, filename=str(path))
    except (SyntaxError, UnicodeDecodeError) as exc:
        where = f"{path}:{exc.lineno}" if isinstance(exc, SyntaxError) else str(path)
        return [StrategySpec(name=path.stem, file=path, problem=f"{where}: cannot be parsed ({exc})")]
    found: dict[str, tuple[dict[str, Any], list[str]]] = {}
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        bases = [_base_name(b) for b in node.bases]
        parents = [b for b in bases if b in found]
        product_bases = [b for b in bases if b in STRATEGY_BASES]
        if not product_bases and not parents:
            continue
        values: dict[str, Any] = {"is_model": any(STRATEGY_BASES[b] for b in product_bases)}
        problems: list[str] = []
        for parent in parents:  # attributes are inherited from strategies of the same file
            values.update(found[parent][0])
        own, own_problems = _class_metadata(node, path)
        values.update(own)
        found[node.name] = (values, problems + own_problems)
    return [_spec(name, path, values, problems) for name, (values, problems) in found.items()]


def discover_strategies(directory: Path) -> list[StrategySpec]:
    """Every strategy class of every ``*.py`` in the directory, in file order; names are unique."""
    specs: list[StrategySpec] = []
    seen: dict[str, Path] = {}
    for path in sorted(directory.glob("*.py")):
        if path.name.startswith("_"):
            continue
        for spec in strategies_in_file(path):
            if spec.name in seen:
                first = seen[spec.name]
                spec = StrategySpec(
                    name=f"{spec.name}_{path.stem}",
                    file=path,
                    problem=f"{path}: strategy class {spec.name} is also defined in {first}; rename one",
                )
            seen[spec.name] = path
            specs.append(spec)
    return specs


PARAMETER_CLASSES = {"IntParameter", "DecimalParameter", "RealParameter", "CategoricalParameter", "BooleanParameter"}


def declared_parameters(path: Path, class_name: str) -> list[str]:
    """The hyperopt parameters (``buy_rsi = IntParameter(...)``) a strategy class declares in its own
    body or in the bodies of the strategy classes it derives from in the same file; read from the
    syntax tree, so parameters inherited from another file are not seen. Empty for a file that does
    not parse (its strategy's assets report that)."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (SyntaxError, UnicodeDecodeError):
        return []
    classes = {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}

    def own(cls: ast.ClassDef, seen: frozenset[str]) -> list[str]:
        names = []
        for base in (_base_name(b) for b in cls.bases):
            if base in classes and base not in seen:
                names += own(classes[base], seen | {base})
        for stmt in cls.body:
            value = stmt.value if isinstance(stmt, ast.Assign | ast.AnnAssign) else None
            if isinstance(value, ast.Call) and _base_name(value.func) in PARAMETER_CLASSES:
                targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
                names += [t.id for t in targets if isinstance(t, ast.Name)]
        return list(dict.fromkeys(names))

    return own(classes[class_name], frozenset({class_name})) if class_name in classes else []
