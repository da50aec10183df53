"""The package's imports point one way: no cycle, and no layer imports a layer above it.

:data:`LAYERS` is where the order of the package's layers is written, lowest first.
"""
import ast
import os
import os.path as osp
from typing import Dict, List, Set

PACKAGE_DIR = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'fdclip_mm')

#: The package's top-level modules and subpackages by layer, lowest first (``__init__``: the package itself). A
#: module may import its own layer and the layers below it, never one above; docs/en/notes/layout.md describes them.
LAYERS = (
    ('version', 'registry', 'precision', 'file_identity'),
    ('checkpoint', ),
    ('datasets', ),
    ('models', ),  # a teacher reads its file through the TEACHER_READERS registry, never from converters
    ('converters', 'evaluation', 'analysis'),
    ('engine', ),
    ('config_inheritance', 'model_index', '__init__'),
)


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


def layer_of(module: str) -> int:
    """Index in :data:`LAYERS` of a dotted module name of the package."""
    parts = module.split('.')
    top = parts[1] if len(parts) > 1 else '__init__'
    for index, layer in enumerate(LAYERS):
        if top in layer:
            return index
    raise KeyError(f'{module}: fdclip_mm.{top} has no place in LAYERS')


def upward_imports(graph: Dict[str, Set[str]]) -> List[str]:
    """``'a -> b'`` for every import of a module ``b`` in a higher layer than ``a``'s."""
    return sorted(f'{a} -> {b}' for a, targets in graph.items() for b in targets if layer_of(b) > layer_of(a))


def test_every_module_has_a_layer():
    for name in module_names():
        layer_of(name)


def test_no_layer_imports_a_higher_one():
    modules = module_names()
    graph = {name: imports_of(name, path, modules) for name, path in modules.items()}
    upward = upward_imports(graph)
    assert not upward, f'{len(upward)} imports of a higher layer (see LAYERS):\n' + '\n'.join(upward)


def test_the_layer_check_finds_an_upward_import():
    graph = {'fdclip_mm.models.x': {'fdclip_mm.checkpoint.y'}, 'fdclip_mm.checkpoint.y': {'fdclip_mm.engine.z'}}
    graph['fdclip_mm.engine.z'] = {'fdclip_mm.models.x', 'fdclip_mm'}
    assert upward_imports(graph) == ['fdclip_mm.checkpoint.y -> fdclip_mm.engine.z', 'fdclip_mm.engine.z -> fdclip_mm']
