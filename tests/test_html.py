"""The HTML viewer: one self-contained page, inert against markup in the data, and stepping
through a counterexample in headless Chromium."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterator
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from checker.cli import main
from checker.html import to_html

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

ROOT = Path(__file__).resolve().parents[1]
A1 = "hugepage-over-converting-attrs__no-huge-range"
D4 = "tdx-without-mmio-caching__no-tdx-requires-mmio-caching"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
EVIL = "</script><script>alert(1)</script><!--"
DATA_OPEN = '<script type="application/json" id="counterexample">'


@pytest.fixture(scope="module")
def docs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """The JSON exports of a violation (A1, 8 steps) and a no-progress cycle (D4)."""
    out = tmp_path_factory.mktemp("export")
    result = {}
    for name in (A1, D4):
        assert main(["--spec", str(ROOT / "specs" / f"{name}.toml"), "--export", str(out), "--format", "json"]) == 0
        result[name] = json.loads((out / f"{name}.json").read_text())
    return result


@pytest.fixture(scope="module")
def a1(docs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return docs[A1]


def evil(doc: dict[str, Any]) -> dict[str, Any]:
    """`doc` with markup that would end the data block in a step's text, a value and a guard."""
    doc = copy.deepcopy(doc)
    doc["steps"][0]["text"] = EVIL
    field = next(iter(doc["steps"][0]["changes"]))
    doc["steps"][0]["changes"][field][1] = EVIL
    doc["start"]["ioctl.attributes"] = EVIL
    doc["guards_off"][0]["summary"] = EVIL + " & <b>bold</b>"
    return doc


def data_block(page: str) -> str:
    start = page.index(DATA_OPEN) + len(DATA_OPEN)
    return page[start:page.index("</script>", start)]


# --- the page as text ------------------------------------------------------------------


def test_self_contained(docs: dict[str, dict[str, Any]]) -> None:
    for doc in docs.values():
        page = to_html(doc)
        assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", page, re.I)
        assert "<link" not in page.lower()
        assert not re.search(r"\bsrc\s*=", page, re.I)
        assert "@import" not in page and "url(" not in page


def test_deterministic(a1: dict[str, Any]) -> None:
    assert to_html(a1) == to_html(a1) == to_html(copy.deepcopy(a1))


def test_static_title_and_invariant(a1: dict[str, Any]) -> None:
    page = to_html(a1)
    title = "KVM: x86/mmu: no_mixed_huge_page violated after 8 steps"
    assert f"<title>{escape(title)}</title>" in page
    assert f'<h1 id="title">{escape(title)}</h1>' in page
    section = page[page.index('id="invariant"'):]
    assert "no_mixed_huge_page" in section[:section.index("</section>")]
    assert 'id="status" role="status">step 0 of 8<' in page
    for n in range(9):
        assert f'id="step-{n}"' in page
    assert json.loads(data_block(page)) == a1


def test_markup_in_data_stays_in_the_json_block(a1: dict[str, Any]) -> None:
    doc = evil(a1)
    page = to_html(doc)
    # Two script elements: the data and the viewer's code; nothing in the data closes one.
    assert page.count("<script") == 2
    assert page.count("</script>") == 2
    assert "<!--" not in page
    block = data_block(page)
    assert not set("<>&") & set(block)
    assert json.loads(block) == doc
    assert escape(EVIL) in page  # the static swimlanes show it as text
    assert "<b>bold</b>" not in page


def test_cycle_marked(docs: dict[str, dict[str, Any]]) -> None:
    doc = docs[D4]
    assert doc["cycle"]["first_step"] == 5 and doc["cycle"]["steps"] == 3
    page = to_html(doc)
    assert "mmio_access_completes broken: tdx0 vCPU0 waits forever in a cycle of 3 steps" in page
    assert 'id="cycle-start"' in page and "repeat forever" in page
    assert "back to the state after step 4" in page
    for n in range(1, 8):
        assert (f'<tr id="step-{n}" class="step in-cycle"' in page) == (n >= 5)


# --- the page in headless Chromium -----------------------------------------------------


