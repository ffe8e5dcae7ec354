"""tf_biggan/host/malloc.py: which allocator the CLI re-executes itself with, and its errors.

The CLI end of it (the re-executed process really runs on the library, recorded as train_report's
`malloc`) is checked in tests/test_cli.py's scenario; here the choice, the environment it builds and
the one-line errors, the last through the real console script."""

import os
import subprocess
import sys

import pytest

from tf_biggan.host import malloc


def fake_lib(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"\x7fELF")
    return str(path)


def test_default_is_glibc_and_auto_prefers_tcmalloc_then_mimalloc(tmp_path, monkeypatch):
    tc, mi = fake_lib(tmp_path, "libtcmalloc_minimal.so.4"), fake_lib(tmp_path, "libmimalloc.so.3")
    monkeypatch.setattr(malloc, "_wheel_mimalloc", lambda: None)
    monkeypatch.setattr(malloc, "SYSTEM_DIRS", (str(tmp_path),))
    assert malloc.choose({}) is None  # the default: glibc, the lean footprint
    assert malloc.choose({malloc.ENV: "auto"}) == tc
    assert malloc.choose({malloc.ENV: "mimalloc"}) == mi
    os.remove(tc)
    assert malloc.choose({malloc.ENV: "auto"}) == mi
    os.remove(mi)
    assert malloc.choose({malloc.ENV: "auto"}) is None  # nothing installed: glibc, no error
    assert malloc.choose({malloc.ENV: "system"}) is None


def test_wheel_mimalloc_is_found_where_pip_put_it():
    """requirements.txt installs cmeel-mimalloc: its library is a real file the loader can map."""
    path = malloc._wheel_mimalloc()
    assert path is not None and os.path.basename(path).startswith("libmimalloc.so") and os.path.isfile(path)


def test_preload_environ_puts_the_library_first_and_respects_a_users_preload(tmp_path, monkeypatch):
    lib = fake_lib(tmp_path, "libtcmalloc_minimal.so.4")
    monkeypatch.setattr(malloc, "SYSTEM_DIRS", (str(tmp_path),))
    auto = {malloc.ENV: "auto"}
    assert malloc.preload_environ({"A": "1"}) == {"A": "1"}  # default: nothing preloaded
    assert malloc.preload_environ({"A": "1", **auto}) == {"A": "1", **auto, "LD_PRELOAD": lib}
    assert malloc.preload_environ({"LD_PRELOAD": "/x/libfoo.so", **auto})["LD_PRELOAD"] == f"{lib}:/x/libfoo.so"
    users = {"LD_PRELOAD": "/opt/libjemalloc.so.2", **auto}
    assert malloc.preload_environ(users) == users  # the user's own malloc wins
    with pytest.raises(malloc.MallocError):  # but a bad setting is still named
        malloc.preload_environ({"LD_PRELOAD": "/opt/libjemalloc.so.2", malloc.ENV: "nonsense"})
    assert malloc.preload_environ({malloc.ENV: "system"}) == {malloc.ENV: "system"}
    assert malloc.preload_environ({malloc.ENV: lib})["LD_PRELOAD"] == lib


@pytest.mark.parametrize("setting, words", [
    ("tcmalloc_x", ["not one of", "auto", "system"]),
    ("/nonexistent/libfoo.so", ["no such file"]),
])
def test_bad_settings_name_the_variable_and_the_fix(setting, words):
    with pytest.raises(malloc.MallocError) as info:
        malloc.choose({malloc.ENV: setting})
    assert malloc.ENV in str(info.value) and all(w in str(info.value) for w in words)


def test_a_named_allocator_that_is_missing_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(malloc, "SYSTEM_DIRS", ())
    monkeypatch.setattr(malloc, "_wheel_mimalloc", lambda: None)
    with pytest.raises(malloc.MallocError, match="apt-get install libtcmalloc-minimal4"):
        malloc.choose({malloc.ENV: "tcmalloc"})
    with pytest.raises(malloc.MallocError, match="pip install cmeel-mimalloc"):
        malloc.choose({malloc.ENV: "mimalloc"})


def test_active_reads_this_process_and_a_preloaded_child():
    """The interpreter running pytest is on glibc; a child started with the environment
    preload_environ builds maps the library (the wheel's mimalloc: a real one on every machine)."""
    assert malloc.active() == "glibc"
    code = "import runpy; m = runpy.run_path(%r); print(m['active']())" % malloc.__file__
    base = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    for setting, expected in (("mimalloc", "mimalloc"), ("system", "glibc")):
        env = malloc.preload_environ(dict(base, **{malloc.ENV: setting}))
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        assert out.stdout.strip() == expected, (setting, env.get("LD_PRELOAD"))


def test_cli_refuses_a_bad_setting_in_one_line_before_importing_tensorflow():
    env = dict(os.environ, **{malloc.ENV: "/nonexistent/libtcmalloc.so"})
    env.pop("_TF_BIGGAN_REEXEC", None)
    out = subprocess.run([sys.executable, "-m", "tf_biggan.main", "--mode=summary"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        f"tf-biggan: error: {malloc.ENV}=/nonexistent/libtcmalloc.so: no such file; give a shared library's "
        f"path, or auto, system, tcmalloc, mimalloc, jemalloc"]


def test_module_prints_the_library_to_preload():
    run = lambda *a: subprocess.run([sys.executable, "-m", "tf_biggan.host.malloc", *a], capture_output=True, text=True)
    out = run("mimalloc")
    assert out.returncode == 0 and out.stdout.strip() == malloc.find("mimalloc")
    out = run("system")
    assert out.returncode == 0 and out.stdout == ""
    out = run("nonsense")
    assert out.returncode == 2 and "TF_BIGGAN_MALLOC='nonsense' is not one of" in out.stderr
