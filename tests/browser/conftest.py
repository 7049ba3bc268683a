"""A real JupyterLab (and Voilà) server on 127.0.0.1 and Debian's chromium, driven by Playwright.

Skips, with the reason, only where chromium or Playwright is missing; `.ci/run`
installs chromium. Screenshots of failures land in ``tests/browser/artifacts/``.
"""
from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROME_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run",
               "--disable-dev-shm-usage"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(url: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"server did not answer at {url}")


@pytest.fixture(scope="session")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.skip("chromium is not installed (apt-get install chromium); .ci/run installs it")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install playwright)")
    pw = sync_playwright().start()
    browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROME_ARGS)
    yield browser
    browser.close()
    pw.stop()


@pytest.fixture(scope="session")
def served_notebooks(tmp_path_factory) -> Path:
    """A copy of notebooks/ (JupyterLab autosaves; the repository's copies stay clean)."""
    root = tmp_path_factory.mktemp("served")
    shutil.copytree(ROOT / "notebooks", root / "notebooks")
    return root / "notebooks"


def _server(cmd: list[str], flags: str, root: Path, tmp: Path, url_path: str):
    """Start a server; ``flags`` is "lab" or "voila" (their options differ)."""
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(tmp / "config"),
               JUPYTERLAB_SETTINGS_DIR=str(tmp / "settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(tmp / "workspaces"),
               JUPYTER_RUNTIME_DIR=str(tmp / "runtime"), LRP_WIDGETS_CI="1")
    if flags == "lab":
        args = [f"--port={port}", "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={token}",
                f"--ServerApp.root_dir={root}", "--no-browser", "--allow-root"]
    else:
        args = [f"--port={port}", "--Voila.ip=127.0.0.1", f"--token={token}",
                f"--Voila.root_dir={root}", "--no-browser"]
    log = open(tmp / "server.log", "w")
    proc = subprocess.Popen(cmd + args, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_for(f"http://127.0.0.1:{port}{url_path}?token={token}", proc)
    except Exception:
        proc.terminate()
        raise
    return proc, port, token, log


@pytest.fixture(scope="session")
def lab(browser, served_notebooks, tmp_path_factory):
    # `browser` first: without chromium or Playwright, skip before starting a server
    tmp = tmp_path_factory.mktemp("lab")
    proc, port, token, log = _server(
        [sys.executable, "-m", "jupyter", "lab",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        "lab", served_notebooks, tmp, "/lab")
    yield f"http://127.0.0.1:{port}", token
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


@pytest.fixture(scope="session")
def notebook7(browser, served_notebooks, tmp_path_factory):
    """Notebook 7 (``jupyter notebook``): JupyterLab's components in the classic layout."""
    pytest.importorskip("notebook", minversion="7")
    tmp = tmp_path_factory.mktemp("notebook7")
    proc, port, token, log = _server([sys.executable, "-m", "jupyter", "notebook"], "lab",
                                     served_notebooks, tmp, "/tree")
    yield f"http://127.0.0.1:{port}", token
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


@pytest.fixture(scope="session")
def voila(browser, served_notebooks, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("voila")
    proc, port, token, log = _server([sys.executable, "-m", "voila"], "voila",
                                     served_notebooks, tmp, "/")
    yield f"http://127.0.0.1:{port}", token
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


@pytest.fixture
def page(browser, request):
    context = browser.new_context(viewport={"width": 1600, "height": 1200})
    page = context.new_page()
    yield page
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        ARTIFACTS.mkdir(exist_ok=True)
        name = request.node.name
        try:
            page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
            # JupyterLab scrolls inside the notebook, not the page: the Explorer itself too
            explorer = page.locator(".lrp-explorer")
            if explorer.count():
                explorer.first.screenshot(path=str(ARTIFACTS / f"{name}-explorer.png"),
                                          timeout=10_000)
        except Exception as exc:        # a dead page must not hide the test's own failure
            print(f"no failure screenshot for {name}: {exc}")
    context.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)
