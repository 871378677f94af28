"""The layout is the architecture: data flows one way, from readers to the codec to the tools
on top. Every import between tinc's modules (those inside functions too) must point to the
same layer or a lower one, and no module may reach itself through its imports."""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "src" / "tinc"

# Lowest first. A package (nodes, training, bench) is one component; its modules may import
# each other, but not in a cycle.
LAYERS = [
    ["errors", "bitstream", "boxes", "progress", "metrics", "plots"],
    ["sorted_runs", "residual_tables", "residual_coder", "axes", "rescale", "dicom", "dicom_decoders", "volume"],  # the coders under coding and correction; readers
    ["io", "ome_zarr", "partition", "config", "devices"],  # readers and writers; the tree's geometry
    ["nodes"],
    ["tree"],  # what a file's architecture is
    ["model", "coding", "correction"],
    ["format"],  # the decoder's contract
    ["container", "values"],
    ["decoder", "entropy", "allocation"],
    ["training"],
    ["encoder"],
    ["target"],
    ["codec"],
    ["zarr_codec"],
    ["zarr_store", "chunk_budget", "chunk_starts", "chunk_report"],
    ["decode"],  # lazy arrays and decoded outputs
    ["chunked"],  # chunk work on Dask
    ["napari_reader", "bench"],
    ["cli_options"],
    ["cli"],
    ["__init__"],
]
LAYER_OF = {name: index for index, names in enumerate(LAYERS) for name in names}


def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1]) if parts[-1] == "__init__" and len(parts) > 1 else ".".join(parts)


def _component(module: str) -> str:
    return module.split(".")[0]


def _is_type_checking(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def _imports(path: pathlib.Path) -> set[str]:
    """tinc modules `path` imports, resolved to module names ("training.loop", "codec")."""
    module = _module_name(path)
    package = module.split(".") if path.name == "__init__.py" and module != "__init__" else module.split(".")[:-1]
    found = set()

    def visit(node):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                continue  # annotations only: no import at run time
            if isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package[: len(package) - (child.level - 1)] if child.level > 1 else package
                    target = base + (child.module.split(".") if child.module else [])
                elif child.module and child.module.split(".")[0] == "tinc":
                    target = child.module.split(".")[1:]
                else:
                    target = None
                if target is not None:
                    for alias in child.names:  # `from . import coding` names a module
                        candidate = ".".join(target + [alias.name])
                        found.add(candidate if _exists(candidate) else ".".join(target))
            elif isinstance(child, ast.Import):
                for alias in child.names:
                    if alias.name.split(".")[0] == "tinc":
                        found.add(".".join(alias.name.split(".")[1:]) or "__init__")
            visit(child)

    visit(ast.parse(path.read_text()))
    return {name for name in found if name and name != module}


def _exists(module: str) -> bool:
    base = PACKAGE.joinpath(*module.split("."))
    return base.with_suffix(".py").exists() or (base / "__init__.py").exists()


GRAPH = {_module_name(path): _imports(path) for path in sorted(PACKAGE.rglob("*.py"))}


def test_every_module_is_in_a_layer():
    assert sorted({_component(m) for m in GRAPH} - set(LAYER_OF)) == []


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_imports_point_down_or_across(module):
    upward = [target for target in GRAPH[module]
              if _component(target) != _component(module) and LAYER_OF[_component(target)] > LAYER_OF[_component(module)]]
    assert upward == [], f"{module} imports from a higher layer"


def test_no_import_cycles():
    state, cycles = {}, []

    def walk(module, stack):
        state[module] = "open"
        for target in sorted(GRAPH.get(module, ())):
            if state.get(target) == "open":
                cycles.append(stack[stack.index(target):] + [target])
            elif target not in state:
                walk(target, stack + [target])
        state[module] = "done"

    for module in sorted(GRAPH):
        if module not in state:
            walk(module, [module])
    assert cycles == []


def test_the_import_reader_sees_imports_inside_functions_and_of_submodules():
    # the checks above pass trivially if no import is found
    assert {"encoder", "target", "decoder", "config"} <= GRAPH["codec"]
    assert {"training.checkpoint", "training.policies", "training.starts", "entropy"} <= GRAPH["training.loop"]
    assert "correction" in GRAPH["decoder"]  # imported inside a method


MAX_MODULE_LINES, MAX_FUNCTION_LINES = 420, 60  # "about 400" and "about 60": each readable in one sitting


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_and_functions_stay_small(path):
    source = path.read_text()
    assert len(source.splitlines()) <= MAX_MODULE_LINES
    long = [(node.name, node.end_lineno - node.lineno + 1) for node in ast.walk(ast.parse(source))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert long == []


def _reachable(module: str) -> set[str]:
    seen, stack = set(), [module]
    while stack:
        for target in GRAPH.get(stack.pop(), ()):
            if target not in seen:
                seen.add(target)
                stack.append(target)
    return seen


def test_decoding_needs_neither_the_configuration_nor_the_training():
    reached = {_component(m) for m in _reachable("decoder")}
    assert {"format", "container", "model", "coding"} <= reached
    assert not reached & {"config", "training", "entropy", "allocation", "encoder", "codec"}
