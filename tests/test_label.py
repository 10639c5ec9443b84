"""edge-label (deploy/label/): what is left to label and in which order, the moves and their
journal (never overwriting, nothing lost at a crash, undo after a restart), the HTTP API the
page uses, and the page itself driven by keys in headless Chromium."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from common.errors import UsageError
from deploy.collect.collection import Collection
from deploy.label.cli import build_parser, main, run
from deploy.label.journal import JOURNAL, Journal, LabelError
from deploy.label.pending import Pending
from deploy.label.server import LabelServer
from tests.test_collect import jpeg, write_device

TOKEN = "label-test-token"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def collected(tmp_path) -> Path:
    """An edge-collect folder: two uncertain frames (top scores 0.55 and 0.30), a burst of three
    near-identical captures labelled cup, a shadow frame, one frame with no record."""
    collection = Collection(tmp_path / "collected")
    write_device(collection.staging("pi-a"),
                 captures=[("cup", f"burst-{n}.jpg", jpeg(20, noise=n)) for n in range(3)],
                 uncertain=[("mug", "u-1.jpg", jpeg(21), 0.55),
                            ("cup", "u-2.jpg", jpeg(22), 0.30)],
                 shadow=[("s-1.jpg", jpeg(23))])
    lost = collection.staging("pi-a") / "uncertain" / "teapot" / "u-9.jpg"
    lost.parent.mkdir()
    lost.write_bytes(jpeg(24))
    collection.take("pi-a")
    collection.finish()
    return collection.folder


def state(pending: Pending) -> dict:
    return pending.state()


def test_most_uncertain_first_and_near_duplicates_grouped(collected, tmp_path):
    pending = Pending(collected, Journal(collected, tmp_path / "photos"))
    groups = state(pending)["groups"]
    assert [(g["suggestion"], g["source"], g["count"]) for g in groups] == [
        ("cup", "model", 1),      # 0.30
        ("mug", "model", 1),      # 0.55
        ("cup", "shadow", 1),     # the live model's 0.70
        ("teapot", "model", 1),   # no scores
        ("cup", "device", 3)]     # the burst, labelled on the device: one group
    assert groups[0]["scores"][0] == {"label": "cup", "score": 0.3}
    classes = state(pending)["classes"]
    assert [c["name"] for c in classes] == ["cup", "mug", "other", "teapot"]
    assert [c["key"] for c in classes] == ["1", "2", "3", "4"]
    # --near 0: only pictures of the same hash (two of the burst's three) stay together
    assert Pending(collected, pending.journal, near=0).state()["pending"]["groups"] == 6


def test_labelling_moves_into_the_label_folder_and_undo_puts_back(collected, tmp_path):
    photos = tmp_path / "photos"
    journal = Journal(collected, photos)
    pending = Pending(collected, journal)
    burst = pending.groups[-1]
    sources = [p.path for p in burst]
    journal.label([(p.sha256, p.path) for p in burst], "tasse à café")
    moved = sorted((photos / "tasse à café").iterdir())
    assert [p.name for p in moved] == sorted(p.name for p in sources)
    assert not any(p.exists() for p in sources)
    pending.refresh()
    assert state(pending)["pending"] == {"groups": 4, "pictures": 4}
    assert state(pending)["done"] == {"labelled": 3, "discarded": 0}
    journal.undo()
    assert all(p.exists() for p in sources) and not any(p.exists() for p in moved)
    with pytest.raises(LabelError, match="nothing to undo"):
        journal.undo()


def test_a_label_never_replaces_a_file_and_a_file_already_there_stays(collected, tmp_path):
    photos = tmp_path / "photos"
    journal = Journal(collected, photos)
    first, second = Pending(collected, journal).groups[:2]
    (photos / "cup").mkdir(parents=True)
    other = photos / "cup" / first[0].path.name
    other.write_bytes(b"someone else's picture")
    same = photos / "cup" / second[0].path.name
    shutil.copy(second[0].path, same)
    journal.label([(first[0].sha256, first[0].path)], "cup")
    journal.label([(second[0].sha256, second[0].path)], "cup")
    assert other.read_bytes() == b"someone else's picture"
    renamed = photos / "cup" / f"{first[0].path.stem}-{first[0].sha256[:12]}.jpg"
    assert renamed.read_bytes() == jpeg(22)
    assert same.read_bytes() == jpeg(21) and not second[0].path.exists()
    journal.undo()  # the copy that was already in photos/ stays
    assert same.is_file() and second[0].path.is_file()


@pytest.mark.parametrize("name", ["", "../up", ".hidden", "unlabelled", "a/b"])
def test_a_bad_class_name_moves_nothing(collected, tmp_path, name):
    journal = Journal(collected, tmp_path / "photos")
    group = Pending(collected, journal).groups[0]
    with pytest.raises(LabelError):
        journal.label([(group[0].sha256, group[0].path)], name)
    assert group[0].path.is_file() and not (collected / JOURNAL).exists()


def test_a_crash_mid_move_is_finished_at_the_next_start(collected, tmp_path, monkeypatch):
    photos = tmp_path / "photos"
    journal = Journal(collected, photos)
    group = Pending(collected, journal).groups[-1]
    real_unlink = Path.unlink

    def crash(path, *args, **kwargs):
        if collected in path.parents:
            raise KeyboardInterrupt  # killed between the link and the unlink
        return real_unlink(path, *args, **kwargs)

    monkeypatch.setattr(Path, "unlink", crash)
    with pytest.raises(KeyboardInterrupt):
        journal.label([(p.sha256, p.path) for p in group], "cup")
    monkeypatch.undo()
    assert group[0].path.exists() and (photos / "cup" / group[0].path.name).exists()
    restarted = Journal(collected, photos)  # finishes the journalled action
    assert not any(p.path.exists() for p in group)
    assert len(list((photos / "cup").iterdir())) == 3
    assert Pending(collected, restarted).state()["pending"]["pictures"] == 4
    restarted.undo()  # and undo still works after the restart
    assert all(p.path.exists() for p in group) and not any((photos / "cup").iterdir())


# ---------------------------------------------------------------------------- the HTTP API

def call(server: LabelServer, method: str, path: str, token: str | None = TOKEN,
         **params) -> tuple[int, dict | bytes]:
    query = urllib.parse.urlencode({**params, **({"token": token} if token else {})})
    request = urllib.request.Request(f"http://127.0.0.1:{server.port}{path}?{query}",
                                     method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            status, body, kind = answer.status, answer.read(), answer.headers["Content-Type"]
    except urllib.error.HTTPError as exc:
        status, body, kind = exc.code, exc.read(), exc.headers["Content-Type"]
    return status, json.loads(body) if kind == "application/json" else body


@pytest.fixture
def server(collected, tmp_path):
    pending = Pending(collected, Journal(collected, tmp_path / "photos"))
    with LabelServer(pending, "127.0.0.1", 0, token=TOKEN) as live:
        yield live


@pytest.mark.parametrize("method,path", [("GET", "/"), ("GET", "/state"), ("POST", "/undo"),
                                         ("POST", "/label")])
def test_every_request_needs_the_token_even_on_loopback(server, method, path):
    assert call(server, method, path, token=None)[0] == 403
    assert call(server, method, path, token="wrong")[0] == 403


def test_label_discard_undo_over_http(server, collected, tmp_path):
    status, body = call(server, "GET", "/state")
    first = body["groups"][0]
    status, picture = call(server, "GET", "/picture", sha=first["id"])
    assert status == 200 and picture == jpeg(22)
    status, body = call(server, "POST", "/label", group=first["id"], label="kettle")
    assert status == 200 and body["done"]["labelled"] == 1
    assert (tmp_path / "photos" / "kettle" / first["name"]).read_bytes() == jpeg(22)
    # a new class comes last: the keys of the others stay
    assert [(c["name"], c["key"]) for c in body["classes"]] == [
        ("cup", "1"), ("mug", "2"), ("other", "3"), ("teapot", "4"), ("kettle", "5")]
    assert call(server, "GET", "/picture", sha=first["id"])[0] == 404  # not pending now
    status, body = call(server, "POST", "/discard", group=body["groups"][0]["id"])
    assert status == 200 and body["done"] == {"labelled": 1, "discarded": 1}
    assert len(list((collected / "discarded").iterdir())) == 1
    assert call(server, "POST", "/label", group=body["groups"][0]["id"], label="../x")[0] == 400
    assert call(server, "POST", "/label", group="0" * 64, label="cup")[0] == 404
    status, body = call(server, "POST", "/undo")
    assert status == 200 and body["done"] == {"labelled": 1, "discarded": 0}
    status, body = call(server, "POST", "/undo")
    assert status == 200 and body["groups"][0]["id"] == first["id"]
    status, body = call(server, "POST", "/undo")
    assert status == 409 and body["error"] == "nothing to undo"


def refused(argv: list[str]) -> str:
    """The usage error ``argv`` gets (a page that would serve instead stops at once)."""
    stopped = threading.Event()
    stopped.set()
    with pytest.raises(UsageError) as refusal:
        run(build_parser().parse_args([*argv, "--serve", "127.0.0.1:0"]), stop=stopped)
    return str(refusal.value)


def test_the_command_refuses_a_folder_edge_collect_did_not_write(tmp_path):
    assert "not an edge-collect folder" in refused([str(tmp_path), "--into",
                                                   str(tmp_path / "photos")])


def test_the_command_refuses_to_label_into_its_own_folders(collected):
    assert "a folder edge-collect keeps for itself" in refused(
        [str(collected), "--into", str(collected / "unlabelled" / "x")])


def test_a_second_page_on_the_same_folder_is_refused(collected, tmp_path):
    child, _ = _start_labelling(collected, tmp_path / "photos")
    try:
        message = refused([str(collected), "--into", str(tmp_path / "photos")])
    finally:
        _stop(child)
    assert "another edge-label is labelling" in message


def test_a_usage_error_is_one_line_and_exit_2(tmp_path, capsys):
    assert main([str(tmp_path / "absent"), "--into", str(tmp_path / "photos")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


# ---------------------------------------------------------------------------- the page

def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Browser:
    """Headless Chromium driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``:
    JSON messages ended by a NUL byte on file descriptors 3 and 4), standard library only."""

    def __init__(self, chromium: str, profile: Path) -> None:
        to_chrome, self._out = os.pipe()
        self._in, from_chrome = os.pipe()
        # above 4, so that putting one on 3 or 4 in the child cannot clobber the other (bash,
        # not sh, takes redirections of descriptors past 9)
        for fd in (to_chrome, from_chrome):
            os.dup2(fd, fd + 10)
            os.close(fd)
        to_chrome, from_chrome = to_chrome + 10, from_chrome + 10
        self.process = subprocess.Popen(
            ["bash", "-c", f'exec "$@" 3<&{to_chrome} 4>&{from_chrome}', "bash", chromium,
             "--headless", "--no-sandbox", "--disable-gpu", "--no-proxy-server",
             "--remote-debugging-pipe", f"--user-data-dir={profile}", "--window-size=1000,700",
             "about:blank"], pass_fds=(to_chrome, from_chrome),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_chrome)
        os.close(from_chrome)
        self._buffer = b""
        self._id = 0
        target = next(t for t in self.send("Target.getTargets")["targetInfos"]
                      if t["type"] == "page")
        self.session = self.send("Target.attachToTarget", targetId=target["targetId"],
                                 flatten=True)["sessionId"]

    def send(self, method: str, session: str | None = None, **params) -> dict:
        self._id += 1
        message = {"id": self._id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._out, json.dumps(message).encode() + b"\0")
        while True:
            while b"\0" not in self._buffer:
                chunk = os.read(self._in, 1 << 16)
                if not chunk:
                    raise RuntimeError("chromium went away")
                self._buffer += chunk
            raw, self._buffer = self._buffer.split(b"\0", 1)
            answer = json.loads(raw)
            if answer.get("id") == self._id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return answer.get("result", {})

    def page(self, method: str, **params) -> dict:
        return self.send(method, self.session, **params)

    def evaluate(self, expression: str):
        return self.page("Runtime.evaluate", expression=expression,
                         returnByValue=True)["result"].get("value")

    def wait_for(self, expression: str, seconds: float = 20.0):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.05)
        raise AssertionError(f"never true in the page: {expression}")

    def press(self, key: str) -> None:
        text = {"Enter": "\r"}.get(key, key if len(key) == 1 else "")
        for kind in ("keyDown", "keyUp"):
            self.page("Input.dispatchKeyEvent", type=kind, key=key, text=text if
                      kind == "keyDown" else "", windowsVirtualKeyCode=13 if key == "Enter"
                      else 0)

    def close(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)
        os.close(self._in)
        os.close(self._out)


def _start_labelling(collected: Path, photos: Path) -> tuple[subprocess.Popen, str]:
    child = subprocess.Popen([sys.executable, "-m", "deploy.label.cli", str(collected), "--into",
                              str(photos), "--serve", "127.0.0.1:0"], cwd=REPO,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = child.stderr.readline()
    assert line.startswith("edge-label: open http://127.0.0.1:"), line + child.stderr.read()
    return child, line.split("open ", 1)[1].strip()


def _stop(child: subprocess.Popen) -> str:
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=30)
    assert child.returncode == 0, err
    return err


def test_the_page_in_headless_chromium_labels_with_keys_and_undoes_after_a_restart(
        collected, tmp_path):
    chromium = _chromium()
    if chromium is None:
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run does it)")
    photos = tmp_path / "photos"
    browser = Browser(chromium, tmp_path / "profile")
    child = None
    left = "document.getElementById('counts').textContent"
    try:
        child, url = _start_labelling(collected, photos)
        browser.page("Page.navigate", url=url)
        browser.wait_for("document.querySelectorAll('.tile img').length === 5")
        # 1: the first class (cup) for the most uncertain picture; u puts it back
        first = browser.evaluate("document.querySelector('.tile').id.slice(6)")
        browser.press("1")
        browser.wait_for(f"{left}.includes('1 labelled')")
        assert [p.name for p in (photos / "cup").iterdir()] == [f"{first[:16]}.jpg"]
        browser.press("u")
        browser.wait_for(f"{left}.includes('0 labelled')")
        assert not any((photos / "cup").iterdir())
        assert (collected / "unlabelled" / f"{first[:16]}.jpg").is_file()
        # → then Enter: the second group's guess (mug) accepted
        browser.press("ArrowRight")
        browser.press("Enter")
        browser.wait_for(f"{left}.includes('1 labelled')")
        assert len(list((photos / "mug").iterdir())) == 1
        # n: a new class, typed in the page
        browser.press("n")
        browser.wait_for("document.activeElement.id === 'newname'")
        browser.page("Input.insertText", text="théière")
        browser.press("Enter")
        browser.wait_for(f"{left}.includes('2 labelled')")
        assert len(list((photos / "théière").iterdir())) == 1
        assert browser.evaluate("[...document.querySelectorAll('#classbuttons button')]"
                                ".map(b => b.dataset.label).includes('théière')")
        # x: discarded, kept in DIR/discarded/
        browser.press("x")
        browser.wait_for(f"{left}.includes('1 discarded')")
        assert len(list((collected / "discarded").iterdir())) == 1
        _stop(child)
        # a restart of the command: the page reloads, u undoes the discard of before
        child, url = _start_labelling(collected, photos)
        browser.page("Page.navigate", url=url)
        browser.wait_for(f"{left}.includes('2 labelled') && {left}.includes('1 discarded')")
        browser.press("u")
        browser.wait_for(f"{left}.includes('0 discarded')")
        assert not any((collected / "discarded").iterdir())
        shot = browser.page("Page.captureScreenshot", format="png")["data"]
        assert len(shot) > 10_000
        err = _stop(child)
    finally:
        browser.close()
        if child is not None and child.poll() is None:
            child.kill()
            child.wait(timeout=30)
    assert "picture(s) labelled" in err
    # every picture is somewhere: in photos/, or still in the collection
    labelled = [p for p in photos.rglob("*.jpg")]
    waiting = [p for folder in ("cup", "unlabelled") for p in (collected / folder).glob("*.jpg")]
    assert len(labelled) == 2 and len(labelled) + len(waiting) == 7
