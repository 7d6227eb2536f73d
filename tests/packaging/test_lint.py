"""Each ecosystem's own checker on the built artifacts (tests/dist.py), as a packager or reviewer would
run it: lintian on the .deb (overrides in packaging/debian/lintian-overrides), rpmlint on the .rpm
(packaging/rpmlint.toml), twine check --strict on the sdist and wheel, shellcheck on every shell script
we ship or run. What the packages carry beside the file: licence, copyright, changelog, man page,
completions, all dated by the commit. In CI a missing checker fails; elsewhere it skips."""
from __future__ import annotations

import gzip
import os
import re
import shutil
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest

from hostagent.options import INSTALL_SETTINGS
from tests.dist import version

REPO = Path(__file__).resolve().parents[2]
# Files are dated by the commit (SOURCE_DATE_EPOCH), never 1970: anything before this is a bug.
NOT_BEFORE = 1577836800  # 2020-01-01


def _tool(name: str) -> str:
    found = shutil.which(name) or (shutil.which(name, path=str(REPO / ".venv" / "bin")))
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is missing (.ci/apt-packages.txt / tests/setup.sh install it)")
        pytest.skip(f"{name} not installed")
    return found


def _deb(dist: Path) -> Path:
    return dist / f"hostagent_{version()}_amd64.deb"


def _rpm(dist: Path) -> Path:
    return dist / f"hostagent-{version()}-1.x86_64.rpm"


def test_lintian_clean(dist: Path):
    # --no-cfg: the same profile everywhere; overrides are the package's own, each with its reason.
    r = subprocess.run([_tool("lintian"), "--no-cfg", "--fail-on", "error,warning", "--tag-display-limit", "0",
                        str(_deb(dist))], capture_output=True, text=True, check=False)
    tags = [line for line in r.stdout.splitlines() if re.match(r"[EWX]: ", line)]
    assert r.returncode == 0 and tags == [], r.stdout + r.stderr


def test_lintian_overrides_each_have_a_reason():
    lines = (REPO / "packaging" / "debian" / "lintian-overrides").read_text().splitlines()
    for i, line in enumerate(lines):
        if line.startswith("hostagent:"):
            assert i > 0 and lines[i - 1].startswith("#"), f"override without a comment: {line}"


def test_rpmlint_clean(dist: Path):
    r = subprocess.run([_tool("rpmlint"), "-c", str(REPO / "packaging" / "rpmlint.toml"), str(_rpm(dist))],
                       capture_output=True, text=True, check=False)
    assert r.returncode == 0 and " 0 errors, 0 warnings" in r.stdout, r.stdout + r.stderr


def test_twine_check_strict(dist: Path):
    ver = version()
    r = subprocess.run([_tool("twine"), "check", "--strict", str(dist / f"hostagent-{ver}.tar.gz"),
                        str(dist / f"hostagent-{ver}-py3-none-any.whl")], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stdout + r.stderr


def _shell_scripts() -> list[str]:
    """Every tracked file that is a shell script: *.sh, and any file whose #! names sh or bash."""
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    out = []
    for name in files:
        path = REPO / name
        if not path.is_file() or path.is_symlink():
            continue
        with open(path, "rb") as f:
            head = f.readline()
        if name.endswith(".sh") or re.match(rb"#!\s*\S*/(env\s+)?(ba|da)?sh\b", head):
            out.append(name)
    return out


def test_shellcheck_every_shell_script():
    scripts = _shell_scripts()
    assert {"packaging/scripts/prerm.sh", "install.sh", "demo.sh", "tests/setup.sh", ".ci/run"} <= set(scripts)
    r = subprocess.run([_tool("shellcheck"), *scripts], cwd=REPO, capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stdout + r.stderr


# --- what the packages carry beside the file ---------------------------------------------------------

def _deb_files(dist: Path) -> dict[str, tuple[str, int]]:
    """path -> (mode string, mtime) from the .deb's data tar."""
    listing = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(_deb(dist))], capture_output=True, check=True).stdout
    import io

    with tarfile.open(fileobj=io.BytesIO(listing)) as tf:
        return {m.name.lstrip("."): (("d" if m.isdir() else "-"), int(m.mtime)) for m in tf.getmembers()}


