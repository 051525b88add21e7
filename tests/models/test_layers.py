"""One import direction: data -> superpixels -> models -> ssl / mapping -> workflows -> cli.

Read from the source (every import statement, also those inside functions), so the check costs
no import of torch.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import sarfuse

SRC = Path(sarfuse.__file__).parent
ABOVE = ("sarfuse.ssl", "sarfuse.mapping", "sarfuse.cli", "sarfuse.experiment", "sarfuse.demo")


def sarfuse_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
    return {n for n in names if n.startswith("sarfuse")}


@pytest.mark.parametrize(
    ("files", "above"),
    [
        (["superpixels.py"], ("sarfuse.models", *ABOVE)),
        ([f"models/{p.name}" for p in (SRC / "models").glob("*.py")], ABOVE),
    ],
)
def test_a_layer_imports_nothing_above_it(files, above):
    wrong = {f: sorted(n for n in sarfuse_imports(SRC / f) if n.startswith(above)) for f in files}
    assert {f: names for f, names in wrong.items() if names} == {}


def test_the_check_sees_imports_inside_functions(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from sarfuse.ssl import train\n")
    assert "sarfuse.ssl.train" in sarfuse_imports(module)
