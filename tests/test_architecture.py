"""The package's shape: no import cycles (imports inside functions count), each
layer imports only the layers below it, folders say what they own, and no
module keeps mutable state at module level but ``restoration/cache.py``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "napari_memnet"
NAME = "napari_memnet"

# layer -> the layers it may import (besides itself); docs/architecture.md shows the same table
ALLOWED = {
    "core": set(),
    "models": {"core"},
    "restoration": {"core", "models"},
    "training": {"core", "models"},
    "api": {"core", "models", "restoration", "training"},
    "evaluate": {"core", "models", "restoration"},
    "benchmark": {"core", "models", "restoration"},
    "zoo": {"core", "models", "api", "_version"},
    "commands": {"core", "models", "restoration", "training", "api", "evaluate", "benchmark", "zoo", "cli"},
    "cli": {"commands", "_version"},
    "demo": {"core", "models", "api", "sample_data"},
    "sample_data": {"core"},
    "_widgets": {"core", "models", "restoration", "training", "api", "zoo"},
    "__init__": {"_version"},
    "__main__": {"cli"},
    "_version": set(),
}
MUTATORS = {"append", "extend", "insert", "add", "discard", "remove", "pop", "popitem", "clear", "update",
            "setdefault", "move_to_end"}


def _modules() -> dict[str, tuple[Path, bool]]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = [NAME, *path.relative_to(PACKAGE).with_suffix("").parts]
        is_package = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return out


def import_graph() -> dict[str, set[str]]:
    """module -> the package modules it imports, anywhere in its body."""
    modules = _modules()
    graph = {}
    for name, (path, is_package) in modules.items():
        base = name.split(".") if is_package else name.split(".")[:-1]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    target = ".".join(base[: len(base) - node.level + 1] + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                for alias in node.names:  # "from pkg import module" imports the module
                    sub = f"{target}.{alias.name}"
                    deps.add(sub if sub in modules else target)
        graph[name] = {d for d in deps if d in modules and d != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles():
    assert find_cycle(import_graph()) is None


def test_each_layer_imports_only_the_layers_below_it():
    wrong = []
    for module, deps in import_graph().items():
        layer = _layer(module)
        for dep in deps:
            if _layer(dep) != layer and _layer(dep) not in ALLOWED[layer]:
                wrong.append(f"{module} -> {dep}")
    assert not wrong, wrong


def test_the_per_plane_pipeline_does_not_know_the_lazy_path():
    graph = import_graph()
    below = [f"{NAME}.restoration.{m}" for m in ("pipeline", "engine", "eager", "events", "cache")]
    for module in below:
        assert not any(".lazy" in dep for dep in graph[module]), module


@pytest.mark.parametrize("folder", sorted(p.parent.name for p in PACKAGE.glob("*/__init__.py")))
def test_each_folder_says_in_one_line_what_it_owns(folder):
    doc = ast.get_docstring(ast.parse((PACKAGE / folder / "__init__.py").read_text("utf-8")))
    assert doc and "\n" not in doc.strip(), folder


def _module_level_names(tree: ast.Module) -> set[str]:
    names = set()
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        names.update(t.id for t in targets if isinstance(t, ast.Name))
    return names


def mutated_module_state(source: str) -> set[str]:
    """Module-level names that a function of the module rebinds (``global``) or mutates in place."""
    tree = ast.parse(source)
    names = _module_level_names(tree)
    found, declared = set(), set()
    for func in (n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))):
        local = {a.arg for a in func.args.args + func.args.kwonlyargs}
        for node in ast.walk(func):
            if isinstance(node, ast.Global):
                declared.update(node.names)
            elif isinstance(node, (ast.Assign, ast.AugAssign, ast.Delete)):
                targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
                for t in targets:
                    if isinstance(t, ast.Subscript) and isinstance(t.value, ast.Name):
                        found.add(t.value.id)
                    elif isinstance(t, ast.Name):
                        local.add(t.id)
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and node.func.attr in MUTATORS and isinstance(node.func.value, ast.Name):
                found.add(node.func.value.id)
        found -= local
    return (found | declared) & names


def test_no_module_level_mutable_state_outside_the_engine_cache():
    offenders = {}
    for name, (path, _) in _modules().items():
        if name == f"{NAME}.restoration.cache":
            continue
        state = mutated_module_state(path.read_text("utf-8"))
        if state:
            offenders[name] = sorted(state)
    assert not offenders, offenders


def test_the_state_finder_sees_a_cache():
    import textwrap

    source = textwrap.dedent("""
        _CACHE = {}
        COUNT = 0
        def get(key):
            global COUNT
            COUNT += 1
            _CACHE.setdefault(key, 1)
            local = {}
            local["x"] = 1
    """)
    assert mutated_module_state(source) == {"_CACHE", "COUNT"}


def test_the_task_list_is_written_once():
    """Only core/tasks.py lists the tasks; the CLI, widgets, trainer, evaluation and model files read it."""
    tasks = {"denoise", "sr", "deblock"}
    found = []
    for name, (path, _) in _modules().items():
        if name == f"{NAME}.core.tasks":
            continue
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            items = node.keys if isinstance(node, ast.Dict) else getattr(node, "elts", None)
            if isinstance(node, (ast.Dict, ast.Tuple, ast.List, ast.Set)) and items:
                values = {i.value for i in items if isinstance(i, ast.Constant)}
                if tasks <= values:
                    found.append(f"{name}:{node.lineno}")
    assert not found, found


def test_the_cli_and_the_widgets_offer_the_registry_tasks():
    import argparse

    from napari_memnet.cli import build_parser
    from napari_memnet.core.tasks import TASK_NAMES, TASKS

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for command in ("restore", "eval", "models", "train"):
        task = next(a for a in sub.choices[command]._actions if "--task" in a.option_strings)
        assert tuple(task.choices) == TASK_NAMES, command
    from napari_memnet._widgets import layer_io, train_data

    assert layer_io.TASK_LABELS == {name: task.label for name, task in TASKS.items()}
    assert set(train_data.DEFAULT_LEVEL_TEXT) == set(TASK_NAMES)
