// An OAuth 2.0 / OpenID Connect client written the way a Node app is: plain global `fetch` (undici), which
// ignores HTTPS_PROXY, so the only way to put authtap in its path is to configure authtap's URL as the server's
// (authtap's reverse mode). No npm packages: the test environment has no npm registry.
//
// It plays both halves of a relying party: the browser (cookies, redirects followed by hand with
// redirect: 'manual', Django's CSRF-protected login form, DOT's consent form, the landing on the callback) and
// the back end (discovery, JWKS, the token request with PKCE, the id_token's signature, userinfo).
//
// Run as: node oidc_client.mjs '<config JSON>'. Trust a test CA with NODE_EXTRA_CA_CERTS.
// Config:
//   base          where the client is told the server lives (authtap's reverse listener, or the server itself)
//   discoveryPath path of the discovery document under base, e.g. /o/.well-known/openid-configuration
//   flow          "discovery" (discovery, then JWKS if announced) or "code" (a whole authorization code flow)
//   expectOrigin  when set, every endpoint discovery announces and every URL the client fetches must be at this
//                 origin: the client refuses to leave it (a request elsewhere fails the run before it is sent)
//   clientId, clientSecret, authMethod ("basic" | "post" | "none"), redirectUri, scope, username, password
//   oidc          whether an id_token is expected (verified against the JWKS fetched through discovery)
//   timeoutMs     bound on each request (default 10000); deadlineMs bound on the whole run (default 60000)
// Prints one JSON line: { ok, error, steps: [{method, url, status}], discovery, callback, token, idToken,
// userinfo } and exits 0 when ok, 1 otherwise (the JSON is printed either way, with the steps made so far).
import { createHash, randomBytes } from 'node:crypto';

const cfg = JSON.parse(process.argv[2] ?? '{}');
const timeoutMs = cfg.timeoutMs ?? 10000;
const out = { ok: false, error: null, steps: [], discovery: null, callback: null, token: null, idToken: null,
  userinfo: null };

function finish(code) {
  process.stdout.write(JSON.stringify(out) + '\n', () => process.exit(code));
}

// The whole run is bounded even if a server stalls between bytes.
setTimeout(() => { out.error = `run exceeded ${cfg.deadlineMs ?? 60000} ms`; finish(2); },
  cfg.deadlineMs ?? 60000).unref();

const b64url = (buf) => Buffer.from(buf).toString('base64url');

// ---------- HTTP, as the client sees it ----------

const jar = new Map(); // hostname -> Map(cookie name -> value): browsers do not separate cookies by port

function checkOrigin(url) {
  if (cfg.expectOrigin && new URL(url).origin !== new URL(cfg.expectOrigin).origin) {
    throw new Error(`the client was sent away from ${cfg.expectOrigin}: ${url}`);
  }
}

async function request(method, url, { headers = {}, body, browser = false } = {}) {
  checkOrigin(url);
  const h = new Headers(headers);
  const host = new URL(url).hostname;
  if (browser && jar.get(host)?.size) {
    h.set('Cookie', [...jar.get(host)].map(([k, v]) => `${k}=${v}`).join('; '));
  }
  const res = await fetch(url, { method, headers: h, body, redirect: 'manual',
    signal: AbortSignal.timeout(timeoutMs) });
  const text = await res.text();
  out.steps.push({ method, url, status: res.status });
  if (browser) {
    for (const line of res.headers.getSetCookie()) {
      const pair = line.split(';')[0];
      const eq = pair.indexOf('=');
      if (eq > 0) {
        if (!jar.has(host)) jar.set(host, new Map());
        jar.get(host).set(pair.slice(0, eq).trim(), pair.slice(eq + 1).trim());
      }
    }
  }
  return { res, text, url };
}

function json(r, what) {
  try {
    return JSON.parse(r.text);
  } catch {
    const type = r.res.headers.get('content-type');
    throw new Error(`${what}: ${r.res.status} ${type} is not JSON: ${r.text.slice(0, 300)}`);
  }
}

// What a person would read on an HTML error page (Django's 403 page starts with a long style block).
function excerpt(text) {
  return text.replace(/<(style|script)\b[\s\S]*?<\/\1>/gi, ' ').replace(/<[^>]+>/g, ' ').replace(/\s+/g, ' ')
    .trim().slice(0, 400);
}

// ---------- HTML forms (the two this flow meets: Django's login form, DOT's consent form) ----------

