"""The quickstart notebook rendered by Voilà (as the README's Voilà link shows it)."""
from __future__ import annotations


def test_quickstart_renders_in_voila(voila, page):
    base, token = voila
    page.goto(f"{base}/voila/render/01_quickstart.ipynb?token={token}", timeout=300_000)
    # Voilà runs the whole notebook before showing it; widgets appear when the kernel is done
    page.wait_for_function("() => document.querySelectorAll('canvas').length >= 4",
                           timeout=300_000)
    body = page.inner_text("body")
    assert "Traceback" not in body and "Error" not in body
