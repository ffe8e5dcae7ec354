"""Which malloc the `tf-biggan` process runs on: speed of the training step on CPU hosts.

TF's CPU kernels allocate and free every activation of a step: tensors of 1-100 MB at BigGAN-128.
With glibc, host/memory.py's 1 MB mmap threshold makes each freed large tensor go back to the OS
(that is what keeps the resident set at the live tensors), so the next step's tensors arrive as
fresh pages the kernel must fault in and zero. A caching allocator (tcmalloc, mimalloc) keeps freed
pages mapped and hands them to the next tensor, so the step runs faster, and its resident set is
the live tensors plus what the allocator holds free at the peak. The trade, measured at BigGAN-128
batch 8 with benchmarks/bench_memory_speed.py (docs/results.md): tcmalloc about 1.2-1.4x faster per
iteration, 0.3-0.5 GiB more at the peak. The default stays glibc (the lean footprint); the speed
is one environment variable away: tf_biggan's only setting that is an environment variable rather
than a flag or hparam, because it must act before Python starts (docs/configuration.md's table).

The allocator must be in place before the first malloc of the process, so it cannot be switched
from Python: the console script re-executes itself once with LD_PRELOAD naming the library
(`reexec_with_preload`, first thing in `main.run`, before TensorFlow is imported). Child processes
(multi-worker workers, subprocesses) inherit it. TF_BIGGAN_MALLOC chooses:

  system (default) glibc's malloc, with host/memory.py's settings
  tcmalloc | mimalloc | jemalloc   that one; an error naming the package if it is not installed
                  (tcmalloc: Debian/Ubuntu libtcmalloc-minimal4; mimalloc: the cmeel-mimalloc wheel
                  that requirements.txt installs, or a system libmimalloc)
  auto            tcmalloc if the system has it, else mimalloc, else glibc
  /path/to/lib.so that file

A user's own LD_PRELOAD that already names a malloc library wins; nothing is re-executed.
Importing tf_biggan from Python (a notebook, the tests) keeps the interpreter's malloc; preload one
yourself with LD_PRELOAD=$(python3 -m tf_biggan.host.malloc tcmalloc) python3 ... . `active()` says which
malloc a process runs on (train_report.json records it as `malloc`).
"""

from __future__ import annotations

import os
import sys
from typing import Dict, Mapping, Optional

ENV = "TF_BIGGAN_MALLOC"
REEXEC_MARKER = "_TF_BIGGAN_REEXEC"  # set on the re-executed process: it must not re-execute again
# Library file names per allocator, and the system directories they are looked for in.
NAMES = {
    "tcmalloc": ("libtcmalloc_minimal.so.4", "libtcmalloc.so.4"),
    "mimalloc": ("libmimalloc.so.3", "libmimalloc.so.2", "libmimalloc.so"),
    "jemalloc": ("libjemalloc.so.2", "libjemalloc.so"),
}
SYSTEM_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib",
               "/usr/local/lib", "/lib/x86_64-linux-gnu", "/lib64")
# How to install each one, for the error when a named allocator is missing.
INSTALL = {"tcmalloc": "apt-get install libtcmalloc-minimal4", "mimalloc": "pip install cmeel-mimalloc",
           "jemalloc": "apt-get install libjemalloc2"}
AUTO_ORDER = ("tcmalloc", "mimalloc")  # the order measured fastest (bench_memory_speed.py)
DEFAULT = "system"


class MallocError(ValueError):
    """TF_BIGGAN_MALLOC names something that cannot be loaded (the message says what to do)."""


def _wheel_mimalloc() -> Optional[str]:
    """libmimalloc from the cmeel-mimalloc wheel (site-packages/cmeel.prefix/lib), if installed."""
    try:
        from importlib import metadata

        files = metadata.files("cmeel-mimalloc") or ()
    except Exception:  # noqa: BLE001 (not installed, or broken metadata: no wheel library)
        return None
    for name in NAMES["mimalloc"]:
        for f in files:
            if f.name == name:
                path = str(f.locate())
                if os.path.exists(path):
                    return path
    return None


