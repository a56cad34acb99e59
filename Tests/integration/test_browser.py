"""A real browser end to end: Debian's Chromium, headless, driven by Selenium with Debian's
chromedriver, signs in through authtap to a real client application (browserapp/serve.py) at a real
authorization server (authserver2/, django-oauth-toolkit: Django's CSRF-protected login form, DOT's
consent page, PKCE required), all on loopback.

The trust path is part of what is tested: Chromium trusts authtap's CA only because the test imports it
into the browser's own NSS database ($HOME/.pki/nssdb, with certutil); no certificate error is ignored.
`--proxy-server` sends every request through authtap, loopback included (`--proxy-bypass-list=<-loopback>`:
Chromium bypasses the proxy for loopback by default), and the app makes its back-channel token request
through authtap too, so the capture holds every leg of the sign-in.

Scenarios: a healthy authorization code + PKCE sign-in (one transaction, every leg in order, no error
finding; the browser's legs over HTTP/2), and the same sign-in started in two tabs where the first tab
finishes: the app (which keeps one pending state per browser, as passport-oauth2 with cookie-session does)
rejects the callback, and the analyzer must name the concurrent sign-in as the cause.

Bounded: every wait has a timeout (WAIT), Selenium Manager is never used (explicit driver and browser
paths, so nothing is downloaded), and every process started is stopped by its id."""
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from selenium import webdriver
from selenium.common.exceptions import TimeoutException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from conftest import Proxy, port_file_server

HERE = Path(__file__).parent
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
USERNAME, PASSWORD = "alice", "alice-password-0001"
CLIENT_ID, CLIENT_SECRET = "browserapp", "browserapp-secret-0001"
WAIT = 20  # seconds for any one page, element or process step
STATE_MISMATCH = "Invalid authorization request state."  # passport-oauth2's words, rendered by the app

pytestmark = pytest.mark.skipif(not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()),
                                reason="Debian chromium and chromium-driver are not installed "
                                       "(scripts/install-deps --test installs them)")


# ---------- processes: the authorization server, the client app, the browser ----------

@pytest.fixture(scope="module")
def dot(pki, tmp_path_factory):
    """authserver2 (django-oauth-toolkit), shared by the scenarios: each browser has its own profile,
    so each starts signed out. Codes live DOT's default 60 s: a browser is not a stopwatch."""
    d = tmp_path_factory.mktemp("authserver2")
    cert, key = pki["good"]
    env = dict(os.environ, AUTHSERVER2_DATA=str(d), AUTHSERVER2_CODE_SECONDS="60")
    with port_file_server(HERE / "authserver2" / "serve.py", cert, key, d, env=env, start_timeout=60) as url:
        yield {"url": url, "data": d}


@contextlib.contextmanager
def client_app(proxy, dot, pki, workdir):
    """Starts browserapp/serve.py (its back channel through `proxy`) and registers its redirect_uri at
    DOT. The app is addressed as 127.0.0.1, the server as localhost: two sites, as in real life, so
    their cookies stay apart."""
    workdir.mkdir()
    cert, key = pki["good"]
    env = dict(os.environ, BROWSERAPP_AUTHORIZE_URL=f"{dot['url']}/o/authorize/",
               BROWSERAPP_TOKEN_URL=f"{dot['url']}/o/token/", BROWSERAPP_CLIENT_ID=CLIENT_ID,
               BROWSERAPP_CLIENT_SECRET=CLIENT_SECRET, BROWSERAPP_PROXY=proxy.url, BROWSERAPP_CA_BUNDLE=proxy.bundle,
               BROWSERAPP_HOST="127.0.0.1")
    with port_file_server(HERE / "browserapp" / "serve.py", cert, key, workdir, env=env) as url:
        base = url.replace("https://localhost:", "https://127.0.0.1:")
        reg = subprocess.run([sys.executable, str(HERE / "browserapp" / "register.py"), str(dot["data"]), CLIENT_ID,
                              CLIENT_SECRET, f"{base}/callback"], capture_output=True, timeout=60)
        assert reg.returncode == 0, reg.stderr.decode()
        yield base


