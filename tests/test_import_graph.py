"""The package has no import cycle (a module that, through its imports, imports itself)."""
import ast
import os
import os.path as osp
from typing import Dict, List, Set

PACKAGE_DIR = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'fdclip_mm')


def module_names() -> Dict[str, str]:
    """Dotted module name -> file, for every module of the package (packages as their ``__init__``)."""
    modules = {}
    root = osp.dirname(PACKAGE_DIR)
    for folder, _, files in os.walk(PACKAGE_DIR):
        for name in files:
            if name.endswith('.py'):
                path = osp.join(folder, name)
                dotted = osp.relpath(path, root)[:-3].replace(os.sep, '.')
                modules[dotted[:-len('.__init__')] if dotted.endswith('.__init__') else dotted] = path
    return modules


def imports_of(name: str, path: str, modules: Dict[str, str]) -> Set[str]:
    """The package's modules that ``name`` imports at module level or in functions (any import counts)."""
    is_package = path.endswith('__init__.py')
    found = set()
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = name.split('.')
                base = parts[:len(parts) - node.level + (1 if is_package else 0)]
                module = '.'.join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ''
            # `from pkg import sub` imports the submodule when there is one, else a name of pkg's __init__
            targets = [
                f'{module}.{alias.name}' if f'{module}.{alias.name}' in modules else module for alias in node.names
            ]
        else:
            continue
        found.update(t for t in targets if t in modules and t != name)
    return found


def find_cycle(graph: Dict[str, Set[str]]) -> List[str]:
    state, stack = {}, []

    def visit(node: str) -> List[str]:
        state[node] = 'open'
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 'open':
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 'done'
        return []

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return []


def test_no_import_cycle():
    modules = module_names()
    graph = {name: imports_of(name, path, modules) for name, path in modules.items()}
    # A package's __init__ importing its submodules is an edge too: a submodule that imports its own package (or
    # anything that imports back into it) closes a cycle that Python resolves by the order of imports alone.
    cycle = find_cycle(graph)
    assert not cycle, 'import cycle: ' + ' -> '.join(cycle)


def test_the_cycle_finder_finds_one():
    assert find_cycle({'a': {'b'}, 'b': {'c'}, 'c': {'a'}, 'd': set()}) == ['a', 'b', 'c', 'a']
    assert find_cycle({'a': {'b'}, 'b': set()}) == []