def find(kind: str) -> Optional[str]:
    """The path of allocator `kind` on this machine, or None."""
    if kind == "mimalloc":
        wheel = _wheel_mimalloc()
        if wheel:
            return wheel
    for directory in SYSTEM_DIRS:
        for name in NAMES[kind]:
            path = os.path.join(directory, name)
            if os.path.exists(path):
                return path
    return None


def choose(environ: Mapping[str, str] = os.environ) -> Optional[str]:
    """The library TF_BIGGAN_MALLOC asks for (None: glibc). Raises MallocError naming the fix."""
    setting = environ.get(ENV, DEFAULT).strip() or DEFAULT
    if setting == "system":
        return None
    if setting == "auto":
        return next((p for p in (find(k) for k in AUTO_ORDER) if p), None)
    if setting in NAMES:
        path = find(setting)
        if path is None:
            raise MallocError(f"{ENV}={setting}: no {setting} library found ({INSTALL[setting]}), "
                              f"or set {ENV}=auto or system")
        return path
    if os.sep in setting:
        if not os.path.isfile(setting):
            raise MallocError(f"{ENV}={setting}: no such file; give a shared library's path, or auto, "
                              f"system, {', '.join(NAMES)}")
        return setting
    raise MallocError(f"{ENV}={setting!r} is not one of auto, system, {', '.join(NAMES)} or a library's path")


def _names_malloc(preload: str) -> bool:
    return any(k in os.path.basename(p) for p in preload.replace(":", " ").split() for k in NAMES)


def preload_environ(environ: Mapping[str, str] = os.environ) -> Dict[str, str]:
    """`environ` with the chosen allocator put first in LD_PRELOAD (unchanged when glibc is asked
    for, or when LD_PRELOAD already names a malloc library)."""
    env = dict(environ)
    preload = env.get("LD_PRELOAD", "")
    path = choose(env)  # a bad setting is an error even where the user's preload wins
    if _names_malloc(preload):
        return env
    if path is not None:
        env["LD_PRELOAD"] = f"{path}:{preload}" if preload else path
    return env


def reexec_with_preload() -> None:
    """Re-executes this command (sys.orig_argv) once with the allocator preloaded; returns when
    nothing needs doing. A bad TF_BIGGAN_MALLOC prints one line and exits 2, like every user error."""
    if not sys.platform.startswith("linux") or os.environ.get(REEXEC_MARKER):
        return  # LD_PRELOAD is the Linux loader's; the marker stops a second attempt
    try:
        env = preload_environ()
    except MallocError as exc:
        print(f"tf-biggan: error: {exc}", file=sys.stderr)
        sys.exit(2)
    if env.get("LD_PRELOAD", "") == os.environ.get("LD_PRELOAD", ""):
        return
    env[REEXEC_MARKER] = "1"
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, list(sys.orig_argv), env)
    except OSError as exc:  # the interpreter cannot be re-run (odd embedding): keep glibc, say so
        print(f"tf-biggan: warning: could not re-run with {env['LD_PRELOAD']} preloaded ({exc}); "
              f"running on glibc's malloc", file=sys.stderr)


def active() -> str:
    """The malloc this process runs on: tcmalloc, mimalloc, jemalloc or glibc (from its mappings)."""
    try:
        with open("/proc/self/maps") as f:
            maps = f.read()
    except OSError:
        return "unknown"
    return next((kind for kind in NAMES if f"lib{kind}" in maps), "glibc")


def main(argv) -> int:
    """`python3 -m tf_biggan.host.malloc [SETTING]` prints the library SETTING (default: TF_BIGGAN_MALLOC)
    names, for preloading into your own Python: LD_PRELOAD=$(python3 -m tf_biggan.host.malloc tcmalloc)."""
    env = dict(os.environ, **({ENV: argv[0]} if argv else {}))
    try:
        path = choose(env)
    except MallocError as exc:
        print(f"tf-biggan: error: {exc}", file=sys.stderr)
        return 2
    if path:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
