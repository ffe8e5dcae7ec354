"""The step and the loop are wired through constructors and the one StepParts list, never by patching:
no `setattr` and no assignment to an attribute of anything but `self` in tf_biggan/training/ and
tf_biggan/augment/ (an object changes its own fields in its own methods; another object's it changes
through that object's methods). Pure ast: no import of the package."""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGES = ("tf_biggan/training", "tf_biggan/augment")

# (path, enclosing function, target as written) -> why it cannot be avoided. Empty: nothing needs it.
# Not listed because not an attribute assignment: a tf.Variable's `.assign` / `.assign_add`, a list's
# `.append`, a dataclass built with its fields (`StepParts(latents=...)`, `dataclasses.replace`).
ALLOWED = {}


def patches(source: str, path: str = "<snippet>", allowed=None) -> list:
    """'path:line: function: what' for every setattr/delattr call and every assignment (=, +=, :=-free
    annotated, del) to an attribute of anything but the bare name `self`, outside `allowed`."""
    allowed = ALLOWED if allowed is None else allowed
    found, scope = [], ["<module>"]

    def report(node, what):
        if (path, scope[-1], what) not in allowed:
            found.append(f"{path}:{node.lineno}: {scope[-1]}: {what}")

    def targets(node):
        """The attribute targets a statement assigns or deletes (through tuples, lists and stars)."""
        if isinstance(node, (ast.Tuple, ast.List)):
            for elt in node.elts:
                yield from targets(elt)
        elif isinstance(node, ast.Starred):
            yield from targets(node.value)
        elif isinstance(node, ast.Attribute):
            yield node
        elif isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute) and node.value.attr == "__dict__":
            yield node.value  # obj.__dict__[name] = ...

    class Visitor(ast.NodeVisitor):
        def visit_FunctionDef(self, node):
            scope.append(node.name)
            self.generic_visit(node)
            scope.pop()

        visit_AsyncFunctionDef = visit_FunctionDef

        def visit_Call(self, node):
            func = node.func
            if (isinstance(func, ast.Name) and func.id in ("setattr", "delattr")) or (
                    isinstance(func, ast.Attribute) and func.attr in ("__setattr__", "__delattr__")):
                report(node, ast.unparse(func))
            self.generic_visit(node)

        def check(self, node, nodes):
            for target in nodes:
                for attr in targets(target):
                    if not (isinstance(attr.value, ast.Name) and attr.value.id == "self"):
                        report(node, ast.unparse(attr))
            self.generic_visit(node)

        def visit_Assign(self, node):
            self.check(node, node.targets)

        def visit_AugAssign(self, node):
            self.check(node, [node.target])

        def visit_AnnAssign(self, node):
            self.check(node, [node.target])

        def visit_Delete(self, node):
            self.check(node, node.targets)

        def visit_For(self, node):
            self.check(node, [node.target])

        def visit_With(self, node):
            self.check(node, [item.optional_vars for item in node.items if item.optional_vars is not None])

    Visitor().visit(ast.parse(source))
    return found


def test_training_and_augment_set_no_attribute_from_outside():
    files = [p for package in PACKAGES for p in sorted((ROOT / package).glob("*.py"))]
    assert len(files) > 15
    found = [hit for p in files for hit in patches(p.read_text(), str(p.relative_to(ROOT)))]
    assert not found, "set through a constructor argument, a StepParts part or a method of the object:\n" + \
        "\n".join(found)


def test_allow_list_entries_are_still_needed():
    for (path, function, what), reason in ALLOWED.items():
        assert reason and (ROOT / path).exists(), path
        source = (ROOT / path).read_text()
        assert any(hit.endswith(f": {function}: {what}") for hit in patches(source, path, allowed={})), \
            f"{path}: {function}: {what} is allowed but no longer there: drop it from ALLOWED"


@pytest.mark.parametrize("snippet, what", [
    ("trainer.sigma0_before_clamp = None", "<module>: trainer.sigma0_before_clamp"),
    ("def parts(state):\n    state.heldout = make()", "parts: state.heldout"),
    ("def d_inputs(x):\n    def inner():\n        d.dropout_key = k\n    return x", "inner: d.dropout_key"),
    ("class T:\n    def __init__(self, s):\n        self.step = s\n        self.step.before_first_run = f",
     "__init__: self.step.before_first_run"),
    ("def log(state):\n    state.step += 1", "log: state.step"),
    ("def f(a):\n    x, a.b = 1, 2", "f: a.b"),
    ("def f(a):\n    del a.b", "f: a.b"),
    ("def f(a):\n    for a.i in range(3):\n        pass", "f: a.i"),
    ("def f(a):\n    setattr(a, 'warned_at_cap', True)", "f: setattr"),
    ("def f(a):\n    object.__setattr__(a, 'x', 1)", "f: object.__setattr__"),
    ("def f(a):\n    a.__dict__['x'] = 1", "f: a.__dict__"),
])
def test_the_rule_catches_patching(snippet, what):
    (hit,) = patches(snippet)
    assert hit.split(":", 2)[2].strip() == what


def test_the_rule_lets_objects_change_themselves():
    source = """
class Knobs:
    def __init__(self, v):
        self.value = v
        self.count: int = 0

    def bump(self, n):
        self.count += n
        self.value.assign(n)  # a tf.Variable's value: a method call
        parts = {}
        parts["latents"] = n
        items = []
        items.append(n)
        x, y = n, n
        return x, y
"""
    assert patches(source) == []
    allowed = {("<snippet>", "f", "a.b"): "a reason"}
    assert patches("def f(a):\n    a.b = 1", allowed=allowed) == []