def _unavailable() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install selenium)"
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not path.exists():
            return f"{path} not found; install Debian's {package} (apt install chromium chromium-driver)"
    return None


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    """One headless Chromium for the module's tests."""
    missing = _unavailable()
    if missing:
        pytest.skip(f"headless Chromium not available: {missing}")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1440,900", f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        options.add_argument(arg)
    options.binary_location = str(CHROMIUM)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory, docs: dict[str, dict[str, Any]]) -> dict[str, str]:
    """file:// URLs of the written pages: A1, D4 and A1 with markup in its data."""
    out = tmp_path_factory.mktemp("html")
    urls = {}
    for name, doc in (*docs.items(), ("evil", evil(docs[A1]))):
        path = out / f"{name}.html"
        path.write_text(to_html(doc), encoding="utf-8")
        urls[name] = path.as_uri()
    return urls


def load(driver: WebDriver, url: str) -> None:
    # Via a blank page, so a URL that differs only in its fragment still loads afresh.
    driver.get("about:blank")
    driver.get(url)


def wait_for(driver: WebDriver, check: Callable[[WebDriver], bool], what: Callable[[], str]) -> None:
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        WebDriverWait(driver, 5, poll_frequency=0.02).until(check)
    except TimeoutException:
        pytest.fail(f"timed out waiting for {what()}")


def status(driver: WebDriver) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.ID, "status").text)


def at_step(driver: WebDriver, n: int, total: int) -> None:
    want = f"step {n} of {total}"
    wait_for(driver, lambda d: status(d) == want, lambda: f"{want!r} (status reads {status(driver)!r})")


def press(driver: WebDriver, *keys: str) -> None:
    from selenium.webdriver.common.by import By

    body = driver.find_element(By.TAG_NAME, "body")
    for key in keys:
        body.send_keys(key)


def classes(driver: WebDriver, css: str) -> set[str]:
    from selenium.webdriver.common.by import By

    return set((driver.find_element(By.CSS_SELECTOR, css).get_attribute("class") or "").split())


def changed_fields(driver: WebDriver) -> set[str]:
    from selenium.webdriver.common.by import By

    cells = driver.find_elements(By.CSS_SELECTOR, "#state .changed[data-field]")
    return {str(e.get_attribute("data-field")) for e in cells}


def no_errors(driver: WebDriver) -> None:
    errors = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
    assert not errors, errors


def test_browser_lists_the_trace(browser: WebDriver, pages: dict[str, str], a1: dict[str, Any]) -> None:
    from selenium.webdriver.common.by import By

    load(browser, pages[A1])
    at_step(browser, 0, 8)
    assert "current" in classes(browser, "#step-0")
    rows = browser.find_elements(By.CSS_SELECTOR, "#lanes tr.step:not(#step-0)")
    assert [r.get_attribute("id") for r in rows] == [f"step-{n}" for n in range(1, 9)]
    assert [r.find_element(By.CSS_SELECTOR, ".text").text for r in rows] == [s["text"] for s in a1["steps"]]
    heads = browser.find_elements(By.CSS_SELECTOR, "#lanes thead .lane-title")
    assert [h.text for h in heads] == [a["title"] for a in a1["actors"]]
    # Each step sits in its actor's lane.
    lanes = [a["id"] for a in a1["actors"]]
    for row, step in zip(rows, a1["steps"], strict=True):
        cells = row.find_elements(By.CSS_SELECTOR, "td")
        assert [bool(c.find_elements(By.CSS_SELECTOR, ".box")) for c in cells[1:]] == \
            [lane == step["actor"] for lane in lanes]
    assert "no_mixed_huge_page" in browser.find_element(By.ID, "invariant").text
    state = browser.find_element(By.ID, "state")
    assert state.find_element(By.CSS_SELECTOR, '[data-field="mem_attr_array[g1]"] .val').text == "SHARED"
    assert not changed_fields(browser)
    still = browser.find_element(By.CSS_SELECTOR, '#state tr[data-family="gmem_max_level"]')  # never changes
    assert still.is_displayed()
    browser.find_element(By.ID, "only-touched").click()
    wait_for(browser, lambda d: not still.is_displayed(), lambda: "the untouched fields to hide")
    assert browser.find_element(By.CSS_SELECTOR, '#state tr[data-family="mem_attr_array"]').is_displayed()
    no_errors(browser)


