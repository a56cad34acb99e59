"""`--allow-remote` is not an open door: target policy, loop prevention, unauthenticated requests and
credentials, driven with curl and raw sockets against a real `authtap proxy`. The listener stays on
127.0.0.1 (--allow-remote is accepted there), so the tests reach no other machine."""
import subprocess
import time

import pytest

from conftest import AUTHTAP, raw_exchange
from smuggling_upstream import LoggingUpstream

pytestmark = pytest.mark.faults

AUTH = "Proxy-Authorization: Basic dXNlcjpwYXNz\r\n"  # user:pass


@pytest.fixture
def upstream():
    u = LoggingUpstream()
    yield u
    u.stop()


def remote(make_proxy, *extra):
    return make_proxy("--allow-remote", "--proxy-auth", "user:pass", *extra)


def get(port, target, auth=True, host="x"):
    req = f"GET {target} HTTP/1.1\r\nHost: {host}\r\n" + (AUTH if auth else "") + "\r\n"
    return raw_exchange(port, req.encode())


def connect(port, authority, auth=True):
    req = f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n" + (AUTH if auth else "") + "\r\n"
    return raw_exchange(port, req.encode())


# Loopback and private targets, in the spellings resolvers accept, and names that resolve to them.
PRIVATE_HOSTS = ["127.0.0.1", "127.1", "0x7f.1", "2130706433", "0", "localhost", "localhost.", "[::1]",
                 "[::ffff:127.0.0.1]", "10.0.0.1", "172.16.0.1", "192.168.1.1", "100.64.0.1", "169.254.169.254",
                 "[fd00:ec2::254]", "[fe80::1]"]


def test_private_targets_are_refused_with_allow_remote(make_proxy, upstream):
    proxy = remote(make_proxy, "--allow-ports", str(upstream.port))
    for host in PRIVATE_HOSTS:
        out = get(proxy.port, f"http://{host}:{upstream.port}/secret")
        assert out.startswith(b"HTTP/1.1 403"), (host, out[:300])
        assert b"X-Authtap-Error: forbidden-target" in out and b"--allow-private-targets" in out, out
        out = connect(proxy.port, f"{host}:{upstream.port}")
        assert out.startswith(b"HTTP/1.1 403"), (host, out[:300])
    time.sleep(0.2)
    assert upstream.raw() == b"", "nothing reached the private upstream"
    xs = proxy.wait_for(lambda xs: len([x for x in xs if x["error"] == "forbidden-target"]) == 2 * len(PRIVATE_HOSTS))
    assert all(x["status"] == 403 for x in xs)


def test_names_are_checked_on_every_address_they_resolve_to(make_proxy, upstream):
    # The machine's own host name resolves (through /etc/hosts) to a loopback or interface address.
    hostname = subprocess.run(["hostname"], capture_output=True, text=True).stdout.strip()
    proxy = remote(make_proxy, "--allow-ports", str(upstream.port))
    out = get(proxy.port, f"http://{hostname}:{upstream.port}/", host=hostname)
    assert out.startswith(b"HTTP/1.1 403"), out[:300]
    assert hostname.encode() + b" (" in out, out  # the answer names the resolved address
    out = connect(proxy.port, f"{hostname}:{upstream.port}")
    assert out.startswith(b"HTTP/1.1 403"), out[:300]
    assert upstream.raw() == b""


def test_allow_private_targets_lifts_the_address_rule(make_proxy, upstream):
    proxy = remote(make_proxy, "--allow-private-targets", "--allow-ports", str(upstream.port))
    out = get(proxy.port, f"http://127.0.0.1:{upstream.port}/ok")
    assert out.startswith(b"HTTP/1.1 200") and b"path=/ok" in out, out[:300]
    out = get(proxy.port, f"http://localhost:{upstream.port}/name")
    assert out.startswith(b"HTTP/1.1 200") and b"path=/name" in out, out[:300]


def test_ports_are_limited_unless_allowed(make_proxy, upstream):
    proxy = remote(make_proxy, "--allow-private-targets")
    for target in (f"http://127.0.0.1:{upstream.port}/", "http://192.0.2.200:22/", "http://8.8.8.8:25/"):
        out = get(proxy.port, target)
        assert out.startswith(b"HTTP/1.1 403") and b"--allow-ports" in out, (target, out[:300])
    for authority in ("192.0.2.200:22", f"127.0.0.1:{upstream.port}", "8.8.8.8:6379"):
        out = connect(proxy.port, authority)
        assert out.startswith(b"HTTP/1.1 403") and b"is not allowed" in out, (authority, out[:300])
    assert upstream.raw() == b""


def test_a_loopback_listener_applies_no_target_policy(make_proxy, upstream):
    # Its one user can reach these targets directly: only loop prevention applies.
    proxy = make_proxy()
    out = get(proxy.port, f"http://127.0.0.1:{upstream.port}/local")
    assert out.startswith(b"HTTP/1.1 200") and b"path=/local" in out, out[:300]


