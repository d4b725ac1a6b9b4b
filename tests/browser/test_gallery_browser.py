"""NeuronGallery in real headless Chromium, against the real Python widget object."""

from __future__ import annotations

import pytest
from harness import Harness, make_cards, thumbnail, wait_until

from repwidgets.widgets import NeuronGallery

pytestmark = pytest.mark.browser

HOSTILE = "<img src=x onerror=alert(1)>"
HOSTILE2 = '<img src=y onerror="window.__xss=1">'


def gallery(n=512, k=8, **kwargs):
    def details(card_id, key):
        return {"sample": key, "class": HOSTILE2, "concepts": ["red", HOSTILE], "activation": 1.5}

    return NeuronGallery(
        make_cards(n, k),
        image_source=lambda keys: [thumbnail(int(x)) for x in keys],
        detail_source=details,
        title="features.conv3",
        **kwargs,
    )


def rendered_cards(page):
    return page.eval_on_selector_all(
        ".rw-card",
        "els => els.filter(e => e.style.display !== 'none').map(e => Number(e.dataset.id))",
    )


def test_gallery_renders_lazily_and_selection_reaches_python(page, bundle, artifacts):
    g = gallery(512, 8, thumb_size=56)  # small thumbnails: a dozen cards on screen
    h = Harness(page, g, bundle).open()
    h.wait_images()
    shown = rendered_cards(page)
    assert 4 <= len(shown) < 60, shown  # virtualised: a screen of cards, not 512
    fetched = [k for m in h.messages if m["type"] == "fetch" for k in m["keys"]]
    wanted = {k for c in g.cards if c["id"] in shown for k in c["images"]}
    assert set(fetched) <= wanted and len(fetched) == len(set(fetched))
    assert max(len(m["keys"]) for m in h.messages) <= 48  # batched
    assert page.errors == []
    page.screenshot(path=str(artifacts / "gallery.png"), full_page=True)

    # a click selects one card (on its label, not an image), ctrl-click adds one:
    # Python's trait follows
    page.click(".rw-card[data-id='1'] .rw-card-label")
    page.click(".rw-card[data-id='6'] .rw-card-head", modifiers=["Control"])
    assert wait_until(lambda: g.selected == [1, 6], page), g.selected
    # shift-click selects the range from the anchor (6) in view order
    page.click(".rw-card[data-id='9'] .rw-card-scores", modifiers=["Shift"])
    assert wait_until(lambda: g.selected == [6, 7, 8, 9], page), g.selected
    # keyboard: the cursor is on 9; right arrow then space toggles card 10
    page.keyboard.press("ArrowRight")
    page.keyboard.press("Space")
    assert wait_until(lambda: g.selected == [6, 7, 8, 9, 10], page), g.selected
    page.keyboard.press("Space")
    assert wait_until(lambda: g.selected == [6, 7, 8, 9], page), g.selected
    # ctrl-click removes one; a plain click keeps only the card clicked
    page.click(".rw-card[data-id='7'] .rw-card-label", modifiers=["Control"])
    assert wait_until(lambda: g.selected == [6, 8, 9], page), g.selected
    page.click(".rw-card[data-id='2'] .rw-card-label")
    assert wait_until(lambda: g.selected == [2], page), g.selected

    # Python sets the selection: the page follows
    g.selected = [3]
    h.push("selected")
    page.wait_for_function(
        "() => [...document.querySelectorAll('.rw-card.rw-selected')].map(e => e.dataset.id).join() === '3'"
    )

    # scroll to the end: the last cards render and only then fetch their images
    n_before = len(h.messages)
    page.eval_on_selector(".rw-viewport", "el => { el.scrollTop = el.scrollHeight; }")
    page.wait_for_function("() => !!document.querySelector(\".rw-card[data-id='511']\")")
    h.wait_images()
    assert len(h.messages) > n_before
    late = {k for m in h.messages[n_before:] for k in m["keys"]}
    last_keys = set(g.cards[511]["images"])
    assert last_keys <= late
    assert len(rendered_cards(page)) < 60
    page.screenshot(path=str(artifacts / "gallery-end.png"))