function decodeEntities(s) {
  return s.replace(/&(#x[0-9a-f]+|#[0-9]+|amp|lt|gt|quot|apos);/gi, (_, e) => {
    const named = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };
    if (named[e.toLowerCase()]) return named[e.toLowerCase()];
    return String.fromCodePoint(e[1].toLowerCase() === 'x' ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10));
  });
}

function attributes(text) {
  const attrs = {};
  for (const m of text.matchAll(/([\w:-]+)\s*(?:=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+)))?/g)) {
    attrs[m[1].toLowerCase()] = decodeEntities(m[2] ?? m[3] ?? m[4] ?? '');
  }
  return attrs;
}

function forms(html) {
  return [...html.matchAll(/<form\b([^>]*)>([\s\S]*?)<\/form>/gi)].map((m) => ({
    attrs: attributes(m[1]),
    inputs: [...m[2].matchAll(/<input\b([^>]*?)\/?>/gi)].map((i) => attributes(i[1])),
  }));
}

async function submit(page, form, fields) {
  const data = new URLSearchParams();
  for (const i of form.inputs) {
    if (i.name && i.type !== 'submit') data.set(i.name, i.value ?? '');
  }
  for (const [k, v] of Object.entries(fields)) data.set(k, v);
  const action = new URL(form.attrs.action || page.url, page.url).href;
  // What a browser sends with a form POST: the page's origin and the page as the referrer.
  return request('POST', action, { browser: true, body: data.toString(), headers: {
    'Content-Type': 'application/x-www-form-urlencoded', Origin: new URL(page.url).origin, Referer: page.url } });
}

// ---------- the flow ----------

async function discover() {
  const url = new URL(cfg.discoveryPath, cfg.base).href;
  const r = await request('GET', url, { headers: { Accept: 'application/json' } });
  if (r.res.status !== 200) throw new Error(`discovery: ${r.res.status} ${r.text.slice(0, 300)}`);
  const meta = json(r, 'discovery');
  out.discovery = meta;
  if (cfg.expectOrigin) {
    const want = new URL(cfg.expectOrigin).origin;
    // The issuer is the server's identifier, kept as it is (it must equal the id_token's iss); its endpoints move.
    const isEndpoint = (k) => k.endsWith('_endpoint') || k.endsWith('_uri');
    const away = Object.entries(meta).filter(([k, v]) => isEndpoint(k) && typeof v === 'string'
      && /^https?:/.test(v) && new URL(v).origin !== want);
    if (away.length) throw new Error(`discovery points away from ${want}: ${JSON.stringify(Object.fromEntries(away))}`);
  }
  let jwks = null;
  if (meta.jwks_uri) {
    const k = await request('GET', meta.jwks_uri, { headers: { Accept: 'application/json' } });
    if (k.res.status !== 200) throw new Error(`jwks: ${k.res.status}`);
    jwks = json(k, 'jwks');
    if (!Array.isArray(jwks.keys) || !jwks.keys.length) throw new Error('jwks: no keys');
  }
  return { meta, jwks };
}

async function browse(startUrl, state) {
  let r = await request('GET', startUrl, { browser: true });
  const callbackPath = new URL(cfg.redirectUri).pathname;
  for (let i = 0; i < 12; i++) {
    if (r.res.status >= 300 && r.res.status < 400) {
      const location = r.res.headers.get('location');
      const next = new URL(location, r.url);
      if (next.pathname === callbackPath && (next.searchParams.has('code') || next.searchParams.has('error'))) {
        out.callback = { location, url: next.href, origin: next.origin,
          state_matches: next.searchParams.get('state') === state, error: next.searchParams.get('error') };
        const landed = await request('GET', next.href, { browser: true }); // the browser lands on the client's page
        out.callback.status = landed.res.status;
        return next;
      }
      r = await request('GET', next.href, { browser: true });
      continue;
    }
    const found = r.res.status === 200 ? forms(r.text) : [];
    const login = found.find((f) => f.inputs.some((x) => x.name === 'password'));
    const consent = found.find((f) => f.attrs.id === 'authorizationForm');
    if (login) {
      r = await submit(r, login, { username: cfg.username, password: cfg.password });
      if (!(r.res.status >= 300 && r.res.status < 400)) {
        throw new Error(`sign-in refused: ${r.res.status} ${excerpt(r.text)}`);
      }
    } else if (consent) {
      r = await submit(r, consent, { allow: 'Authorize' });
      if (!(r.res.status >= 300 && r.res.status < 400)) {
        throw new Error(`consent refused: ${r.res.status} ${excerpt(r.text)}`);
      }
    } else {
      throw new Error(`the browser stopped at ${r.res.status} ${r.url}: ${excerpt(r.text)}`);
    }
  }
  throw new Error('too many steps before the callback');
}

