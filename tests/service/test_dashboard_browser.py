"""The dashboard in a real browser: headless Chromium (Debian's `chromium` and
`chromium-driver`, which `make test` installs) drives every page against a real daemon with
sleep-stage runners. A screenshot of each page goes to the test's directory, and also to
$TUNESCHED_SCREENSHOTS when set (how docs/dashboard-*.png are made)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service as ChromeService
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select, WebDriverWait

from scheduler.core import TERMINAL_JOB_STATES
from scheduler.testing import LocalCluster, wait_for
from simpletvm.spec import JobSpec

# slow enough that a job's progress is seen moving, quick enough for the fast suite
SECONDS = {"extract": 0.3, "search": 0.3, "build": 0.3, "profile": 0.3, "learn": 0.2,
           "compile": 0.3}
TARGET = {"kind": "llvm", "num-cores": 2}


def _binary(*names: str) -> str:
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    raise RuntimeError(f"{' or '.join(names)} not found: run `make test`, which installs "
                       "Debian's chromium and chromium-driver")


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = _binary("chromium", "chromium-browser")
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--window-size=1280,860", f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options,
                              service=ChromeService(_binary("chromedriver")))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def _shot(driver: WebDriver, out: Path, name: str) -> None:
    out.mkdir(exist_ok=True)
    driver.save_screenshot(str(out / f"dashboard-{name}.png"))
    extra = os.environ.get("TUNESCHED_SCREENSHOTS")
    if extra:
        Path(extra).mkdir(parents=True, exist_ok=True)
        shutil.copy(out / f"dashboard-{name}.png", Path(extra) / f"dashboard-{name}.png")


def _until(driver: WebDriver, condition, what: str, timeout: float = 30):
    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(
        lambda d: condition(d), message=f"waiting for {what}")


def _text(driver: WebDriver, selector: str) -> str:
    """The text of the first element `selector` matches, or "" (read in one script: the
    pages replace their tables on every refresh, so a found element can go stale)."""
    return driver.execute_script(
        "const e = document.querySelector(arguments[0]); return e ? e.textContent : '';",
        selector)


def _count(driver: WebDriver, selector: str) -> int:
    return driver.execute_script("return document.querySelectorAll(arguments[0]).length;",
                                 selector)


def _cell(driver: WebDriver, job: str, column: str) -> str:
    return _text(driver, f'#jobs tr[data-job="{job}"] td.{column}')


def test_every_page_shows_the_jobs_and_updates_live(tmp_path: Path, browser: WebDriver) -> None:
    out = tmp_path / "screenshots"
    with LocalCluster(tmp_path, {"box": 2}, seconds=SECONDS, http="127.0.0.1:0") as cluster:
        client, url = cluster.client, cluster.service.web.url
        jobs = [client.submit(JobSpec(model=model, target=TARGET, trials=48, batch_size=8))
                .job_id for model in ("zoo:mlp", "zoo:convnet")]
        cancelled = client.submit(JobSpec(model="zoo:mlp", name="to-cancel", target=TARGET,
                                          trials=48)).job_id
        client.cancel(cancelled)

        # the jobs table: every job, progress moving without a reload, the cancelled one
        browser.get(url)
        _until(browser, lambda d: all(_cell(d, j, "state") for j in [*jobs, cancelled]),
               "every submitted job in the table")
        assert _cell(browser, cancelled, "state") == "cancelled"
        browser.execute_script("window.sameDocument = 'yes';")
        before = _cell(browser, jobs[0], "trials")
        _until(browser, lambda d: _cell(d, jobs[0], "trials") not in ("", before),
               f"{jobs[0]}'s trials to move from {before}")
        _until(browser, lambda d: _cell(d, jobs[0], "best").endswith(" us"),
               f"{jobs[0]}'s best latency")
        assert browser.execute_script("return window.sameDocument;") == "yes"  # no reload
        assert int(browser.find_element(By.TAG_NAME, "body").get_attribute(
            "data-refreshes")) >= 2
        _shot(browser, out, "jobs")

        # a job page: its curve grows a point per learn, its task table, its leases
        browser.get(f"{url}jobs/{jobs[0]}")
        _until(browser, lambda d: _count(d, "#curve svg circle.point") >= 2,
               "two points on the curve")
        _until(browser, lambda d: _text(d, "#tasks tbody tr td") == "fake_dense",
               "the task table")
        assert _count(browser, "#curve svg polyline.curve") == 1
        _shot(browser, out, "job")

        # runners and hosts
        browser.get(f"{url}runners")
        _until(browser, lambda d: _count(d, "#runners tr[data-runner]") == 2, "both runners")
        assert _text(browser, '#hosts tr[data-host="box"] td:nth-child(2)') == "2/2"
        _shot(browser, out, "runners")

        # the Gantt: once the jobs end, a bar for every lease on every core it held
        for job in jobs:
            wait_for(lambda j=job: client.get(j).state in TERMINAL_JOB_STATES, 120,
                     f"{job} to end", interval=0.2)
        leases = client.timeline()
        browser.get(f"{url}timeline")
        Select(browser.find_element(By.ID, "window")).select_by_value("3600")
        want = sorted(x["lease_id"] for x in leases for _ in x["cores"])

        def bars(d: WebDriver) -> list[str]:
            return sorted(d.execute_script(
                "return [...document.querySelectorAll('#gantt svg g.lease rect.bar')]"
                ".map(r => r.parentNode.getAttribute('data-lease'));"))

        _until(browser, lambda d: bars(d) == want, f"{len(want)} lease bars")
        legend = " ".join(browser.execute_script(
            "return [...document.querySelectorAll('#gantt svg g.legend')]"
            ".map(g => g.textContent);"))
        assert all(job in legend for job in jobs)
        _shot(browser, out, "timeline")

        # a job page after the end: done, with its untuned and tuned latency
        browser.get(f"{url}jobs/{jobs[1]}")
        _until(browser, lambda d: _text(d, '#facts dd[data-fact="state"]') == "done", "done")
        assert "→" in _text(browser, '#facts dd[data-fact="untuned → tuned"]')
    assert all(len(x["cores"]) for x in leases)
    assert {p.name for p in out.iterdir()} == {f"dashboard-{n}.png" for n in
                                               ("jobs", "job", "runners", "timeline")}
    assert not [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]


def test_the_page_asks_for_a_token_when_the_scheduler_wants_one(tmp_path: Path,
                                                                browser: WebDriver) -> None:
    import json

    from scheduler.service.auth import Auth
    from scheduler.service.config import DaemonConfig

    from .test_security import TOKENS, _secret

    users = {name: {"token": tok, "admin": name == "root"} for name, tok in TOKENS.items()}
    auth = Auth.from_files(None, str(_secret(tmp_path / "users.json", json.dumps(users))))
    config = DaemonConfig(tmp_path / "state" / "s.db", auth=auth)
    with LocalCluster(tmp_path, {"box": 1}, seconds=SECONDS, config=config,
                      http="127.0.0.1:0", token=TOKENS["alice"]) as cluster:
        job = cluster.client.submit(JobSpec(model="zoo:mlp", target=TARGET, trials=8)).job_id
        url = cluster.service.web.url
        browser.get(url)
        form = _until(browser, lambda d: d.find_element(By.CSS_SELECTOR, "#login.shown form"),
                      "the token form")
        assert not browser.find_elements(By.CSS_SELECTOR, f'tr[data-job="{job}"]')
        form.find_element(By.TAG_NAME, "input").send_keys(TOKENS["alice"])
        form.find_element(By.TAG_NAME, "button").click()
        _until(browser, lambda d: _cell(d, job, "state"), "alice's job after the token")
        # bob, handing his token over in the URL fragment, does not see it
        browser.execute_script("sessionStorage.clear();")
        browser.get(f"{url}#token={TOKENS['bob']}")
        _until(browser, lambda d: _count(d, "#jobs td.empty"), "bob's empty table")
        assert job not in browser.page_source
        assert "token=" not in browser.current_url  # dropped from the address bar