def test_deb_ships_docs_licence_and_completions_dated_by_the_commit(dist: Path, tmp_path: Path):
    files = _deb_files(dist)
    for path in ("/usr/sbin/hostagent", "/usr/share/man/man8/hostagent.8.gz", "/usr/share/doc/hostagent/copyright",
                 "/usr/share/doc/hostagent/changelog.Debian.gz", "/usr/share/bash-completion/completions/hostagent",
                 "/usr/share/zsh/vendor-completions/_hostagent", "/usr/share/lintian/overrides/hostagent"):
        assert path in files, sorted(files)
    dates = {mtime for _, mtime in files.values()}
    assert len(dates) == 1 and dates.pop() >= NOT_BEFORE, files
    subprocess.run(["dpkg-deb", "-x", str(_deb(dist)), str(tmp_path)], check=True)
    copyright_text = (tmp_path / "usr/share/doc/hostagent/copyright").read_text()
    assert copyright_text.startswith("Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/")
    for component in ("Python", "GNU C Library", "OpenSSL", "zlib"):
        assert component in copyright_text
    changelog = gzip.decompress((tmp_path / "usr/share/doc/hostagent/changelog.Debian.gz").read_bytes()).decode()
    assert changelog.startswith(f"hostagent ({version()}-1) "), changelog[:200]
    # The man page: generated from the CLI and the settings table, so it names every install flag.
    page = gzip.decompress((tmp_path / "usr/share/man/man8/hostagent.8.gz").read_bytes()).decode()
    assert page.startswith(".TH HOSTAGENT 8 ")
    for setting in INSTALL_SETTINGS:
        assert setting.flag.replace("-", "\\-") in page, setting.flag
    if shutil.which("man"):
        r = subprocess.run(["man", "--warnings", "-l", str(tmp_path / "usr/share/man/man8/hostagent.8.gz")],
                           capture_output=True, text=True, check=False, env=dict(os.environ, MANWIDTH="80"))
        assert r.returncode == 0 and r.stderr == "" and "hostagent uninstall" in r.stdout, r.stderr
    bash = (tmp_path / "usr/share/bash-completion/completions/hostagent").read_text()
    assert "_HOSTAGENT_COMPLETE=bash_complete" in bash and "complete " in bash
    assert (tmp_path / "usr/share/zsh/vendor-completions/_hostagent").read_text().startswith("#compdef hostagent")


def test_rpm_ships_license_doc_changelog_and_completions(dist: Path):
    if shutil.which("rpm") is None:
        pytest.skip("rpm not installed (Debian package rpm)")
    rpm = str(_rpm(dist))
    flags = subprocess.run(["rpm", "-qp", "--qf", "[%{FILEFLAGS:fflags} %{FILENAMES} %{FILEMTIMES}\n]", rpm],
                           capture_output=True, text=True, check=True).stdout.splitlines()
    entries = {parts[-2]: (parts[0] if len(parts) == 3 else "", int(parts[-1])) for parts in map(str.split, flags)}
    assert entries["/usr/share/licenses/hostagent/LICENSE"][0] == "l"  # %license
    assert entries["/usr/share/man/man8/hostagent.8.gz"][0] == "d"  # %doc
    assert "/usr/share/bash-completion/completions/hostagent" in entries
    assert "/usr/share/zsh/site-functions/_hostagent" in entries
    assert all(mtime >= NOT_BEFORE for _, mtime in entries.values()), entries
    changelog = subprocess.run(["rpm", "-qp", "--changelog", rpm], capture_output=True, text=True, check=True).stdout
    assert changelog.startswith("* ") and f"- {version()}-1\n" in changelog.splitlines(keepends=True)[0], changelog[:200]
    url = subprocess.run(["rpm", "-qp", "--qf", "%{URL}", rpm], capture_output=True, text=True, check=True).stdout
    assert url.startswith("https://")


def test_python_dists_carry_license_and_metadata(dist: Path):
    ver = version()
    with zipfile.ZipFile(dist / f"hostagent-{ver}-py3-none-any.whl") as wheel:
        names = wheel.namelist()
        meta = wheel.read(f"hostagent-{ver}.dist-info/METADATA").decode()
        dates = {info.date_time for info in wheel.infolist()}
    assert f"hostagent-{ver}.dist-info/licenses/LICENSE" in names
    assert "License-File: LICENSE" in meta and "License-Expression: Apache-2.0" in meta
    assert "Project-URL: Source, " in meta and "Classifier: " in meta and "Author-email: " in meta
    # The lint tools are dependency groups now: nothing pins them in the published metadata.
    assert not re.search(r"^Requires-Dist: (ruff|mypy)", meta, re.M), meta
    assert min(dates) >= (2020, 1, 1, 0, 0, 0), dates
    with tarfile.open(dist / f"hostagent-{ver}.tar.gz") as sdist:
        members = sdist.getmembers()
    assert f"hostagent-{ver}/LICENSE" in {m.name for m in members}
    assert {m.mtime for m in members} == {members[0].mtime} and members[0].mtime >= NOT_BEFORE


def test_single_file_carries_its_licences(dist: Path):
    """The file alone (downloaded without a package) carries LICENSE and the DEP-5 copyright, unpacked
    beside its libraries; the bundle is zlib-compressed, so look for them in the stub's payload."""
    import zlib

    from tests.dist import single_file_in

    data = single_file_in(dist).read_bytes()
    trailer = data[-(16 + 16 + 64):]
    assert trailer[:16] == b"HOSTAGENT-RUN-1\n"
    head, size = int.from_bytes(trailer[16:24], "little"), int.from_bytes(trailer[24:32], "little")
    bundle = zlib.decompress(data[head:head + size])
    for name in (b"_internal/licenses/LICENSE", b"_internal/licenses/copyright"):
        assert name in bundle, name
    assert b"Files: _internal/libssl.so.3" in bundle and b"@MAINTAINER@" not in bundle


def test_collection_carries_license_and_changelog_dated_by_the_commit(dist: Path):
    import yaml

    with tarfile.open(dist / f"hostagent-deepflow-{version()}.tar.gz") as tf:
        members = {m.name: m for m in tf.getmembers()}
        changelog = yaml.safe_load(tf.extractfile("changelogs/changelog.yaml"))
    assert "LICENSE" in members
    assert version() in changelog["releases"], changelog
    mtimes = {m.mtime for m in members.values()}
    assert len(mtimes) == 1 and mtimes.pop() >= NOT_BEFORE
