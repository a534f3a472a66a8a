"""The house rules that ruff cannot check, counted from the source (issue 28):

* imports of the package's own modules inside a function, outside ``cli.py`` (its
  dispatch imports the module of the command it runs);
* import cycles among the package's modules, counting every import wherever it sits;
* functions longer than ``MAX_LINES`` lines.

Usage: python tools/check_layers.py [--strict] [src/analysis]

Exit status 1 for an import inside a function or a cycle; long functions are listed (the
issue-28 debt) and fail only with ``--strict``.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

MAX_LINES = 100
PACKAGE = "analysis"


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported(node: ast.AST, here: str, is_package: bool) -> list[str]:
    """The package's own modules an import statement names (relative ones resolved)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == PACKAGE]
    if isinstance(node, ast.ImportFrom):
        if node.level:
            base = here.split(".") if is_package else here.split(".")[:-1]
            base = base[: len(base) - (node.level - 1)]
            mod = ".".join(base + ([node.module] if node.module else []))
        else:
            mod = node.module or ""
        if mod.split(".")[0] != PACKAGE:
            return []
        return [mod] + [f"{mod}.{a.name}" for a in node.names]
    return []


def _visit(node, in_function, mod, path, modules, graph, inner, long):
    is_package = path.name == "__init__.py"
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            names = [n for n in imported(child, mod, is_package) if n in modules]
            # "from analysis import x" names the package and maybe module x
            targets = [n for n in names if n != PACKAGE] or names
            graph[mod].update(t for t in targets if t != mod)
            if in_function and targets and path.name != "cli.py":
                inner.append(f"{path}:{child.lineno}: {', '.join(targets)}")
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
            n = child.end_lineno - child.lineno + 1
            if n > MAX_LINES:
                long.append(f"{path}:{child.lineno}: {child.name} ({n} lines)")
            _visit(child, True, mod, path, modules, graph, inner, long)
        else:
            _visit(child, in_function, mod, path, modules, graph, inner, long)


def scan(root: Path):
    modules = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    inner, long = [], []
    for mod, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        _visit(tree, False, mod, path, modules, graph, inner, long)
    # a package's __init__ imported by its submodules is not a cycle of interest
    for mod in graph:
        graph[mod] = {t for t in graph[mod] if not mod.startswith(t + ".")}
    return graph, inner, long


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in graph:
        if v not in index:
            strong(v)
    return out


def main(argv: list[str]) -> int:
    strict = "--strict" in argv
    argv = [a for a in argv if a != "--strict"]
    root = Path(argv[0] if argv else "src/analysis")
    graph, inner, long = scan(root)
    found = cycles(graph)
    for line in inner:
        print(f"import inside a function: {line}")
    for comp in found:
        print(f"import cycle: {' <-> '.join(comp)}")
    for line in long:
        print(f"function over {MAX_LINES} lines: {line}")
    print(f"{len(inner)} imports inside functions, {len(found)} cycles, "
          f"{len(long)} functions over {MAX_LINES} lines")  # fmt: skip
    return 1 if inner or found or (strict and long) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
