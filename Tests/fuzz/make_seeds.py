#!/usr/bin/env python3
"""Writes the fuzz seed corpora (Tests/fuzz/corpus/<Target>/) from the project's fixtures.

Run from the repository root; the output is committed, so this only needs running again when fixtures change.
Each target's input layout is the one its harness (Tests/fuzz/Targets/Fuzz<Target>) documents.
"""
import glob
import gzip
import hashlib
import json
import os
import shutil
import struct
import subprocess
import zlib

ROOT = os.getcwd()
OUT = os.path.join(ROOT, "Tests/fuzz/corpus")
LIMIT = 64 * 1024


def write(target, data):
    if isinstance(data, str):
        data = data.encode()
    if len(data) > LIMIT:
        return
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, hashlib.sha1(data).hexdigest()[:16]), "wb") as f:
        f.write(data)


def hars():
    paths = sorted(glob.glob("Tests/fixtures/har/*.har")) + sorted(glob.glob("/work/shared/reference/har-samples/*.har"))
    for p in paths:
        with open(p, "rb") as f:
            yield p, f.read()


def entries():
    for _, raw in hars():
        try:
            doc = json.loads(raw.decode("utf-8-sig"))
        except ValueError:
            continue
        for e in doc.get("log", {}).get("entries", []):
            yield e


def body_of(part):
    if "postData" in part:
        return part["postData"].get("text", ""), part["postData"].get("mimeType", "")
    content = part.get("content", {})
    return content.get("text", "") or "", content.get("mimeType", "") or ""


def header_text(part):
    return "\n".join(f"{h.get('name', '')}: {h.get('value', '')}" for h in part.get("headers", []))


for target in ["Masker", "BodyDecoder", "JSON", "Analyzer", "HAR", "Pcap", "Filter", "ProxyFront"]:
    shutil.rmtree(os.path.join(OUT, target), ignore_errors=True)

# HAR: the fixtures whole, and small variants of the fields import reads as numbers.
for _, raw in hars():
    write("HAR", raw)
write("HAR", '{"log":{"entries":[{"request":{"method":"GET","url":"https://a.example/x","bodySize":1e300},'
             '"response":{"status":200,"bodySize":-1e300,"content":{"size":1e19,"text":"{}"}},'
             '"startedDateTime":"2024-01-01T00:00:00.000Z","time":1e308}]}}')

# Pcap: every fixture capture, plus a pcapng copy of one (libpcap reads those).
for p in sorted(glob.glob("Tests/fixtures/pcap/*.pcap")):
    with open(p, "rb") as f:
        write("Pcap", f.read())
ng = "/tmp/authtap-seed.pcapng"
if shutil.which("editcap") and subprocess.run(["editcap", "-F", "pcapng", "Tests/fixtures/pcap/untrusted-tls13.pcap", ng],
                                               capture_output=True).returncode == 0:
    with open(ng, "rb") as f:
        write("Pcap", f.read())
    os.remove(ng)


def client_hellos():
    """The first client TLS record of each fixture capture (Ethernet, IPv4/IPv6, TCP)."""
    for p in sorted(glob.glob("Tests/fixtures/pcap/*.pcap")):
        data = open(p, "rb").read()
        off = 24
        while off + 16 <= len(data):
            incl = struct.unpack("<I", data[off + 8:off + 12])[0]
            pkt = data[off + 16:off + 16 + incl]
            off += 16 + incl
            eth = pkt[14:]
            if pkt[12:14] == b"\x08\x00":
                ihl = (eth[0] & 15) * 4
                tcp = eth[ihl:]
            elif pkt[12:14] == b"\x86\xdd":
                tcp = eth[40:]
            else:
                continue
            payload = tcp[(tcp[12] >> 4) * 4:] if len(tcp) > 12 else b""
            if payload[:1] == b"\x16" and payload[5:6] == b"\x01":
                yield payload
                break


# Bodies and their content types from the HAR fixtures.
bodies = []
for e in entries():
    for part in (e.get("request", {}), e.get("response", {})):
        text, mime = body_of(part)
        if text:
            bodies.append((text, mime))
