"""No function in tf_biggan/ or benchmarks/ longer than MAX_LINES, unless its docstring says why.

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
REPO = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = REPO / "tf_biggan"
BENCHMARKS = REPO / "benchmarks"


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


def too_long(files, root: pathlib.Path = REPO):
    """'path:line name: N lines' (path relative to `root`) of every function in `files` over MAX_LINES
    whose docstring gives no REASON line."""
    found = []
    for path in files:
        for name, line, length, reason in function_lengths(path.read_text(encoding="utf-8"), str(path)):
            if length > MAX_LINES and not reason:
                found.append(f"{path.relative_to(root)}:{line} {name}: {length} lines")
    return found


def _check(files, least: int, where: pathlib.Path):
    assert len(files) >= least, f"found only {len(files)} files under {where}"
    found = too_long(files)
    assert not found, (
        f"functions over {MAX_LINES} lines: split them along their seams, or say why in a docstring line "
        f"starting {REASON!r}:\n  " + "\n  ".join(found))


def test_too_long_names_the_file_line_and_length_and_spares_a_stated_reason(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES - 1))  # + the def line = MAX_LINES
    (tmp_path / "a.py").write_text(
        f"def fits():\n{body}\n\n\ndef over():\n{body}\n    return 0\n\n\n"
        f'def excused():\n    """Doc.\n\n    {REASON} it is a test.\n    """\n{body}\n')
    assert too_long([tmp_path / "a.py"], tmp_path) == [f"a.py:{MAX_LINES + 3} over: {MAX_LINES + 1} lines"]


def test_no_function_in_the_package_is_over_80_lines_without_a_stated_reason():
    _check(sorted(PACKAGE.rglob("*.py")), 20, PACKAGE)


def test_no_function_in_the_benchmarks_is_over_80_lines_without_a_stated_reason():
    # The benchmarks are read and carried on like the package (docs/results.md cites their figures):
    # the same rule, for every .py under benchmarks/ (the modules they share included).
    _check(sorted(BENCHMARKS.rglob("*.py")), 10, BENCHMARKS)
