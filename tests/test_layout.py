"""The house rules DESIGN.md states, checked on the source tree."""

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "vitgan"
SOURCES = sorted(PKG.rglob("*.py"))


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in SOURCES}


def imports(path: Path) -> set[str]:
    """The vitgan modules ``path`` imports, at module level or inside a function: ``import a.b``
    and ``from a import b`` (b a module) name a.b; ``from a.b import name`` names a.b (the
    packages above a module run first either way and are not counted)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([node.module] if node.module else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in MODULES:  # import vitgan.x.y as z of a module; a name in a module
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


GRAPH = {name: imports(path) for name, path in MODULES.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle [a, b, ..., a] of ``graph``, or None (depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(v):
        state[v] = 1
        path.append(v)
        for w in sorted(graph.get(v, ())):
            if state.get(w) == 1:
                return path[path.index(w):] + [w]
            if w not in state and (cycle := visit(w)):
                return cycle
        state[v] = 2
        path.pop()
        return None

    for v in sorted(graph):
        if v not in state and (cycle := visit(v)):
            return cycle
    return None


def test_no_file_over_400_lines():
    long = {str(p.relative_to(PKG)): n for p in SOURCES if (n := len(p.read_text().splitlines())) > 400}
    assert not long


def test_torch_distributed_only_in_vitgan_distributed():
    hits = [str(p.relative_to(PKG)) for p in SOURCES if "torch.distributed" in p.read_text()]
    assert hits == ["distributed.py"]


def test_one_atomic_write_helper():
    """Only vitgan/files.py fsyncs and renames files into place."""
    for call in ("os.fsync", "os.replace", "os.rename", ".rename(", "shutil.move"):
        hits = [str(p.relative_to(PKG)) for p in SOURCES if call in p.read_text()]
        assert hits in ([], ["files.py"]), (call, hits)


def test_no_import_circle():
    """No vitgan module imports (at module level or in a function) one that imports it back,
    however long the circle."""
    assert find_cycle(GRAPH) is None, " -> ".join(find_cycle(GRAPH))


def test_the_cycle_finder_finds_circles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None
    assert "vitgan.train.options" in GRAPH["vitgan.train.trainer"]  # the graph sees real imports
    assert "vitgan.runs.source" in GRAPH["vitgan.commands.sample"]  # ... function-level ones too


#: the modules outside vitgan/train that may import it: they train (or time training) or show
#: the training options' declarations (`vitgan info --preset A --diff B`); they never read a run
#: folder through it
TRAINS = {"vitgan.commands.train", "vitgan.bench", "vitgan.commands.info"}


def test_reading_a_run_folder_needs_nothing_of_train():
    """sample, eval, export, inspect (and everything but the train command and the benchmark) read
    run folders through vitgan.runs; vitgan.runs itself never imports vitgan.train."""
    uses_train = {m for m, deps in GRAPH.items() if not m.startswith("vitgan.train")
                  and any(d == "vitgan.train" or d.startswith("vitgan.train.") for d in deps)}
    assert uses_train <= TRAINS, sorted(uses_train - TRAINS)
    assert not [m for m in uses_train if m.startswith("vitgan.runs")]


def test_imports_go_downward():
    """metrics, data, layers and the bottom modules never import train, commands or bench."""
    low = [p for p in SOURCES if p.parent.name in ("metrics", "data", "layers")
           or p.name in ("files.py", "distributed.py", "config.py", "errors.py", "option_types.py",
                         "option_spec.py", "presets.py")]
    up = ("vitgan.train", "vitgan.commands", "vitgan.bench", "from vitgan import train")
    bad = [str(p.relative_to(PKG)) for p in low if any(u in p.read_text() for u in up)]
    assert not bad


def test_presets_are_data():
    """The presets table imports nothing of vitgan (config reads it, not the other way round)."""
    text = (PKG / "presets.py").read_text()
    assert "import vitgan" not in text and "from vitgan" not in text