extra = [
    ('{"access_token":"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln","token_type":"Bearer","expires_in":3600,'
     '"refresh_token":"r1","id_token":"eyJhbGciOiJub25lIn0.eyJpc3MiOiJ4In0."}', "application/json"),
    ('{"error":"invalid_grant","error_codes":[1e300],"error_description":"AADSTS70008: expired"}', "application/json"),
    ('{"error":"invalid_client","error_description":"bad","error_uri":"https://x","code":-1e308,"sub":[[[[{}]]]]}',
     "application/json"),
    ("grant_type=authorization_code&code=abc&redirect_uri=https%3A%2F%2Fa%2Fcb&code_verifier=v&client_secret=s",
     "application/x-www-form-urlencoded"),
    ("--XyZ\r\nContent-Disposition: form-data; name=\"client_secret\"\r\n\r\nhunter2\r\n--XyZ--\r\n",
     "multipart/form-data; boundary=XyZ"),
    ('<form method="post" action="https://a/cb"><input type="hidden" name="code" value="c0de"/>'
     '<input name="id_token" value="eyJ.eyJ.sig"></form>', "text/html"),
    ("<samlp:Response><saml:Assertion>secret</saml:Assertion></samlp:Response>", "application/xml"),
    ("Authorization: Bearer ghp_0123456789abcdefghijABCDEFGHIJ012345 and client_secret=abc", "text/plain"),
]
bodies += extra
kinds = {"application/json": 0, "application/x-www-form-urlencoded": 1, "multipart/form-data; boundary=XyZ": 2,
         "text/html": 3, "application/xml": 4, "text/plain": 5}
for text, mime in bodies:
    ct = kinds.get(mime.split(";")[0] if not mime.startswith("multipart") else mime, 7)
    write("Masker", bytes([0, ct]) + text.encode())
    write("Masker", bytes([1, ct]) + text.encode())
    if text.lstrip()[:1] in ("{", "["):
        write("JSON", text)
for e in list(entries())[:40]:
    req, resp = e.get("request", {}), e.get("response", {})
    url = req.get("url", "")
    write("Masker", bytes([2, 0]) + header_text(req).encode())
    write("Masker", bytes([3, 0]) + url.encode())
    rb, _ = body_of(req)
    sb, _ = body_of(resp)
    write("Masker", bytes([6, 0]) + b"\0".join(x.encode() for x in [url.split("/", 3)[-1], header_text(req), rb,
                                                                      header_text(resp), sb]))
write("Masker", bytes([4, 0]) + b"upstream said: invalid_client (client_secret=abc123 access_token=eyJ.eyJ.x)")
write("Masker", bytes([5, 0]) + b"code\0SplxlOBeZQQYbYS6WxSbIA")
for doc in ['{"a":[1,2,{"b":null}],"c":"\\u00e9\\ud83d\\ude00"}', "[]", "-0.0e-5", '"\\"', "{\"a\":1e999}",
            '{"error_codes":[1e300,-1e300,1.5,9223372036854775807,9223372036854775808]}']:
    write("JSON", doc)

# BodyDecoder: each sample body under each coding (the choice byte's high bits pick the coding, bit 0 truncates).
samples = [t.encode() for t, _ in bodies[:6]] + ["caf\u00e9 \u2603".encode("utf-16"), "caf\u00e9".encode("latin-1")]
codings = [None, "gzip", "deflate", "br", "zstd"]
for i, body in enumerate(samples):
    for c, name in enumerate(codings):
        if name is None:
            enc = body
        elif name == "gzip":
            enc = gzip.compress(body)
        elif name == "deflate":
            enc = zlib.compress(body)
        else:
            tool = shutil.which("brotli" if name == "br" else "zstd")
            if not tool:
                continue
            enc = subprocess.run([tool, "-c"], input=body, capture_output=True, check=True).stdout
        write("BodyDecoder", bytes([c << 1, i % 9]) + enc)