def _children(pid):
    """Every descendant of a process, from /proc (the browser's processes under chromedriver)."""
    parents = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            parents.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(d.name))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _kill(pids):
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def chromium(proxy, workdir, trust_ca=True):
    """Headless Chromium whose only proxy is authtap and whose only added trust is authtap's CA, imported
    into its own NSS database (its own HOME). Yields the WebDriver; quits it and kills what remains of the
    driver and browser processes by their ids."""
    home = workdir / "home"
    nssdb = home / ".pki" / "nssdb"
    nssdb.mkdir(parents=True)
    subprocess.run(["certutil", "-d", f"sql:{nssdb}", "-N", "--empty-password"], check=True, capture_output=True,
                   timeout=WAIT)
    if trust_ca:
        subprocess.run(["certutil", "-d", f"sql:{nssdb}", "-A", "-t", "C,,", "-n", "authtap", "-i", proxy.ca],
                       check=True, capture_output=True, timeout=WAIT)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--user-data-dir={workdir / 'profile'}", f"--proxy-server=http://127.0.0.1:{proxy.port}",
                "--proxy-bypass-list=<-loopback>",
                # No background traffic: the capture holds the sign-in and nothing else.
                "--no-first-run", "--no-default-browser-check", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-default-apps", "--disable-extensions",
                "--disable-domain-reliability", "--disable-client-side-phishing-detection",
                "--disable-features=OptimizationHints,Translate,MediaRouter,AutofillServerCommunication",
                "--metrics-recording-only", "--password-store=basic", "--window-size=1024,768"):
        options.add_argument(arg)
    options.ignore_local_proxy_environment_variables()  # Selenium's own connection to chromedriver: direct
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["HOME"] = str(home)
    service = Service(executable_path=CHROMEDRIVER, env=env, log_output=str(workdir / "chromedriver.log"))
    driver = None
    pids = []
    try:
        driver = webdriver.Chrome(service=service, options=options)
        driver.set_page_load_timeout(WAIT)
        driver.set_script_timeout(WAIT)
        pids = [service.process.pid, *_children(service.process.pid)]
        yield driver
    finally:
        if service.process is not None:
            pids = list(dict.fromkeys([*pids, service.process.pid, *_children(service.process.pid)]))
        if driver is not None:
            with contextlib.suppress(WebDriverException):
                driver.quit()
        service.stop()
        _kill(pids)


# ---------- driving the browser ----------

def wait(driver, condition, what, timeout=WAIT):
    """An explicit, bounded wait that says where the browser was when it gave up."""
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition)
    except TimeoutException:
        text = driver.execute_script("return document.body ? document.body.innerText : ''") or ""
        raise AssertionError(f"timed out waiting for {what}; the browser is at {driver.current_url}:\n{text[:1500]}")


def element(driver, css, what):
    return wait(driver, lambda d: (d.find_elements(By.CSS_SELECTOR, css) or [None])[0], what)


def login_page(driver):
    """Waits for DOT's sign-in page and returns the state of the authorization request it resumes."""
    element(driver, "form#login input[name=password]", "the authorization server's sign-in form")
    nxt = parse_qs(urlparse(driver.current_url).query)["next"][0]
    return parse_qs(urlparse(nxt).query)["state"][0]


def sign_in(driver):
    """Fills Django's login form (its CSRF token is in the form) and submits it like a user."""
    driver.find_element(By.ID, "id_username").send_keys(USERNAME)
    driver.find_element(By.ID, "id_password").send_keys(PASSWORD)
    form = driver.find_element(By.CSS_SELECTOR, "form#login")
    form.find_element(By.CSS_SELECTOR, "input[type=submit]").click()


def consent_if_asked(driver, app):
    """Approves on DOT's consent page if it is shown; returns once the browser is back at the app."""
    def next_step(d):
        if d.current_url.startswith(app):
            return "app"
        if d.find_elements(By.CSS_SELECTOR, "form#authorizationForm input[name=allow]"):
            return "consent"
        return None
    if wait(driver, next_step, "the consent page or the app") == "consent":
        driver.find_element(By.CSS_SELECTOR, "form#authorizationForm input[name=allow]").click()
        wait(driver, lambda d: d.current_url.startswith(app), "the redirect back to the app")


