"""The quickstart notebook in a real JupyterLab, run as a user would."""
from __future__ import annotations

import re

from playwright.sync_api import Page, expect  # noqa: F401  (skipped earlier if missing)


def open_notebook(page: Page, base: str, token: str, name: str) -> None:
    page.goto(f"{base}/lab/tree/{name}?token={token}")
    page.wait_for_selector(".jp-NotebookPanel", timeout=120_000)
    # First open: JupyterLab may ask for a kernel; accept the default.
    select = page.locator(".jp-Dialog button.jp-mod-accept")
    try:
        select.wait_for(timeout=5_000)
        select.click()
    except Exception:
        pass
    dismiss_notifications(page)
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']",
                           timeout=120_000)


def dismiss_notifications(page: Page) -> None:
    """JupyterLab's news toast ("receive official Jupyter news?") covers the notebook."""
    for label in ("No", "Dismiss", "Close"):
        button = page.locator(f".jp-toast-button:has-text('{label}')")
        if button.count():
            button.first.click()


def run_all(page: Page) -> None:
    page.click(".lm-MenuBar-item:has-text('Run')")
    page.click(".lm-Menu-item:has-text('Run All Cells')")
    # every code cell shows an execution count, none a star, and the kernel is idle
    page.wait_for_function(
        """() => {
            const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')];
            return prompts.length > 0 && prompts.every(p => /\\[\\d+\\]/.test(p.textContent));
        }""", timeout=300_000)
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']",
                           timeout=120_000)


def error_outputs(page: Page) -> list[str]:
    texts = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"
                         ).all_inner_texts()
    return [t for t in texts if re.search(r"Traceback|Error", t)]


def test_quickstart_runs_in_jupyterlab(lab, page):
    base, token = lab
    open_notebook(page, base, token, "01_quickstart.ipynb")
    run_all(page)
    assert error_outputs(page) == []
    # the widgets rendered: at least the canvases of the heatmap panels
    assert page.locator("canvas").count() >= 4
