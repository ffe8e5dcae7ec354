"""No function in tf_biggan/ longer than MAX_LINES, unless its docstring says why.

A long function usually does several jobs; split it along its seams (e.g. plan / write / report).
Where one job is long by nature, the docstring states it in a line starting with REASON ("Longer
than 80 lines because ..."), so the exception is visible where the function is read.

Length counts every line from the `def` line to the function's last line: docstring, comments,
blank lines and nested functions included, decorators excluded. A nested function or a method is
checked on its own as well. Pure `ast`: no TensorFlow import, well under a second.
"""

import ast
import pathlib
import textwrap

MAX_LINES = 80
REASON = "Longer than 80 lines because"
PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "tf_biggan"


def function_lengths(source: str, filename: str = "<string>"):
    """[(qualified name, first line, lines, reason given)] of every function in `source`."""
    found = []

    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            name = prefix
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = f"{prefix}{child.name}"
                doc = ast.get_docstring(child) or ""
                reason = any(line.strip().startswith(REASON) for line in doc.splitlines())
                found.append((name, child.lineno, child.end_lineno - child.lineno + 1, reason))
                name += "."
            elif isinstance(child, ast.ClassDef):
                name = f"{prefix}{child.name}."
            visit(child, name)

    visit(ast.parse(source, filename), "")
    return found


def test_the_count_is_def_line_to_last_line_and_the_reason_must_open_a_line():
    source = textwrap.dedent('''
        @decorator
        def outer():
            """Doc.

            Longer than 80 lines because it is a test.
            """

            def inner():
                """Mentions that it is Longer than 80 lines because of nothing."""
                return 1
            return inner


        class A:
            async def method(self):
                pass
        ''')
    assert function_lengths(source) == [("outer", 3, 10, True), ("outer.inner", 9, 3, False),
                                        ("A.method", 16, 2, False)]


def test_no_function_in_the_package_is_over_80_lines_without_a_stated_reason():
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 20, f"found only {len(files)} files under {PACKAGE}"
    too_long = []
    for path in files:
        for name, line, length, reason in function_lengths(path.read_text(encoding="utf-8"), str(path)):
            if length > MAX_LINES and not reason:
                too_long.append(f"{path.relative_to(PACKAGE.parent)}:{line} {name}: {length} lines")
    assert not too_long, (
        f"functions over {MAX_LINES} lines: split them along their seams, or say why in a docstring line "
        f"starting {REASON!r}:\n  " + "\n  ".join(too_long))