# ---------- the capture ----------

@dataclass
class Run:
    """What one scenario left behind: its servers, the capture and the analysis."""
    app: str
    dot: str
    exchanges: list
    analysis: dict
    notes: dict = field(default_factory=dict)

    def ours(self):
        """The exchanges with the two servers of the scenario (anything else the browser sent is not ours)."""
        mine = {_origin(self.app), _origin(self.dot)}
        return sorted((x for x in self.exchanges if (x["host"], x["port"]) in mine), key=lambda x: x["id"])

    def legs(self):
        """The sign-in's legs, each the list of matching exchanges in capture order."""
        def at(base, method, path):
            return [x for x in self.ours() if (x["host"], x["port"]) == _origin(base) and x["method"] == method
                    and x["target"].split("?")[0] == path]
        return {"authorize": [x for x in at(self.dot, "GET", "/o/authorize/") if "state=" in x["target"]],
                "login": at(self.dot, "POST", "/accounts/login/"), "consent": at(self.dot, "POST", "/o/authorize/"),
                "callback": at(self.app, "GET", "/callback"), "token": at(self.dot, "POST", "/o/token/")}

    def show(self):
        brief = [{k: x.get(k) for k in ("id", "method", "host", "port", "target", "status", "httpVersion")}
                 for x in self.exchanges]
        return json.dumps({"exchanges": brief, "transactions": self.analysis["transactions"],
                           "findings": self.analysis["findings"]}, indent=1)[:12000]


def _origin(url):
    u = urlparse(url)
    return u.hostname, u.port


def finish(proxy, app, dot, notes=None):
    """Stops the proxy (so every exchange is stored and its final analysis runs) and reads the capture."""
    assert proxy.stop() == 0, proxy.stderr_path.read_text()
    return Run(app, dot, proxy.exchanges(), proxy.analyze(), notes or {})


def errors(run):
    return [f for f in run.analysis["findings"] if f["severity"] == "error"]


# ---------- scenario 1: a healthy sign-in ----------

@pytest.fixture(scope="module")
def healthy(pki, dot, tmp_path_factory):
    """One browser sign-in, start to finish: /login at the app, DOT's authorize, the login form POST,
    the consent POST, the callback, and the app's token request; shared by the tests that judge it."""
    d = tmp_path_factory.mktemp("browser-healthy")
    proxy = Proxy(d, pki)
    try:
        with client_app(proxy, dot, pki, d / "app") as app, chromium(proxy, d / "browser") as browser:
            browser.get(f"{app}/login")
            state = login_page(browser)
            sign_in(browser)
            consent_if_asked(browser, app)
            user = element(browser, "#user", "the app's signed-in page").text
            assert user.startswith("Signed in as sub="), user
            landed = browser.current_url
        return finish(proxy, app, dot["url"], {"state": state, "landed": landed})
    finally:
        proxy.stop()


def test_browser_sign_in_is_one_ordered_transaction_without_errors(healthy):
    run = healthy
    assert run.notes["landed"] == f"{run.app}/", run.notes
    legs = run.legs()
    for name, found in legs.items():
        assert len(found) == 1, f"{name}: {len(found)} exchanges\n{run.show()}"
    leg = {name: found[0] for name, found in legs.items()}
    # The browser's legs, and the app's back channel to the token endpoint, in the order the flow made them.
    order = [leg[n]["id"] for n in ("authorize", "login", "consent", "callback")]
    assert order == sorted(order), run.show()
    assert f"state={run.notes['state']}" in leg["authorize"]["target"], run.show()
    assert leg["login"]["status"] == 302 and leg["consent"]["status"] == 302, run.show()
    assert leg["callback"]["status"] == 302 and f"state={run.notes['state']}" in leg["callback"]["target"], run.show()
    assert leg["token"]["status"] == 200, run.show()
    # The token request is made while the callback waits for it: it starts after the callback's request.
    assert leg["consent"]["id"] < leg["token"]["id"], run.show()

    assert not errors(run), "the analyzer flagged a healthy browser sign-in:\n" + run.show()
    # One sign-in is one transaction, holding each leg.
    ids = {x["id"] for x in leg.values()}
    holding = [t for t in run.analysis["transactions"] if ids & set(_transaction_ids(t))]
    assert len(holding) == 1, run.show()
    [t] = holding
    assert ids <= set(_transaction_ids(t)), run.show()
    assert t.get("outcome") == "ok" and t.get("client_id") == CLIENT_ID, json.dumps(t, indent=1)


