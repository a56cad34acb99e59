"""The canary test: known secrets in every masked position go through the proxy; none may reach
the database, its WAL, stdout, stderr or any file in the capture folder, and their fingerprints must."""
import base64
import hashlib
import hmac
import json
import subprocess
from pathlib import Path

import requests

from conftest import AUTHTAP, CANARY, canary_jwt


def fp(key, value):
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:12]


def test_canaries_never_reach_disk_logs_or_screen(make_proxy, upstreams):
    p = make_proxy("--proxy-auth", "dev:" + CANARY["proxy_pass"])
    port = upstreams["good"].port
    proxy_url = f"http://dev:{CANARY['proxy_pass']}@127.0.0.1:{p.port}"
    s = requests.Session()
    s.trust_env = False  # REQUESTS_CA_BUNDLE in the environment would override s.verify
    s.proxies = {"https": proxy_url, "http": proxy_url}
    s.verify = p.bundle
    base = f"https://localhost:{port}"
    # Query string (callback) + Referer + Cookie.
    r = s.get(f"{base}/hello?code={CANARY['query_code']}&state=st1",
              headers={"Cookie": f"session={CANARY['cookie']}; theme=dark", "Referer": f"https://app.test/cb?code={CANARY['referer_code']}"})
    assert r.status_code == 200
    # Form body token request with Basic client auth; response carries tokens and a JWT.
    basic = base64.b64encode(f"my-client:{CANARY['basic_secret']}".encode()).decode()
    r = s.post(f"{base}/token", headers={"Authorization": "Basic " + basic},
               data={"grant_type": "authorization_code", "code": CANARY["form_code"], "redirect_uri": "https://app.test/cb",
                     "client_id": "my-client", "client_secret": CANARY["client_secret"], "code_verifier": CANARY["code_verifier"]})
    assert r.json()["access_token"] == CANARY["resp_access"]
    r = s.post(f"{base}/token", data={"grant_type": "password", "username": "alice", "password": CANARY["password"], "client_id": "c"})
    r = s.post(f"{base}/token", data={"grant_type": "refresh_token", "refresh_token": CANARY["refresh_token"], "client_id": "c"})
    # JSON request body with a secret nested deep.
    r = s.post(f"{base}/submit", json={"outer": {"inner": [{"assertion": CANARY["nested_assertion"]}], "client_secret": CANARY["json_req_secret"]}})
    # Bearer + Set-Cookie in the response.
    r = s.get(f"{base}/userinfo", headers={"Authorization": "Bearer " + CANARY["bearer"]})
    assert r.json()["sub"] == "alice"
    # Location header with a code in the query and a token in the fragment.
    r = s.get(f"{base}/authorize?response_type=code&client_id=my-client&redirect_uri=https://app.test/cb&state=xyz", allow_redirects=False)
    assert r.status_code == 302
    r = s.post(f"{base}/device", data={"client_id": "tv"})
    assert r.json()["device_code"] == CANARY["device_code"]
    assert p.stop() == 0

    files = [p.db, Path(str(p.db) + "-wal"), Path(str(p.db) + "-shm"), p.stdout_path, p.stderr_path]
    files += [f for f in p.db.parent.iterdir() if f.is_file()]
    blob = b"".join(f.read_bytes() for f in files if f.exists())
    dump = subprocess.run([str(AUTHTAP), "exchanges", "--db", str(p.db), "--format", "json"], capture_output=True, check=True).stdout
    text = subprocess.run([str(AUTHTAP), "exchanges", "--db", str(p.db)], capture_output=True, check=True).stdout
    # The analysis (stored findings, its report) and a HAR export are outputs too.
    report = subprocess.run([str(AUTHTAP), "analyze", "--db", str(p.db), "--fail-on", "never", "--format", "json"], capture_output=True, check=True).stdout
    har = subprocess.run([str(AUTHTAP), "export", "--db", str(p.db), "--all", "-o", "-"], capture_output=True, check=True).stdout
    blob += b"".join(f.read_bytes() for f in [p.db, Path(str(p.db) + "-wal")] if f.exists())
    for name, value in CANARY.items():
        for where, data in (("files", blob), ("json dump", dump), ("text dump", text), ("analysis", report), ("HAR export", har)):
            assert value.encode() not in data, f"canary {name} leaked into {where}"
    jwt = canary_jwt()
    assert jwt.encode() not in blob and jwt.encode() not in har and jwt.rsplit(".", 1)[1].encode() not in har

    key = (p.certs / "fingerprint.key").read_bytes()
    xs = json.loads(dump)
    params = [q for x in xs for q in x["oauthParams"]]
    by_name = {}
    for q in params:
        by_name.setdefault(q["name"], []).append(q)
    expected = {
        "code": [CANARY["query_code"], CANARY["form_code"], CANARY["location_code"]],
        "client_secret": [CANARY["client_secret"], CANARY["basic_secret"]],
        "code_verifier": [CANARY["code_verifier"]],
        "password": [CANARY["password"]],
        "refresh_token": [CANARY["refresh_token"], CANARY["resp_refresh"]],
        "access_token": [CANARY["resp_access"], CANARY["bearer"], CANARY["fragment_token"]],
        "id_token": [jwt],
        "device_code": [CANARY["device_code"]],
    }
    for name, values in expected.items():
        got = {q["fingerprint"] for q in by_name.get(name, [])}
        for v in values:
            assert fp(key, v) in got, f"fingerprint of {name} missing"
    # Markers are readable; a JWT keeps header and claims; S256(code_verifier) is kept for PKCE checks.
    token_ex = next(x for x in xs if x["target"] == "/token" and "authorization_code" in (x["requestBody"] or ""))
    assert f"[masked code len={len(CANARY['form_code'])} fp={fp(key, CANARY['form_code'])}]" in token_ex["requestBody"]
    assert "Basic my-client:[masked client_secret" in dict(token_ex["requestHeaders"])["Authorization"]
    header_claims = jwt.rsplit(".", 1)[0]
    assert header_claims + ".[masked id_token-signature" in token_ex["responseBody"]
    s256 = base64.urlsafe_b64encode(hashlib.sha256(CANARY["code_verifier"].encode()).digest()).rstrip(b"=").decode()
    assert any(q["location"] == "derived" and q["name"] == "code_verifier_s256" and q["value"] == s256 and not q.get("fingerprint")
               for q in token_ex["oauthParams"])
    assert "token" in token_ex["roles"]
    assert any(q["name"] == "grant_type" and q["value"] == "authorization_code" for q in token_ex["oauthParams"])
    roles = {x["target"].split("?")[0]: x["roles"] for x in xs}
    assert roles["/authorize"] == ["authorization-request", "authorization-response"]
    assert roles["/userinfo"] == ["userinfo"]
    assert roles["/device"] == ["device-authorization"]
    assert roles["/hello"] == ["callback"]
    auth_ex = next(x for x in xs if x["target"].startswith("/authorize"))
    assert "state=xyz" in auth_ex["target"] and "redirect_uri=https://app.test/cb" in auth_ex["target"]
