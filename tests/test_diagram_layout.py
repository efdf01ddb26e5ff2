"""The diagrams a reviewer opens, measured in a real browser: the chain is the picture (its
steps and edges take most of the image, the key is a line of the header), a three-step chain
reads at 100 % zoom on a laptop screen, and its step text stays legible at a README's width."""

from __future__ import annotations

import pytest
from helpers import ROOT, run_cli

from engine import load_chain
from engine.chain.spec import FINAL_STATES

pytestmark = pytest.mark.usefixtures("graphviz_dot")

LAPTOP = 1440  # CSS px: a 13-14" laptop's screen at 100 % zoom
README = 880  # CSS px: the width GitHub gives a README's images
SHIPPED = ["direct", "research", "code_generation", "default"]

#: The extent of the chain itself (its steps, final states and their edges, with labels)
#: and of the whole image, in CSS px.
_MEASURE = """(states) => {
  const svg = document.querySelector('svg');
  const whole = svg.getBoundingClientRect();
  let [left, top, right, bottom] = [Infinity, Infinity, -Infinity, -Infinity];
  const parts = [...svg.querySelectorAll('g.node, g.edge')].filter(
    g => states.includes(g.querySelector('title').textContent.split('->')[0]));
  for (const part of parts) {
    const box = part.getBoundingClientRect();
    left = Math.min(left, box.left); top = Math.min(top, box.top);
    right = Math.max(right, box.right); bottom = Math.max(bottom, box.bottom);
  }
  const steps = [...svg.querySelectorAll('g.node text')].map(t => t.getBoundingClientRect().height);
  return {width: whole.width, height: whole.height, chainWidth: right - left,
          chainHeight: bottom - top, smallestText: Math.min(...steps)};
}"""


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """The shipped chains, drawn afresh by the CLI (the committed ones match: render --check)."""
    out = tmp_path_factory.mktemp("diagrams")
    result = run_cli(
        "render", "--chains", str(ROOT / "chains"), "--out", str(out), "--format", "svg"
    )
    assert result.returncode == 0, result.stderr
    return out


def _measure(chromium, name: str, svg_text: str, width: int | None = None) -> dict[str, float]:
    page = chromium.new_page(viewport={"width": 2400, "height": 1600})
    try:
        style = f"svg{{width:{width}px;height:auto}}" if width else ""
        page.set_content(
            f"<html><body style='margin:0'><style>{style}</style>{svg_text}</body></html>"
        )
        chain = load_chain(ROOT / "chains" / f"{name}.yaml")
        # The steps, the final states and the edges leaving steps (not the start marker,
        # whose arrow could stretch across whatever stands beside the chain).
        states = [*(step.id for step in chain.steps), *FINAL_STATES]
        return dict(page.evaluate(_MEASURE, states))
    finally:
        page.close()


def _svg(path):
    text = path.read_text(encoding="utf-8")
    return text[text.index("<svg") :]


@pytest.mark.parametrize("name", SHIPPED)
def test_the_chain_takes_most_of_its_image(chromium, rendered, name):
    size = _measure(chromium, name, _svg(rendered / f"{name}.svg"))
    area = (size["chainWidth"] * size["chainHeight"]) / (size["width"] * size["height"])
    assert size["chainWidth"] >= 0.85 * size["width"], size
    assert area >= 0.6, f"{name}: the chain covers {area:.0%} of the image: {size}"


def test_a_three_step_chain_reads_on_a_laptop_and_at_readme_width(chromium, rendered):
    svg = _svg(rendered / "code_generation.svg")
    assert len(load_chain(ROOT / "chains" / "code_generation.yaml").steps) == 3
    natural = _measure(chromium, "code_generation", svg)
    assert natural["width"] <= LAPTOP, f"{natural['width']:.0f} px wide at 100 %"
    assert natural["smallestText"] >= 12, natural
    scaled = _measure(chromium, "code_generation", svg, width=README)
    assert scaled["smallestText"] >= 8, f"step text {scaled['smallestText']:.1f} px at {README} px"


def test_the_committed_diagrams_are_the_ones_measured(rendered):
    for name in SHIPPED:
        assert (rendered / f"{name}.svg").read_text() == (
            ROOT / "diagrams" / f"{name}.svg"
        ).read_text()