def _transaction_ids(t):
    """The exchange ids a transaction holds, whatever the name of its list."""
    for key in ("exchanges", "exchange_ids", "legs"):
        if key in t:
            return [x if isinstance(x, int) else x.get("id") for x in t[key]]
    raise AssertionError("no exchange list in transaction: " + json.dumps(t, indent=1))


def test_browser_legs_use_http2_to_authtap(healthy):
    """Chromium offers h2 in ALPN on every TLS connection; once authtap speaks HTTP/2 to clients, each of
    the browser's exchanges through its CONNECT tunnels is HTTP/2 and is recorded as such."""
    run = healthy
    legs = run.legs()
    browser_legs = [x for name, xs in legs.items() if name != "token" for x in xs]
    assert browser_legs, run.show()
    seen = [(x["id"], x["target"].split("?")[0], x["httpVersion"], (x.get("clientTLS") or {}).get("alpn"))
            for x in browser_legs]
    assert all(v == "HTTP/2" and alpn == "h2" for _, _, v, alpn in seen), f"browser legs (id, path, version, alpn): {seen}"


# ---------- scenario 2: two tabs, the first one finishes ----------

@pytest.mark.faults
def test_two_tabs_state_mismatch_is_a_concurrent_sign_in(pki, dot, tmp_path):
    proxy = Proxy(tmp_path, pki)
    try:
        with client_app(proxy, dot, pki, tmp_path / "app") as app, chromium(proxy, tmp_path / "browser") as browser:
            browser.get(f"{app}/login")
            first_state = login_page(browser)
            first = browser.current_window_handle
            browser.switch_to.new_window("tab")
            browser.get(f"{app}/login")  # the app's session cookie now holds only this sign-in's state
            second_state = login_page(browser)
            browser.switch_to.window(first)
            sign_in(browser)
            consent_if_asked(browser, app)
            status = element(browser, "#status", "the app's error page").text
            messages = [m.text for m in browser.find_elements(By.CSS_SELECTOR, "li.message")]
        run = finish(proxy, app, dot["url"])
    finally:
        proxy.stop()
    assert first_state != second_state
    assert status == "403" and messages == [STATE_MISMATCH], (status, messages)

    legs = run.legs()
    states = [parse_qs(urlparse(x["target"]).query)["state"][0] for x in legs["authorize"]]
    assert first_state in states and second_state in states, run.show()
    [cb] = legs["callback"]
    assert cb["status"] == 403 and f"state={first_state}" in cb["target"], run.show()
    assert not legs["token"], "the app rejected the callback: it must not redeem the code\n" + run.show()

    found = errors(run)
    mismatch = [f for f in found if f["rule"] == "state-mismatch"]
    assert mismatch, "no state-mismatch finding for a callback the app rejected for its state:\n" + run.show()
    assert [f["rule"] for f in found] == ["state-mismatch"], "one root cause expected:\n" + run.show()
    [f] = mismatch
    said = f"{f['title']} {f.get('explanation', '')}"
    # The cause: a second sign-in (the other tab) started after the first and before its callback.
    assert f["evidence"].get("later_sign_in"), "the evidence does not name the concurrent sign-in:\n" + run.show()
    assert "second sign-in" in said, "the finding does not say a second sign-in caused it:\n" + run.show()
    second = [x for x in legs["authorize"] if f"state={second_state}" in x["target"]]
    assert f["evidence"]["later_sign_in"] == f"#{second[0]['id']}", run.show()