SELF_SPELLINGS = ["127.0.0.1", "127.1", "0", "0x7f.1", "2130706433", "localhost", "localhost.", "[::ffff:127.0.0.1]",
                  "[::1]", "0.0.0.0", "[::]"]


@pytest.mark.parametrize("policy", ["loopback", "remote"])
def test_requests_to_authtap_itself_are_refused_in_every_spelling(make_proxy, policy):
    if policy == "loopback":
        proxy = make_proxy()
    else:
        # Private targets and the listen port allowed: the refusal is loop prevention, not the address rule.
        proxy = make_proxy("--allow-remote", "--proxy-auth", "user:pass", "--allow-private-targets",
                           "--allow-ports", "1-65535")
    own = [a for a in interface_addresses() if not a.startswith("127.") and a != "::1"]
    for host in SELF_SPELLINGS + own:
        out = get(proxy.port, f"http://{host}:{proxy.port}/")
        assert out.startswith(b"HTTP/1.1 400") and b"authtap's own listener" in out, (host, out[:300])
        out = connect(proxy.port, f"{host}:{proxy.port}")
        assert out.startswith(b"HTTP/1.1 400") and b"X-Authtap-Error: forbidden-target" in out, (host, out[:300])


def interface_addresses():
    out = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True).stdout
    addresses = []
    for line in out.splitlines():
        fields = line.split()
        if len(fields) > 3 and fields[2] in ("inet", "inet6"):
            a = fields[3].split("/")[0]
            addresses.append(f"[{a}]" if ":" in a else a)
    return [a for a in addresses if not a.startswith("[fe80")]


def test_unauthenticated_requests_are_counted_not_recorded(make_proxy, upstream):
    proxy = remote(make_proxy, "--allow-private-targets", "--allow-ports", str(upstream.port))
    for _ in range(3):
        out = get(proxy.port, f"http://127.0.0.1:{upstream.port}/", auth=False)
        assert out.startswith(b"HTTP/1.1 407") and b"Proxy-Authenticate: Basic" in out, out[:300]
    wrong = ("GET http://127.0.0.1:%d/ HTTP/1.1\r\nHost: x\r\nProxy-Authorization: Basic dXNlcjpwYXNa\r\n\r\n"
             % upstream.port)
    assert raw_exchange(proxy.port, wrong.encode()).startswith(b"HTTP/1.1 407")
    assert connect(proxy.port, f"127.0.0.1:{upstream.port}", auth=False).startswith(b"HTTP/1.1 407")
    # Garbage from a client that never authenticated is not recorded either.
    assert raw_exchange(proxy.port, b"\x16\x03\x01garbage\r\n\r\n").startswith(b"HTTP/1.1 400")
    out = get(proxy.port, f"http://127.0.0.1:{upstream.port}/authed")
    assert out.startswith(b"HTTP/1.1 200"), out[:300]
    xs = proxy.wait_for(lambda xs: len(xs) >= 1)
    time.sleep(0.3)
    xs = proxy.exchanges()
    assert [x["target"] for x in xs] == ["/authed"], xs
    assert proxy.stop() == 0
    stderr = proxy.stderr_path.read_text()
    assert "6 unauthenticated requests refused (not recorded)" in stderr, stderr
    assert upstream.requests() and all(p == "/authed" for _, p, _, _ in upstream.requests())


@pytest.mark.parametrize("auth,message", [
    ("user:", "non-empty password"),
    (":pass", "USER:PASS"),
    ("user", "USER:PASS"),
])
def test_empty_or_malformed_credentials_are_refused_at_start(tmp_path, auth, message):
    out = subprocess.run([str(AUTHTAP), "proxy", "--listen", "127.0.0.1:0", "--certs", str(tmp_path / "c"),
                          "--db", str(tmp_path / "db.sqlite"), "--allow-remote", "--proxy-auth", auth],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode != 0 and message in out.stderr, out.stderr


def test_empty_password_from_the_environment_is_refused(tmp_path):
    import os
    env = dict(os.environ, AUTHTAP_PROXY_AUTH="user:")
    out = subprocess.run([str(AUTHTAP), "proxy", "--listen", "127.0.0.1:0", "--certs", str(tmp_path / "c"),
                          "--db", str(tmp_path / "db.sqlite")], capture_output=True, text=True, timeout=30, env=env)
    assert out.returncode != 0 and "non-empty password" in out.stderr, out.stderr


def test_bad_port_lists_are_refused_at_start(tmp_path):
    out = subprocess.run([str(AUTHTAP), "proxy", "--listen", "127.0.0.1:0", "--certs", str(tmp_path / "c"),
                          "--db", str(tmp_path / "db.sqlite"), "--allow-ports", "80,70000"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode != 0 and "--allow-ports" in out.stderr, out.stderr
