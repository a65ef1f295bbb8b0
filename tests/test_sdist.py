"""The source distribution `python -m build` makes holds what building the C extension from it needs:
every kernel, header and the cffi build script (csrc/), every package (hybridref/, backends/), and no
build output. (The wheel, which compiles the kernels three times, is checked in CI by .ci/wheel_check.sh:
built from this sdist, installed in a fresh virtual environment and run from outside the checkout.)"""
import os
import shutil
import subprocess
import sys
import tarfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def checkout_files():
    """The files a commit of this checkout would hold (tracked, and untracked but not ignored)."""
    if shutil.which("git") is None or not os.path.isdir(os.path.join(ROOT, ".git")):
        pytest.skip("not a git checkout")
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    return [f for f in out.splitlines() if os.path.isfile(os.path.join(ROOT, f))]


def test_the_sdist_holds_the_c_sources_and_every_package(tmp_path):
    pytest.importorskip("build", reason="python -m build (the dev extra)")
    files = checkout_files()
    src = tmp_path / "src"
    for f in files:  # a copy: building writes an egg-info beside setup.py
        os.makedirs(src / os.path.dirname(f), exist_ok=True)
        shutil.copy2(os.path.join(ROOT, f), src / f)
    # without isolation (nothing downloaded); wheel, a build requirement of the wheel only, need not be here
    subprocess.run([sys.executable, "-m", "build", "--sdist", "--no-isolation", "--skip-dependency-check", "--outdir", str(tmp_path / "dist"),
                    str(src)], check=True, capture_output=True)
    (sdist,) = (tmp_path / "dist").iterdir()
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    want = {f for f in files if f.startswith("csrc/") and f.endswith((".c", ".h", ".py"))}
    want |= {f for f in files if f.startswith(("hybridref/", "backends/")) and f.endswith(".py")}
    assert "csrc/build_ffi.py" in want and "backends/c/library.py" in want
    assert sorted(want - names) == []
    assert {"setup.py", "pyproject.toml", "MANIFEST.in", "README.md"} <= names
    assert not [n for n in names if n.endswith((".so", ".o")) or n.startswith("hybridref/_hrc_")]