def test_sort_and_filter_in_the_browser(page, bundle):
    g = gallery(60, 4)
    Harness(page, g, bundle).open()
    page.select_option("select", "dora")
    assert g.sort_by == "dora"
    first = page.eval_on_selector(".rw-card[data-index='0']", "e => Number(e.dataset.id)")
    assert first == max(g.cards, key=lambda c: c["scores"]["dora"])["id"]
    page.fill("input[type=search]", "stripes")
    page.wait_for_timeout(300)
    assert g.query == "stripes"
    shown = rendered_cards(page)
    assert shown and all("stripes" in g.cards[i]["label"] for i in shown)
    status = page.text_content(".rw-status")
    assert status.startswith(f"{sum('stripes' in c['label'] for c in g.cards)} of 60 neurons")


def test_hostile_labels_render_as_text(page, bundle, artifacts):
    cards = make_cards(6, 4)
    cards[0]["label"] = HOSTILE
    cards[1]["label"] = HOSTILE2
    cards[2]["scores"] = {HOSTILE: 1.0}
    g = NeuronGallery(
        cards,
        image_source=lambda keys: [thumbnail(int(x)) for x in keys],
        detail_source=lambda cid, key: {"class": HOSTILE2, "concepts": [HOSTILE]},
        title=HOSTILE2,
    )
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    h = Harness(page, g, bundle).open()
    h.wait_images()
    assert page.text_content(".rw-card[data-id='0'] .rw-card-label") == HOSTILE
    assert page.text_content(".rw-card[data-id='1'] .rw-card-label") == HOSTILE2
    assert HOSTILE in page.text_content(".rw-card[data-id='2'] .rw-card-scores")
    assert page.text_content(".rw-title") == HOSTILE2
    # open the details of an image: hostile detail values are text too
    page.click(".rw-card[data-id='0'] img.rw-thumb >> nth=0")
    page.wait_for_function("() => document.querySelectorAll('.rw-details dd').length >= 2")
    dds = page.eval_on_selector_all(".rw-details dd", "els => els.map(e => e.textContent)")
    assert dds == [HOSTILE2, HOSTILE]
    page.wait_for_timeout(300)  # give any injected handler time to fire
    injected = page.evaluate(
        "() => [...document.querySelectorAll('img')].filter(i => ['x', 'y'].includes(i.getAttribute('src'))).length"
    )
    assert injected == 0
    assert page.evaluate("() => window.__xss") is None
    assert dialogs == []
    page.screenshot(path=str(artifacts / "gallery-hostile.png"))
    page.keyboard.press("Escape")
    assert page.is_hidden(".rw-lightbox")


def test_image_details_come_from_python(page, bundle, artifacts):
    g = gallery(20, 8)
    h = Harness(page, g, bundle).open()
    h.wait_images()
    key = g.cards[4]["images"][2]
    page.click(".rw-card[data-id='4'] img.rw-thumb >> nth=2")
    page.wait_for_function("() => document.querySelectorAll('.rw-details dd').length >= 4")
    request = [m for m in h.messages if m["type"] == "details"][-1]
    assert request["card"] == 4 and request["key"] == key
    fields = page.eval_on_selector_all(".rw-details dt", "els => els.map(e => e.textContent)")
    assert fields == ["sample", "class", "concepts", "activation"]
    assert page.text_content(".rw-details dd") == str(key)
    assert g.selected == []  # opening an image does not select its card
    page.screenshot(path=str(artifacts / "gallery-details.png"))


