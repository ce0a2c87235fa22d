"""The package's shape: modules import one another without a cycle (function-level imports
included: a cycle hidden inside a function still ties the two modules together) and no
function is longer than a reader can hold (80 lines)."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "scalarbp"
LONGEST = 80


def modules():
    """``{dotted name: path}`` of every module of the package."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(name, path, known):
    """The package's modules that module ``name`` imports anywhere in its source, and the
    packages above them (importing ``a.b.c`` runs ``a.b``)."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            targets = [f"{module}.{alias.name}" if f"{module}.{alias.name}" in known else module
                       for alias in node.names]
        else:
            continue
        for target in targets:
            parts = target.split(".")
            found.update(".".join(parts[:k]) for k in range(2, len(parts) + 1) if ".".join(parts[:k]) in known)
    return {module for module in found if module != name and not name.startswith(module + ".")}


def cycle(graph):
    """One cycle of the graph as a list of modules, or None (depth-first search)."""
    state, stack = {}, []

    def visit(module):
        state[module] = "open"
        stack.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                return stack[stack.index(target):] + [target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        state[module] = "done"
        stack.pop()
        return None

    for module in sorted(graph):
        if module not in state:
            found = visit(module)
            if found:
                return found
    return None


def test_no_module_imports_itself_through_others():
    known = modules()
    graph = {name: imports(name, path, known) for name, path in known.items()}
    found = cycle(graph)
    assert found is None, "import cycle: " + " -> ".join(found)


def test_the_cycle_check_finds_a_function_level_cycle():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": set()}) is None
    source = PACKAGE / "training" / "loop.py"
    assert "scalarbp.backends" in imports("scalarbp.training.loop", source, modules())


def longer_than(limit, known):
    """``name: lines`` of every function (methods and nested ones included) over ``limit`` lines."""
    found = []
    for name, path in sorted(known.items()):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > limit:
                    found.append(f"{name}.{node.name}: {lines} lines")
    return found


def test_no_function_is_longer_than_a_reader_can_hold():
    assert longer_than(LONGEST, modules()) == []


def test_the_length_check_counts_a_function_from_def_to_its_last_line(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("def short():\n    return 1\n\n\n"
                      "class C:\n    def long(self):\n        a = 1\n\n        return a\n")
    assert longer_than(3, {"m": source}) == ["m.long: 4 lines"]
    assert longer_than(4, {"m": source}) == []
