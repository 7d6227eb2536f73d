"""`ansible-test sanity` on the collection as users get it: the release tarball, installed offline into
ansible_collections/hostagent/deepflow (ansible-test runs only from there), with the venv's Python.

ansible-test gives each sanity test with requirements its own venv, made with `venv --without-pip`
and bootstrapped by a get-pip.py it downloads from ci-files.testing.ansible.com (not reachable here);
its cache slot for that script gets a stand-in that runs pip from the interpreter's own ensurepip
wheel; pip then installs the pinned requirements from the package index as usual. Those venvs live under the
HOME given to ansible-test (kept in the test cache, so only the first run pays ~50 s).

By default three tests whose ground CI covers already are skipped, each a venv of its own (~8 s each on the
2-core machine): pylint and pep8 (ruff checks the module in tests/unit/test_lint.py) and yamllint
(ansible-lint runs yamllint's rules on the same YAML). HOSTAGENT_ANSIBLE_SANITY_FULL=1 runs them too.
Not run: the tests for other Pythons (compile and import on 2.7/3.6-3.10/3.12; only the venv's Python is
on the CI machine), pslint (needs PowerShell; the collection has no PowerShell), and ansible-test's
shellcheck when shellcheck is missing (the collection has no shell scripts).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.ansible.runner import ansible_bin, install_collection

pytestmark = [pytest.mark.slow]

# Stand-in for get-pip.py: run pip from the pip wheel the interpreter ships for ensurepip (a wheel runs
# from its zip; Debian keeps it in /usr/share/python-wheels), and `pip install` what ansible-test asked for.
# Not `ensurepip.bootstrap()`: that installs pip once more (~4 s a venv) and sets PIP_CONFIG_FILE=/dev/null.
GET_PIP = """\
import glob, os, runpy, sys, ensurepip
wheels = glob.glob(os.path.join(os.path.dirname(ensurepip.__file__), "_bundled", "pip-*.whl"))
sys.path.insert(0, (wheels or glob.glob("/usr/share/python-wheels/pip-*.whl"))[0])
sys.argv = ["pip", "install", "--upgrade", "--force-reinstall"] + sys.argv[1:]
runpy.run_module("pip", run_name="__main__", alter_sys=True)
"""


def _ansible_test_home() -> Path:
    from tests.dist import CACHE_DIR

    home = CACHE_DIR / "ansible-test-home"
    cache = home / ".ansible" / "test" / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    for pip_version in ("23_1_2",):  # the bootstrap pip of ansible-core 2.16's ansible-test
        (cache / f"get_pip_{pip_version}.py").write_text(GET_PIP)
    # Installs from the index the machine's pip is set up for (/etc/pip.conf, ~/.config/pip).
    user_conf = Path.home() / ".config" / "pip" / "pip.conf"
    if user_conf.exists():
        (home / ".config" / "pip").mkdir(parents=True, exist_ok=True)
        (home / ".config" / "pip" / "pip.conf").write_bytes(user_conf.read_bytes())
    return home


def test_ansible_test_sanity_is_clean(dist, tmp_path: Path):
    from tests.dist import collection_in

    ansible_test = ansible_bin("ansible-test")
    if ansible_test is None:
        pytest.skip("ansible-core not installed (tests/ansible/requirements.txt)")
    collection = install_collection(collection_in(dist), tmp_path) / "ansible_collections" / "hostagent" / "deepflow"
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    full = os.environ.get("HOSTAGENT_ANSIBLE_SANITY_FULL") == "1"
    skipped = [] if full else ["pylint", "pep8", "yamllint"]
    env = dict(os.environ, HOME=str(_ansible_test_home()), NO_COLOR="1")
    cmd = [ansible_test, "sanity", "--python", python, "--color", "no"]
    for test in skipped:
        cmd += ["--skip-test", test]
    proc = subprocess.run(cmd, check=False, cwd=collection, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout
    ran = [line.split('"')[1] for line in proc.stdout.splitlines() if line.startswith("Running sanity test ")]
    # The ones that matter for users and Galaxy ran (ansible-doc failed for every user before).
    assert {"ansible-doc", "validate-modules", "import", "pylint", "pep8", "yamllint", "runtime-metadata",
            "future-import-boilerplate", "metaclass-boilerplate", "ignores"} - set(skipped) <= set(ran), ran