async function verifyIdToken(idToken, jwks, nonce) {
  const [h, p, s] = idToken.split('.');
  const header = JSON.parse(Buffer.from(h, 'base64url'));
  const claims = JSON.parse(Buffer.from(p, 'base64url'));
  const jwk = jwks.keys.find((k) => k.kid === header.kid) ?? (jwks.keys.length === 1 ? jwks.keys[0] : null);
  if (!jwk) throw new Error(`id_token kid ${header.kid} is not in the JWKS`);
  if (header.alg !== 'RS256') throw new Error(`id_token alg ${header.alg}: this client verifies RS256`);
  const key = await crypto.subtle.importKey('jwk', { kty: jwk.kty, n: jwk.n, e: jwk.e },
    { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' }, false, ['verify']);
  const signatureValid = await crypto.subtle.verify('RSASSA-PKCS1-v1_5', key, Buffer.from(s, 'base64url'),
    Buffer.from(`${h}.${p}`));
  const aud = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
  return { iss: claims.iss, sub: claims.sub, aud, signatureValid, nonceMatches: claims.nonce === nonce,
    audienceMatches: aud.includes(cfg.clientId) };
}

async function codeFlow({ meta, jwks }) {
  const verifier = b64url(randomBytes(32));
  const challenge = b64url(createHash('sha256').update(verifier).digest());
  const state = b64url(randomBytes(12));
  const nonce = b64url(randomBytes(12));
  const authorize = new URL(meta.authorization_endpoint);
  for (const [k, v] of Object.entries({ response_type: 'code', client_id: cfg.clientId, redirect_uri: cfg.redirectUri,
    scope: cfg.scope ?? 'openid', state, nonce, code_challenge: challenge, code_challenge_method: 'S256' })) {
    authorize.searchParams.set(k, v);
  }
  const callback = await browse(authorize.href, state);
  if (!out.callback.state_matches) throw new Error(`callback state differs: ${callback.href}`);
  const code = callback.searchParams.get('code');
  if (!code) throw new Error(`no code at the callback: ${callback.href}`);

  const body = new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: cfg.redirectUri,
    code_verifier: verifier });
  const headers = { Accept: 'application/json', 'Content-Type': 'application/x-www-form-urlencoded' };
  if (cfg.authMethod === 'basic') {
    const enc = encodeURIComponent;
    headers.Authorization = 'Basic ' + Buffer.from(`${enc(cfg.clientId)}:${enc(cfg.clientSecret)}`).toString('base64');
  } else {
    body.set('client_id', cfg.clientId);
    if (cfg.authMethod === 'post') body.set('client_secret', cfg.clientSecret);
  }
  const t = await request('POST', meta.token_endpoint, { headers, body: body.toString() });
  const tokens = json(t, 'token');
  out.token = { status: t.res.status, fields: Object.keys(tokens).sort(), error: tokens.error ?? null };
  if (t.res.status !== 200 || !tokens.access_token) throw new Error(`token: ${t.res.status} ${t.text.slice(0, 300)}`);

  let idClaims = null;
  if (cfg.oidc) {
    if (!tokens.id_token) throw new Error('token: no id_token');
    idClaims = await verifyIdToken(tokens.id_token, jwks, nonce);
    out.idToken = { ...idClaims, issMatchesDiscovery: idClaims.iss === meta.issuer };
    if (!idClaims.signatureValid) throw new Error('id_token: the signature does not verify with the JWKS');
    if (!idClaims.audienceMatches) throw new Error(`id_token: aud ${idClaims.aud} lacks ${cfg.clientId}`);
    if (!idClaims.nonceMatches) throw new Error('id_token: nonce differs');
  }

  const u = await request('GET', meta.userinfo_endpoint, { headers: { Accept: 'application/json',
    Authorization: `Bearer ${tokens.access_token}` } });
  if (u.res.status !== 200) throw new Error(`userinfo: ${u.res.status} ${u.text.slice(0, 300)}`);
  out.userinfo = json(u, 'userinfo');
  if (!out.userinfo.sub) throw new Error('userinfo: no sub');
  if (idClaims && idClaims.sub !== out.userinfo.sub) throw new Error('userinfo: sub differs from the id_token');
}

try {
  const found = await discover();
  if (cfg.flow === 'code') await codeFlow(found);
  out.ok = true;
  finish(0);
} catch (e) {
  out.error = e.cause ? `${e.message}: ${e.cause.code ?? ''} ${e.cause.message ?? e.cause}` : (e.message ?? String(e));
  finish(1);
}