def test_browser_steps_with_the_keyboard(browser: WebDriver, pages: dict[str, str], a1: dict[str, Any]) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    load(browser, pages[A1])
    at_step(browser, 0, 8)
    press(browser, Keys.ARROW_RIGHT, Keys.ARROW_RIGHT, Keys.ARROW_RIGHT)
    at_step(browser, 3, 8)
    assert "current" in classes(browser, "#step-3")
    assert "current" not in classes(browser, "#step-0")
    step3 = a1["steps"][2]["changes"]
    assert changed_fields(browser) == set(step3)
    for field, (old, new) in step3.items():
        cell = browser.find_element(By.CSS_SELECTOR, f'#state [data-field="{field}"]')
        assert cell.find_element(By.CSS_SELECTOR, ".val").text == new
        assert cell.find_element(By.CSS_SELECTOR, ".old").text == old
        assert "changed" in classes(browser, f'#state tr[data-family="{field.split("[")[0]}"]')
    press(browser, Keys.ARROW_LEFT)
    at_step(browser, 2, 8)
    press(browser, Keys.END)
    at_step(browser, 8, 8)
    failing = '#state [data-field="mem_attr_array[g1]"]'
    assert "failing" in classes(browser, failing)
    assert browser.find_element(By.CSS_SELECTOR, f"{failing} .val").text == "PRIVATE"
    assert {str(e.get_attribute("data-field")) for e in browser.find_elements(By.CSS_SELECTOR, "#state .failing")
            if e.get_attribute("data-field")} == {"mem_attr_array[g1]"}
    press(browser, Keys.ARROW_RIGHT)  # no step beyond the last
    at_step(browser, 8, 8)
    press(browser, Keys.HOME)
    at_step(browser, 0, 8)
    assert "failing" not in classes(browser, failing)
    press(browser, "j", "n")
    at_step(browser, 2, 8)
    press(browser, "k")
    at_step(browser, 1, 8)
    press(browser, "p", Keys.ARROW_LEFT)
    at_step(browser, 0, 8)
    no_errors(browser)


def test_browser_click_and_fragment(browser: WebDriver, pages: dict[str, str]) -> None:
    from selenium.webdriver.common.by import By

    load(browser, pages[A1] + "#step=5")
    at_step(browser, 5, 8)
    assert "current" in classes(browser, "#step-5")
    browser.find_element(By.CSS_SELECTOR, "#step-6 td.n").click()
    at_step(browser, 6, 8)
    assert "current" in classes(browser, "#step-6") and "current" not in classes(browser, "#step-5")
    load(browser, pages[A1] + "#step=99")  # clamped to the last step
    at_step(browser, 8, 8)
    no_errors(browser)


def test_browser_cycle(browser: WebDriver, pages: dict[str, str], docs: dict[str, dict[str, Any]]) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    load(browser, pages[D4])
    at_step(browser, 0, 7)
    assert "repeat forever" in browser.find_element(By.ID, "cycle-start").text
    assert browser.find_element(By.ID, "cycle-end").text == "↺ back to the state after step 4"
    assert [n for n in range(1, 8) if "in-cycle" in classes(browser, f"#step-{n}")] == [5, 6, 7]
    assert "mmio_access_completes" in browser.find_element(By.ID, "invariant").text
    press(browser, Keys.END)
    at_step(browser, 7, 7)
    assert "failing" in classes(browser, '#state [data-field="vcpu_pc[tdx0.vcpu0]"]')
    no_errors(browser)


def test_browser_markup_in_data_is_text(browser: WebDriver, pages: dict[str, str]) -> None:
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    load(browser, pages["evil"])
    at_step(browser, 0, 8)
    assert len(browser.find_elements(By.TAG_NAME, "script")) == 2
    assert not browser.find_elements(By.TAG_NAME, "b")
    assert browser.find_element(By.CSS_SELECTOR, "#step-1 .text").text == EVIL
    assert browser.find_element(By.CSS_SELECTOR, '#state [data-field="ioctl.attributes"] .val').text == EVIL
    press(browser, Keys.ARROW_RIGHT)
    at_step(browser, 1, 8)
    assert len(browser.find_elements(By.TAG_NAME, "script")) == 2
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.accept()
