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
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, quote, urlparse

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
WAIT = 15  # seconds for any one page, element or process step
STATE_MISMATCH = "Invalid authorization request state."  # passport-oauth2's words, rendered by the app
# Port 1 is on Chromium's list of ports it refuses to connect to (ERR_UNSAFE_PORT), checked before any proxy:
# the services below that cannot be switched off are pointed there, so they fail inside the browser.
UNREACHABLE = "https://127.0.0.1:1/"
# Headless, as root (no sandbox), no GPU, a small /dev/shm (containers); then no background traffic, so the
# capture holds the sign-in and nothing else: the flags of https://github.com/GoogleChrome/chrome-launcher/blob/
# main/docs/chrome-flags-for-tools.md, the network time queries (NetworkTimeServiceQuerying), and two services
# no flag turns off, redirected to UNREACHABLE: the Google account list a profile fetches once its network is
# up (ListAccounts, https://github.com/chromiumembedded/cef/issues/4276) and the component updater's on-demand
# installs. Checked by test_browser_sends_only_the_sign_in.
CHROMIUM_ARGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1024,768",
    "--no-first-run", "--no-default-browser-check", "--disable-search-engine-choice-screen",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-default-apps",
    "--disable-extensions", "--disable-component-extensions-with-background-pages", "--disable-domain-reliability",
    "--disable-client-side-phishing-detection", "--disable-breakpad", "--no-pings", "--metrics-recording-only",
    "--password-store=basic",
    "--disable-features=Translate,OptimizationHints,MediaRouter,DialMediaRouteProvider,AutofillServerCommunication,"
    "CertificateTransparencyComponentUpdater,InterestFeedContentSuggestions,NetworkTimeServiceQuerying",
    f"--gaia-url={UNREACHABLE}", f"--component-updater=url-source={UNREACHABLE}",
)


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
    """Kills what is left of the processes started (checked by name, so a reused id is left alone)."""
    for pid in pids:
        try:
            if b"chrom" in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, signal.SIGKILL)
        except (OSError, ProcessLookupError):
            pass


@contextlib.contextmanager
def chromium(proxy, workdir, trust_ca=True):
    """Headless Chromium whose only proxy is authtap and whose only added trust is authtap's CA, imported
    into its own NSS database (its own HOME). Yields the WebDriver; quits it and kills what remains of the
    driver and browser processes by their ids."""
    assert Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists(), \
        "Debian's chromium and chromium-driver are missing: scripts/install-deps --test installs them"
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
    for arg in CHROMIUM_ARGS + (f"--user-data-dir={workdir / 'profile'}",
                                f"--proxy-server=http://127.0.0.1:{proxy.port}", "--proxy-bypass-list=<-loopback>"):
        options.add_argument(arg)
    # Debian makes DuckDuckGo the default search engine, whose new tab page (start.duckduckgo.com) a fresh
    # profile loads: a search engine without a new tab page keeps the browser off the network. No password
    # manager: it would send a leak check (passwordsleakcheck-pa.googleapis.com) after the login form.
    options.add_experimental_option("prefs", {
        "default_search_provider_data": {"template_url_data": {
            "short_name": "none", "keyword": "none", "url": f"{UNREACHABLE}?q={{searchTerms}}", "new_tab_url": ""}},
        "credentials_enable_service": False, "profile.password_manager_enabled": False,
        "profile.password_manager_leak_detection": False})
    with warnings.catch_warnings():  # Selenium's own connection to chromedriver goes direct, whatever the env says
        warnings.simplefilter("ignore", DeprecationWarning)
        options.ignore_local_proxy_environment_variables()
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
        raise AssertionError(f"timed out waiting for {what}; the browser is at {driver.current_url}:\n"
                             f"{body_text(driver)[:1500]}") from None


def body_text(driver):
    return driver.execute_script("return document.body ? document.body.innerText : ''") or ""


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

# The healthy sign-in, leg by leg, as the capture numbers its exchanges (as they complete: the app's token
# request completes while the callback waits for it, so it comes before the callback).
FLOW = (("app", "GET", "/login"), ("dot", "GET", "/o/authorize/"), ("dot", "GET", "/accounts/login/"),
        ("dot", "POST", "/accounts/login/"), ("dot", "GET", "/o/authorize/"), ("dot", "POST", "/o/authorize/"),
        ("dot", "POST", "/o/token/"), ("app", "GET", "/callback"), ("app", "GET", "/"))
FLOW_STATUS = (302, 302, 200, 302, 200, 302, 200, 302, 200)


