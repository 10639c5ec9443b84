"""make pi-check's own logic, on this machine: which package folders it shows the userland, what
it reads from the README, and the Picamera2 stand-in it offers apt (the rehearsal itself runs
under emulation: make pi-check)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

import pi_check  # noqa: E402
import pi_userland  # noqa: E402


def test_a_file_index_is_shown_with_the_folder_its_pages_link_to(tmp_path):
    # this workplace's pip: /opt/pypi/simple/NAME/ pages link to ../../files/NAME.whl
    for index in ("pypi", "pypi-more"):
        (tmp_path / index / "simple").mkdir(parents=True)
        (tmp_path / index / "files").mkdir()
    (tmp_path / "wheels").mkdir()
    config = (f"global.extra-index-url='file://{tmp_path}/pypi/simple "
              f"file://{tmp_path}/pypi-more/simple'\n"
              f"global.find-links='{tmp_path}/wheels'\n"
              "global.index-url='https://pypi.org/simple'\n"
              "global.cert='/etc/ssl/certs/ca-certificates.crt'\n")
    folders = pi_userland.local_package_sources(config)
    assert folders == [tmp_path / "pypi", tmp_path / "pypi-more", tmp_path / "wheels"]
    for index in ("pypi", "pypi-more"):  # the files the pages link to are inside what is shown
        assert any(f in (tmp_path / index / "files").parents for f in folders)


def test_only_the_public_index_shows_no_folder():
    assert pi_userland.local_package_sources("global.index-url='https://pypi.org/simple'\n") == []
    assert pi_userland.local_package_sources("") == []


def test_the_rehearsed_install_is_the_readmes_block(tmp_path):
    lines = pi_check.readme_install_lines()
    assert lines in (REPO / "README.md").read_text()
    assert '[edge]"' in lines and "--system-site-packages" in lines
    assert "--list-cameras" in lines  # check_list_cameras reads what this line prints
    readme = tmp_path / "README.md"
    readme.write_text("# no marker\n```bash\necho hi\n```\n")
    with pytest.raises(pi_userland.Usage, match="pi-install"):
        pi_check.readme_install_lines(readme)


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="dpkg-deb (Debian's dpkg) is missing")
def test_the_picamera2_stand_in_is_an_apt_package_that_imports_an_apt_numpy_module(tmp_path):
    deb = pi_userland.stand_in_deb(tmp_path)
    fields = subprocess.run(["dpkg-deb", "--field", deb], capture_output=True, text=True,
                            check=True).stdout
    assert "Package: python3-picamera2" in fields
    assert f"python3-{pi_userland.ABI_MODULE}" in fields and "python3-numpy" in fields
    subprocess.run(["dpkg-deb", "--extract", deb, tmp_path / "tree"], check=True)
    packages = tmp_path / "tree/usr/lib/python3/dist-packages"
    module = packages / "picamera2/__init__.py"
    source = module.read_text()
    assert f"\nimport {pi_userland.ABI_MODULE} " in source
    compile(source, str(module), "exec")  # from __future__ still comes first
    # the AI Camera helper, and what it imports where Raspberry Pi OS has it from apt
    for name in ("picamera2/devices/imx500/imx500.py", "Imath.py", "OpenEXR.py",
                 "libarchive/read.py", "videodev2.py"):
        assert (packages / name).is_file(), name
    index = pi_userland.packages_index(deb)
    assert f"Filename: ./{deb.name}" in index and "SHA256: " in index


def test_the_readme_names_no_version_of_the_wheel():
    # every build has its own version (git's): a name written out would be wrong by the next commit
    readme = (REPO / "README.md").read_text()
    assert not re.search(r"edge_toolchain-\d", readme)
    assert 'scp "$(make -s wheel)" ' in readme  # make wheel prints what it built
    assert "edge_toolchain-*.whl" in pi_check.readme_install_lines()


def test_another_userland_recipe_builds_the_userland_anew(tmp_path, monkeypatch):
    built = []

    def debootstrap(args, **_):  # stands for the minutes of debootstrap: makes the folder
        built.append(args)
        Path(args[-2]).mkdir(parents=True)
        return subprocess.CompletedProcess(args, 0, "", "")

    monkeypatch.setattr(pi_userland, "streamed", debootstrap)
    root = tmp_path / "pi-bookworm-arm64"
    root.mkdir()
    (root / pi_userland.READY).write_text(pi_userland.recipe("bookworm"))
    pi_userland.build_userland(root, "bookworm")
    assert built == []  # the same recipe: the cached userland
    monkeypatch.setattr(pi_userland, "PACKAGES", (*pi_userland.PACKAGES, "libgl1"))
    pi_userland.build_userland(root, "bookworm")
    assert len(built) == 1 and "--include=" + ",".join(pi_userland.PACKAGES) in built[0]
    assert "--variant=minbase" in built[0]
    assert (root / pi_userland.READY).read_text() == pi_userland.recipe("bookworm")
    assert not root.with_name(root.name + ".building").exists()


def test_a_userland_with_a_desktop_library_is_not_lite(tmp_path):
    (tmp_path / "usr/lib/aarch64-linux-gnu").mkdir(parents=True)
    (tmp_path / "lib").symlink_to("usr/lib")  # merged /usr: each file is found once
    (tmp_path / "usr/lib/aarch64-linux-gnu/libz.so.1").touch()
    assert pi_userland.desktop_libraries(tmp_path) == []
    (tmp_path / "usr/lib/aarch64-linux-gnu/libGL.so.1").touch()
    assert pi_userland.desktop_libraries(tmp_path) == ["usr/lib/aarch64-linux-gnu/libGL.so.1"]


def test_the_venv_is_weighed_by_distribution(tmp_path):
    site = tmp_path / "venv/lib/python3.11/site-packages"
    (site / "big").mkdir(parents=True)
    (site / "big/core.so").write_bytes(b"x" * 300_000)
    (site / "small.py").write_bytes(b"x" * 10)
    for name, files in (("big-1.0", ["big/core.so"]), ("small-2.0", ["small.py"])):
        (site / f"{name}.dist-info").mkdir()
        rows = [*files, f"{name}.dist-info/RECORD"]
        (site / f"{name}.dist-info/RECORD").write_text("".join(f"{r},,\n" for r in rows))
    total, weights = pi_check.venv_weights(tmp_path / "venv")
    assert [name for name, _ in weights] == ["big", "small"]
    assert weights[0][1] >= 300_000 and total >= sum(size for _, size in weights)


def test_long_steps_are_shown_as_they_come_and_summarised(capsys):
    log = "I: Retrieving a\nI: Validating a\nI: Retrieving b\nW: odd\nW: odd\nI: Base done\n"
    done = pi_userland.streamed([sys.executable, "-c", f"print({log!r}, end='')"],
                                show=pi_userland.new_phase())
    assert done.returncode == 0 and done.stdout == log  # all of it kept
    shown = capsys.readouterr().out.splitlines()
    assert shown == ["    I: Retrieving a", "    I: Validating a", "    W: odd", "    W: odd",
                     "    I: Base done"]  # each phase once, every warning
    with pytest.raises(subprocess.TimeoutExpired):
        pi_userland.streamed([sys.executable, "-c", "import time; time.sleep(30)"], timeout=1)


@pytest.mark.parametrize("optional, code", [("", 2), ("1", 0)])
def test_a_machine_that_cannot_emulate_gets_one_line_and_a_documented_code(
        monkeypatch, capsys, optional, code):
    def cannot():
        raise pi_userland.CannotRehearse("needs root (debootstrap, mount and chroot)")

    monkeypatch.setattr(pi_check.userland, "preflight", cannot)
    monkeypatch.setenv("PI_CHECK_OPTIONAL", optional)
    assert pi_check.main([]) == code  # not 3, which means a bug
    captured = capsys.readouterr()
    said = (captured.err if code else captured.out).strip().splitlines()
    assert len(said) == 1 and "cannot rehearse arm64: needs root" in said[0]
    assert "Traceback" not in captured.err


def test_pi_check_help_explains_and_starts_nothing(monkeypatch, capsys):
    monkeypatch.setattr(pi_check, "rehearse", lambda: pytest.fail("--help started a rehearsal"))
    assert pi_check.main(["--help"]) == 0
    assert "PI_CHECK_SUITE" in capsys.readouterr().out
