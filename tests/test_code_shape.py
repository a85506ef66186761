"""Production code a newcomer can read: every function short enough to see whole, with few parameters,
and no function a near-copy of another (one way to do each thing).

Read from the source with ast; tests/ and scripts/ are not production code.
"""

from __future__ import annotations

import ast
import hashlib

from test_layers import BUILDS_ON, REPO

MAX_LINES = 80
MAX_PARAMETERS = 8
# Bodies of at least this many statements (nested ones counted) are compared for near-copies.
MIN_COPY_STATEMENTS = 6
PRODUCTION = [*BUILDS_ON, "storyreel"]


def production_functions():
    for folder in PRODUCTION:
        for path in sorted((REPO / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(), str(path))
            for node in ast.walk(tree):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    yield f"{path.relative_to(REPO)}:{node.lineno} {node.name}", node


def parameter_count(node: ast.FunctionDef) -> int:
    args = node.args
    named = [a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs) if a.arg not in ("self", "cls")]
    return len(named) + (args.vararg is not None) + (args.kwarg is not None)


class _Anonymise(ast.NodeTransformer):
    """Names, attributes and constants become placeholders: what is left is the code's shape."""

    def visit_Name(self, node):
        return ast.copy_location(ast.Name(id="_", ctx=node.ctx), node)

    def visit_arg(self, node):
        return ast.copy_location(ast.arg(arg="_"), node)

    def visit_Attribute(self, node):
        self.generic_visit(node)
        return ast.copy_location(ast.Attribute(value=node.value, attr="_", ctx=node.ctx), node)

    def visit_Constant(self, node):
        return ast.copy_location(ast.Constant(value=0), node)


def shape(node: ast.FunctionDef) -> str | None:
    """A fingerprint of the function body's shape, or None for bodies too small to count as a copy."""
    body = ast.Module(body=[_Anonymise().visit(ast.parse(ast.unparse(s))).body[0] for s in node.body],
                      type_ignores=[])
    if sum(isinstance(n, ast.stmt) for n in ast.walk(body)) < MIN_COPY_STATEMENTS:
        return None
    return hashlib.sha1(ast.dump(body).encode()).hexdigest()


def test_functions_are_short_and_take_few_parameters():
    long = [f"{where} has {node.end_lineno - node.lineno + 1} lines" for where, node in production_functions()
            if node.end_lineno - node.lineno + 1 > MAX_LINES]
    wide = [f"{where} takes {parameter_count(node)} parameters" for where, node in production_functions()
            if parameter_count(node) > MAX_PARAMETERS]
    assert long + wide == []


def test_no_function_is_a_near_copy_of_another():
    seen: dict[str, str] = {}
    copies = []
    for where, node in production_functions():
        fingerprint = shape(node)
        if fingerprint is not None and fingerprint in seen:
            copies.append(f"{where} repeats {seen[fingerprint]}")
        seen.setdefault(fingerprint, where)
    assert copies == []


def test_the_checks_catch_what_they_look_for():
    source = ("def a(x, y):\n" + "".join(f"    x{i} = y + {i}\n" for i in range(6)) + "    return x\n"
              "def b(p, q):\n" + "".join(f"    p{i} = q + {i * 2}\n" for i in range(6)) + "    return p\n"
              "def c(a, b, c, d, e, f, g, h, i):\n    return a\n")
    a, b, c = ast.parse(source).body
    assert shape(a) == shape(b) is not None
    assert parameter_count(c) == 9 and parameter_count(a) == 2