@dataclass
class Run:
    """What one scenario left behind: its two servers, the capture (exchanges and relayed tunnels) and the
    analysis."""
    servers: dict  # "app" / "dot" -> base URL
    exchanges: list
    tunnels: list
    analysis: dict
    notes: dict = field(default_factory=dict)

    def server(self, x):
        """Which of the scenario's servers an exchange went to, or None (anything else is not ours)."""
        for name, base in self.servers.items():
            u = urlparse(base)
            if (x["host"], x["port"]) == (u.hostname, u.port):
                return name
        return None

    def others(self):
        """Hosts other than the scenario's servers that the browser reached through authtap."""
        return sorted({(x["host"], x["port"]) for x in self.exchanges + self.tunnels if not self.server(x)})

    def step(self, x):
        return self.server(x), x["method"], x["target"].split("?")[0]

    def steps(self):
        """The capture's exchanges that are steps of the sign-in, in capture order."""
        return [x for x in sorted(self.exchanges, key=lambda x: x["id"]) if self.step(x) in FLOW]

    def at(self, server, method, path):
        return [x for x in self.steps() if self.step(x) == (server, method, path)]

    def show(self):
        brief = [{k: x.get(k) for k in ("id", "method", "host", "port", "target", "status", "httpVersion")}
                 for x in self.exchanges]
        tunnels = [{k: t.get(k) for k in ("host", "port")} for t in self.tunnels]
        return json.dumps({"exchanges": brief, "tunnels": tunnels, "transactions": self.analysis["transactions"],
                           "findings": self.analysis["findings"]}, indent=1)[:12000]


def finish(proxy, servers, notes=None):
    """Stops the proxy (so every exchange is stored and its final analysis runs) and reads the capture."""
    assert proxy.stop() == 0, proxy.stderr_path.read_text()
    both = proxy.exchanges(tunnels=True)
    return Run(servers, both["exchanges"], both["tunnels"], proxy.analyze(), notes or {})


def errors(run):
    return [f for f in run.analysis["findings"] if f["severity"] == "error"]


def header(x, name):
    return next((v for k, v in x["requestHeaders"] if k.lower() == name), "")


def response_header(x, name):
    return next((v for k, v in x["responseHeaders"] if k.lower() == name), "")


def by_browser(x):
    """The browser's own requests, as opposed to the app's back channel (Python requests)."""
    return "HeadlessChrome/" in header(x, "user-agent")


def members(t):
    return {m["id"]: m["leg"] for m in t["exchanges"]}


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
            landed = browser.current_url
        return finish(proxy, {"app": app, "dot": dot["url"]}, {"state": state, "user": user, "landed": landed})
    finally:
        proxy.stop()


def test_browser_sign_in_is_captured_leg_by_leg_in_order(healthy):
    """Every leg of the sign-in went through authtap, the browser's and the app's back channel alike, in the
    order the flow made them."""
    run = healthy
    assert run.notes["user"].startswith("Signed in as sub=") and run.notes["landed"] == run.servers["app"] + "/", \
        run.notes
    steps = run.steps()
    assert [run.step(x) for x in steps] == list(FLOW), run.show()
    assert [x["status"] for x in steps] == list(FLOW_STATUS), run.show()
    state = f"state={run.notes['state']}"
    start, authorize, _, login, _, consent, token, callback, _ = steps
    assert state in response_header(start, "location") and state in authorize["target"], run.show()
    assert f"redirect_uri={quote(run.servers['app'] + '/callback', safe='')}" in authorize["target"], run.show()
    assert "code_challenge_method=S256" in authorize["target"], run.show()
    assert state in callback["target"] and "code=" in callback["target"], run.show()
    # The app redeems the code itself, on its back channel: not the browser.
    assert not by_browser(token) and all(by_browser(x) for x in steps if x is not token), run.show()
    assert login["requestBody"] is not None and "csrfmiddlewaretoken" in login["requestBody"], run.show()
    assert consent["id"] < token["id"] < callback["id"], run.show()


def test_browser_sign_in_is_one_transaction_without_errors(healthy):
    """The analyzer sees one sign-in, complete, and nothing wrong with it."""
    run = healthy
    assert not errors(run), "the analyzer flagged a healthy browser sign-in:\n" + run.show()
    [t] = run.analysis["transactions"]
    assert t["outcome"] == "ok" and t["client_id"] == CLIENT_ID and t["state"] == run.notes["state"], run.show()
    held = members(t)
    for x in run.at("dot", "GET", "/o/authorize/") + run.at("dot", "POST", "/o/authorize/"):
        assert held.get(x["id"]) == "authorize", f"#{x['id']} {x['target'][:60]}\n" + run.show()
    [callback], [token] = run.at("app", "GET", "/callback"), run.at("dot", "POST", "/o/token/")
    assert held.get(callback["id"]) == "callback" and held.get(token["id"]) == "token", run.show()
    assert list(held) == sorted(held), run.show()


def test_browser_sign_in_transaction_holds_the_login_post(healthy):
    """The login form POST is a leg of the sign-in (its `next` carries the authorization request, state
    included): the transaction must show it between the authorization request and the consent."""
    run = healthy
    [t] = run.analysis["transactions"]
    [login] = run.at("dot", "POST", "/accounts/login/")
    assert login["id"] in members(t), (f"the login form POST #{login['id']} is not in the sign-in's transaction "
                                       f"{members(t)}\n" + run.show())