# Analyzer: exchanges as the harness reads them (choice bytes, a start time, NUL-separated fields), 0xFE between.
def analyzer_exchange(e, i, start):
    req, resp = e.get("request", {}), e.get("response", {})
    method = ["GET", "POST", "CONNECT", "PUT", "OPTIONS"].index(req.get("method", "GET")) \
        if req.get("method") in ["GET", "POST", "CONNECT", "PUT", "OPTIONS"] else 0
    status = int(resp.get("status", 200) or 0) & 0xFFFF
    head = bytes([0, i % 5, method, status >> 8, status & 255]) + struct.pack(">d", start) + bytes([0])
    url = req.get("url", "/")
    target = "/" + url.split("://", 1)[-1].split("/", 1)[-1] if "://" in url else url
    rb, _ = body_of(req)
    sb, _ = body_of(resp)
    fields = [target, header_text(req), rb, header_text(resp), sb]
    return head + b"\0".join(f.encode() for f in fields)


for _, raw in hars():
    try:
        doc = json.loads(raw.decode("utf-8-sig"))
    except ValueError:
        continue
    es = doc.get("log", {}).get("entries", [])[:12]
    if es:
        write("Analyzer", b"\xfe".join(analyzer_exchange(e, i, 1.7e9 + i) for i, e in enumerate(es)))
token_error = (bytes([0, 0, 1, 1, 144]) + struct.pack(">d", 1.7e9) + bytes([0]) + b"/oauth2/v2.0/token\0"
               + b"Content-Type: application/x-www-form-urlencoded\0grant_type=authorization_code&code=x\0"
               + b"Content-Type: application/json\0"
               + b'{"error":"invalid_grant","error_codes":[1e300],"error_description":"AADSTS70008"}')
write("Analyzer", token_error)
write("Analyzer", token_error + b"\xfd" + bytes([1, 2, 3]) + b"handshake_failure\0idp.example\0" + b"\x7f" * 24)

# Filter: what people type at `/`.
for f in ["status:4xx", "status:none host:login.example.com", "role:token error:tls-handshake", "rule:pkce-missing",
          "severity:error token", "status:200 'quoted' \"x\"", "host:%_\\ role:", "error: status:999",
          "a b c d e f status:5xx severity:warning"]:
    write("Filter", f)

# ProxyFront: mode byte (0 forward, 1 forward with auth, 2 inside an intercepted tunnel), cut byte, client bytes.
requests = [
    b"GET http://api.example/x?a=1 HTTP/1.1\r\nHost: api.example\r\n\r\n",
    b"POST http://idp.example/token HTTP/1.1\r\nHost: idp.example\r\nContent-Length: 29\r\n"
    b"Content-Type: application/x-www-form-urlencoded\r\n\r\ngrant_type=client_credentials",
    b"POST http://idp.example/t HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"GET /relative HTTP/1.1\r\nHost: x\r\n\r\nGET http://127.0.0.1:8080/ HTTP/1.1\r\n\r\n",
    b"GET http://a.example/ HTTP/1.1\r\nConnection: content-length\r\nContent-Length: 5\r\n\r\nGET /",
    b"CONNECT idp.fuzz.example:443 HTTP/1.1\r\nHost: idp.fuzz.example:443\r\n\r\n",
    b"CONNECT idp.fuzz.example:443 HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\nHost: idp.fuzz.example\r\n\r\n",
    b"CONNECT [::1]:99999 HTTP/1.1\r\n\r\n",
    b"GET http://a.example/ HTTP/1.1\r\nProxy-Authorization: Basic ZnV6ejpmdXp6LXBhc3N3b3Jk\r\n\r\n",
]
for r in requests:
    for mode in (0, 1):
        write("ProxyFront", bytes([mode, 0]) + r)
    write("ProxyFront", bytes([0, 7]) + r)
for hello in client_hellos():
    write("ProxyFront", bytes([0, 0]) + b"CONNECT idp.fuzz.example:443 HTTP/1.1\r\n\r\n" + hello)
    write("Pcap", hello)
for r in [b"GET /authorize?client_id=a&code_challenge=x HTTP/1.1\r\nHost: idp.fuzz.example\r\n\r\n",
          b"POST /token HTTP/1.1\r\nHost: idp.fuzz.example\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\ncode",
          b"GET http://other.example/ HTTP/1.1\r\n\r\n",
          b"CONNECT a:1 HTTP/1.1\r\n\r\n"]:
    write("ProxyFront", bytes([2, 0]) + r)