def test_4096_neurons_stay_virtualised(page, bundle):
    g = gallery(4096, 8)
    h = Harness(page, g, bundle).open(timeout_ms=120_000)
    h.wait_images(timeout_ms=120_000)
    assert len(rendered_cards(page)) < 60
    assert page.text_content(".rw-status").startswith("4096 neurons")
    # jump to the middle: the cards there render and only their images are fetched
    n_before = len(h.messages)
    page.eval_on_selector(".rw-viewport", "el => { el.scrollTop = el.scrollHeight / 2; }")
    page.wait_for_function(
        "() => [...document.querySelectorAll('.rw-card')]"
        ".some(c => c.style.display !== 'none' && Number(c.dataset.id) > 1500)"
    )
    h.wait_images(timeout_ms=120_000)
    shown = rendered_cards(page)
    assert len(shown) < 60 and min(shown) > 1000 and max(shown) < 3100, shown
    fetched = [k for m in h.messages[n_before:] if m["type"] == "fetch" for k in m["keys"]]
    wanted = {k for c in g.cards if c["id"] in shown for k in c["images"]}
    assert fetched and set(fetched) <= wanted
    assert page.errors == []


LONG = "(NOT watermark AND NOT circle) OR (star AND red AND large AND striped)"

LAYOUT = """() => {
  const vp = document.querySelector('.rw-viewport').getBoundingClientRect();
  const cards = [...document.querySelectorAll('.rw-card')].filter((c) => c.style.display !== 'none');
  const boxes = cards.map((c) => c.getBoundingClientRect());
  const head = cards[0].querySelector('.rw-card-head');
  const thumb = cards[0].querySelector('img.rw-thumb').getBoundingClientRect();
  const lineHeight = parseFloat(getComputedStyle(head).lineHeight);
  return {
    viewportLeft: vp.left, viewportRight: vp.left + document.querySelector('.rw-viewport').clientWidth,
    left: Math.min(...boxes.map((b) => b.left)), right: Math.max(...boxes.map((b) => b.right)),
    columns: new Set(boxes.map((b) => Math.round(b.left))).size,
    headHeight: head.getBoundingClientRect().height, lineHeight,
    headCut: head.scrollHeight > head.clientHeight + 1, headTitle: head.title,
    thumb: [thumb.width, thumb.height],
  };
}"""


def test_cards_fill_the_width_and_labels_wrap(page, bundle, artifacts):
    cards = [
        {"id": i, "label": LONG if i % 2 else f"top #{i} · circle", "images": [i]}
        for i in range(40)
    ]
    g = NeuronGallery(cards, image_source=lambda keys: [thumbnail(int(x)) for x in keys])
    assert g.thumb_size == 96
    h = Harness(page, g, bundle).open()
    h.wait_images()
    box = page.evaluate(LAYOUT)
    assert box["columns"] >= 4, box
    # no strip left empty: the grid's padding (8 px) and at most a pixel of rounding per column
    assert box["viewportRight"] - box["right"] <= 8 + box["columns"], box
    assert box["left"] - box["viewportLeft"] <= 9, box
    # the long label wraps to two lines, is cut there, and shows whole on hover
    page.eval_on_selector(".rw-viewport", "el => { el.scrollTop = 0; }")
    first_long = page.locator(".rw-card[data-id='1'] .rw-card-head")
    height = first_long.evaluate("e => e.getBoundingClientRect().height")
    assert abs(height - 2 * box["lineHeight"]) <= 1, (height, box)
    assert first_long.evaluate("e => e.scrollHeight > e.clientHeight + 1")
    assert first_long.get_attribute("title") == f"#1 {LONG}"
    label = page.locator(".rw-card[data-id='1'] .rw-card-label")
    assert label.get_attribute("title") == LONG
    # the short label is whole on its first line
    short = page.locator(".rw-card[data-id='0'] .rw-card-head")
    assert not short.evaluate("e => e.scrollHeight > e.clientHeight + 1")
    assert box["thumb"] == [96, 96], box
    page.screenshot(path=str(artifacts / "gallery-layout.png"))

    # thumb_size from Python: larger thumbnails, the grid still as wide as the widget
    g.thumb_size = 160
    h.push("thumb_size")
    page.wait_for_function(
        "() => document.querySelector('.rw-card img.rw-thumb').getBoundingClientRect().width === 160"
    )
    h.wait_images()
    bigger = page.evaluate(LAYOUT)
    assert bigger["thumb"] == [160, 160]
    assert bigger["viewportRight"] - bigger["right"] <= 8 + bigger["columns"], bigger
