"""Install a source tree the way ``pip install`` of its wheel does, each into its own virtual environment.

The cold-start rows must time an installed package, not a checkout: an editable install adds a finder that
imports ``pathlib``, ``re`` and more into every interpreter before ``-c`` runs, and a checkout run with
``PYTHONDONTWRITEBYTECODE=1`` recompiles every module. A wheel install is three things, done here directly
so the bench needs neither a network nor a build backend (the lent GPU hosts are offline): the wheel's
packages copied into ``site-packages``, compiled to bytecode as pip compiles them, and the console script
pip writes for the ``gpunuma`` entry point (pip's template, which imports ``re``).
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

from harness import Tree

#: The packages the wheels ship: gpunuma's and gpunuma-fakes' (``[tool.setuptools.packages.find]`` in each pyproject).
PACKAGES = ("src/gpunuma", "fakes/gpunuma_fakes")

#: pip's console-script template (distlib's ``ScriptMaker``) for ``gpunuma = "gpunuma.tools.cli:main"``
#: (``gpunuma.cli:main`` in a tree from before the tools had their own package).
SCRIPT = """#!{python}
# -*- coding: utf-8 -*-
import re
import sys
from {cli} import main
if __name__ == '__main__':
    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])
    sys.exit(main())
"""


def install(source: Path, workdir: Path, label: str) -> Tree:
    """A fresh virtual environment under ``workdir`` holding ``source``'s packages as its wheel installs them."""
    source = source.resolve()
    missing = [package for package in PACKAGES if not (source / package).is_dir()]
    if missing:
        raise FileNotFoundError(f"{source} is not a gpunuma checkout: no {', '.join(missing)}")
    venv = workdir / f"venv-{label}"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    for package in PACKAGES:
        shutil.copytree(source / package, Path(site) / Path(package).name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")}
    subprocess.run([str(python), "-m", "compileall", "-q", site], check=True, env=env)
    script = venv / "bin" / "gpunuma"
    cli = "gpunuma.tools.cli" if (source / "src/gpunuma/tools/cli.py").is_file() else "gpunuma.cli"
    script.write_text(SCRIPT.format(python=python, cli=cli))
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return Tree(label, source, str(python), venv / "bin", (str(source / "src"), str(source / "fakes")))
