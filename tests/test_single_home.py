"""Each default has one home: the dataclass (or module constant) that owns it.

Walks the source with ``ast``: a function parameter named after a configured quantity may not carry
its own literal default (it would be a second copy that can drift), and the ignore value 255 is
written only where it is defined (``schemes.IGNORE_INDEX``) or as a named constant.
"""

from __future__ import annotations

import ast
from pathlib import Path

import sarfuse

SRC = Path(sarfuse.__file__).parent
CONFIGURED = {"tile", "overlap", "patch_size", "width", "feat_dim", "temperature", "tau_plus",
              "beta", "batch_tiles", "indices"}  # fmt: skip


def _modules() -> list[tuple[Path, ast.Module]]:
    return [(p, ast.parse(p.read_text())) for p in sorted(SRC.rglob("*.py"))]


def _literal(node: ast.AST | None) -> bool:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float | str | tuple):
        return node.value is not None and not isinstance(node.value, bool)
    # an empty tuple means "none" (no indices), not a value that could drift
    return isinstance(node, ast.Tuple) and bool(node.elts) and all(_literal(e) for e in node.elts)


def _parameter_defaults(fn: ast.FunctionDef | ast.AsyncFunctionDef):
    args = fn.args
    positional = args.posonlyargs + args.args
    yield from zip(positional[len(positional) - len(args.defaults) :], args.defaults, strict=True)
    yield from ((a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True) if d)


def test_no_function_repeats_a_configured_default():
    found = []
    for path, tree in _modules():
        for fn in ast.walk(tree):
            if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                for arg, default in _parameter_defaults(fn):
                    if arg.arg in CONFIGURED and _literal(default):
                        where = f"{path.relative_to(SRC)}:{fn.lineno}"
                        found.append(f"{where} {fn.name}({arg.arg}=...)")
    assert not found, "defaults written outside their config dataclass:\n" + "\n".join(found)


def test_the_ignore_value_is_written_once():
    found = []
    for path, tree in _modules():
        named = {  # every constant inside a module-level NAME = ... is a named one
            id(inner)
            for node in tree.body
            if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None
            for inner in ast.walk(node.value)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and node.value == 255 and id(node) not in named:
                found.append(f"{path.relative_to(SRC)}:{node.lineno}")
    assert not found, "a bare 255 (use IGNORE_INDEX or a named constant):\n" + "\n".join(found)


def test_the_test_sees_a_repeated_default(tmp_path):
    """The check itself can fail: a function with its own tile default is caught."""
    tree = ast.parse("def f(tile=512, *, overlap=64, name='x'):\n    pass\n")
    fn = tree.body[0]
    caught = [a.arg for a, d in _parameter_defaults(fn) if a.arg in CONFIGURED and _literal(d)]
    assert caught == ["tile", "overlap"]