def test_browser_legs_use_http2_to_authtap(healthy):
    """Chromium offers h2 in ALPN on every TLS connection; once authtap speaks HTTP/2 to clients, each of
    the browser's exchanges through its CONNECT tunnels is HTTP/2 and is recorded as such."""
    run = healthy
    seen = [(x["id"], x["target"].split("?")[0], x["httpVersion"], (x.get("clientTLS") or {}).get("alpn"))
            for x in run.exchanges if run.server(x) and by_browser(x)]
    assert len(seen) >= len(FLOW) - 1, run.show()
    assert all(v == "HTTP/2" and alpn == "h2" for _, _, v, alpn in seen), \
        f"browser exchanges (id, path, version, alpn): {seen}"


def test_browser_sends_only_the_sign_in(healthy):
    """Loopback only: the browser's background services are off or pointed at a port it refuses, so the
    capture holds the two servers of the sign-in and nothing else."""
    assert not healthy.others(), f"the browser reached other hosts through authtap: {healthy.others()}"


# ---------- the trust path ----------

@pytest.mark.faults
def test_browser_without_authtaps_ca_refuses_authtap(pki, dot, tmp_path):
    """The control for the trust path: the same browser with an empty NSS database must refuse authtap's
    certificate (nothing is ignored), and authtap must say the client did not trust its CA."""
    proxy = Proxy(tmp_path, pki)
    try:
        with chromium(proxy, tmp_path / "browser", trust_ca=False) as browser:
            browser.get(f"{dot['url']}/accounts/login/")
            page = wait(browser, lambda d: "ERR_CERT_AUTHORITY_INVALID" in body_text(d) and d.title,
                        "Chromium's certificate error")
        run = finish(proxy, {"dot": dot["url"]})
    finally:
        proxy.stop()
    assert page and not [x for x in run.exchanges if run.server(x) and x["status"]], run.show()
    faults = [f for f in errors(run) if f["rule"] == "tls-fault" and f["evidence"].get("host") == "localhost"]
    assert faults and "rejected authtap's certificate" in faults[0]["title"], run.show()


# ---------- scenario 2: two tabs, the first one finishes ----------

@pytest.fixture(scope="module")
def two_tabs(pki, dot, tmp_path_factory):
    """The same sign-in started in two tabs (the second overwrites the app's one pending state), then the
    first tab signs in and approves: its callback carries the first state, the app expects the second."""
    d = tmp_path_factory.mktemp("browser-two-tabs")
    proxy = Proxy(d, pki)
    try:
        with client_app(proxy, dot, pki, d / "app") as app, chromium(proxy, d / "browser") as browser:
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
        notes = {"first": first_state, "second": second_state, "status": status, "messages": messages}
        return finish(proxy, {"app": app, "dot": dot["url"]}, notes)
    finally:
        proxy.stop()


def test_two_tabs_the_app_rejects_the_first_tabs_callback(two_tabs):
    """The app keeps one pending state per browser, as passport-oauth2 with cookie-session does: the first
    tab's callback is refused with passport's words, and its code is never redeemed."""
    run, notes = two_tabs, two_tabs.notes
    assert notes["first"] != notes["second"], notes
    assert notes["status"] == "403" and notes["messages"] == [STATE_MISMATCH], notes
    states = [parse_qs(urlparse(x["target"]).query).get("state", [None])[0]
              for x in run.at("dot", "GET", "/o/authorize/")]
    # Tab 1 asks, tab 2 asks, tab 1 asks again after the login form (and shows the consent page).
    assert states == [notes["first"], notes["second"], notes["first"]], run.show()
    [callback] = run.at("app", "GET", "/callback")
    assert callback["status"] == 403 and f"state={notes['first']}" in callback["target"], run.show()
    assert not run.at("dot", "POST", "/o/token/"), "the app rejected the callback but redeemed its code\n" + run.show()
    assert not run.others(), f"the browser reached other hosts through authtap: {run.others()}"


@pytest.mark.faults
def test_two_tabs_analyzed_as_state_mismatch_from_a_concurrent_sign_in(two_tabs):
    """The analyzer must name the cause, not just the symptom: a second sign-in (the other tab) started
    after the first one and before its callback came back."""
    run, notes = two_tabs, two_tabs.notes
    found = errors(run)
    mismatch = [f for f in found if f["rule"] == "state-mismatch"]
    assert mismatch, "no state-mismatch finding for a callback the app rejected for its state:\n" + run.show()
    assert [f["rule"] for f in found] == ["state-mismatch"], "one root cause expected:\n" + run.show()
    [f] = mismatch
    [callback] = run.at("app", "GET", "/callback")
    [second] = [x for x in run.at("dot", "GET", "/o/authorize/") if f"state={notes['second']}" in x["target"]]
    assert f["root_cause"] and callback["id"] in f["exchanges"], run.show()
    assert f["evidence"].get("later_sign_in") == f"#{second['id']}", \
        "the evidence does not name the concurrent sign-in (tab 2's authorization request):\n" + run.show()
    said = f"{f['title']} {f.get('explanation', '')}"
    assert "second sign-in" in said, "the finding does not say a second sign-in caused it:\n" + run.show()
