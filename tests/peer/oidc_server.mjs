#!/usr/bin/env node
// tests/peer/oidc_server.mjs: oidc-provider (an independent OAuth 2.0 authorization server, pinned
// in package.json / package-lock.json) on https://127.0.0.1:<ephemeral port>, for the peer tests.
//
//   node oidc_server.mjs --cert PEM --key PEM --clients FILE --port-file FILE
//                        [--rotate on|off] [--deny] [--access-ttl N] [--log FILE]
//
// --clients FILE   JSON array of oidc-provider client metadata objects (secrets live only there,
//                  never on the command line).
// --port-file FILE written atomically (temp file + rename) with the port once listening.
// --rotate on|off  refresh-token rotation (rotateRefreshToken returns true / false). Default on.
// --deny           every authorization ends with error=access_denied at the client's redirect_uri.
// --access-ttl N   lifetime of access tokens (authorization code / refresh and client credentials)
//                  in seconds. Default 3600.
// --log FILE       one line per request (method, path without query, status) and per grant event;
//                  never a token, code, verifier, secret or query string. Default: stderr.
//
// Endpoints (oidc-provider defaults; deliberately not Spotify's /authorize and /api/token):
//   /auth (authorization), /token, /token/introspection, /token/revocation, /me (userinfo),
//   /.well-known/openid-configuration, /jwks.
//
// Test-only endpoints (this process's own, not oidc-provider's; the provider keeps its state in
// the in-memory adapter below, which also remembers every refresh token it ever saved):
//   POST /__refresh_tokens   form body token=<a refresh token> (in the body, never the query):
//                            JSON {"known", "active", "grant_issued", "grant_active",
//                            "grant_consumed", "grant_revoked"} for that token and every refresh
//                            token of its grant. active: saved, not consumed (rotated away), not
//                            expired, and its grant not revoked. Counts only, never a token.
//   POST /__stall_next_refresh  the next refresh_token grant that succeeds stops this process
//                            (SIGSTOP) after the provider has rotated and saved the new refresh
//                            token and before the answer is written: an accounts server that
//                            stalls mid-request. The test sends SIGCONT; the answer then goes out.
//
// Consent is headless: the interaction URL the provider redirects to is answered here, at once,
// with login (accountId "pstest-user") and consent to every requested scope (or with
// access_denied under --deny) and a 303 back to the provider. The whole authorization is therefore
// nothing but redirects and cookies, which tests/peer/browser.py follows.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { appendFileSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:https';
import { parseArgs } from 'node:util';

import Provider from 'oidc-provider';

const ACCOUNT = 'pstest-user';

// Spotify's documented scopes, registered so that plain OAuth 2.0 requests for them (without
// `openid`) are granted and end up in the access token's `scope`.
const SPOTIFY_SCOPES = [
  'ugc-image-upload',
  'user-read-playback-state',
  'user-modify-playback-state',
  'user-read-currently-playing',
  'app-remote-control',
  'streaming',
  'playlist-read-private',
  'playlist-read-collaborative',
  'playlist-modify-private',
  'playlist-modify-public',
  'user-follow-modify',
  'user-follow-read',
  'user-read-playback-position',
  'user-top-read',
  'user-read-recently-played',
  'user-library-modify',
  'user-library-read',
  'user-read-email',
  'user-read-private',
  'user-personalized',
  'user-soa-link',
  'user-soa-unlink',
  'soa-manage-entitlements',
  'soa-manage-partner',
  'soa-create-partner',
];

function die(msg) {
  process.stderr.write(`oidc_server: ${msg}\n`);
  process.exit(2);
}

let args;
try {
  ({ values: args } = parseArgs({
    options: {
      cert: { type: 'string' },
      key: { type: 'string' },
      clients: { type: 'string' },
      'port-file': { type: 'string' },
      rotate: { type: 'string', default: 'on' },
      deny: { type: 'boolean', default: false },
      'access-ttl': { type: 'string', default: '3600' },
      log: { type: 'string' },
    },
    strict: true,
    allowPositionals: false,
  }));
} catch (err) {
  die(err.message);
}
for (const opt of ['cert', 'key', 'clients', 'port-file']) {
  if (!args[opt]) die(`--${opt} is required`);
}
if (!['on', 'off'].includes(args.rotate)) die('--rotate must be on or off');
const accessTTL = Number(args['access-ttl']);
if (!Number.isInteger(accessTTL) || accessTTL < 1 || accessTTL > 86400) {
  die('--access-ttl must be an integer from 1 to 86400');
}
const rotate = args.rotate === 'on';

function log(line) {
  const out = `${new Date().toISOString()} ${line}\n`;
  if (args.log) {
    try {
      appendFileSync(args.log, out);
    } catch {
      process.stderr.write(out);
    }
  } else {
    process.stderr.write(out);
  }
}

let clients;
try {
  clients = JSON.parse(readFileSync(args.clients, 'utf8'));
} catch (err) {
  die(`cannot read the clients file ${args.clients}: ${err.message}`);
}
if (!Array.isArray(clients) || clients.length === 0) die('the clients file must hold a JSON array of clients');

let tls;
try {
  tls = { cert: readFileSync(args.cert), key: readFileSync(args.key) };
} catch (err) {
  die(`cannot read the TLS certificate or key: ${err.message}`);
}

// The provider's storage: oidc-provider's MemoryAdapter, without its LRU eviction, plus a record
// of every refresh token ever saved (its grant, whether consumed) and of the revoked grants, which
// /__refresh_tokens reads.
const storage = new Map(); // `${model}:${id}` -> { payload, expiresAt }
const refreshTokens = new Map(); // id -> { grantId, exp }
const revokedGrants = new Set();
const GRANTABLE = new Set(['AccessToken', 'AuthorizationCode', 'RefreshToken', 'DeviceCode',
  'BackchannelAuthenticationRequest']);
const nowS = () => Math.floor(Date.now() / 1000);
function storageGet(key) {
  const e = storage.get(key);
  if (!e) return undefined;
  if (e.expiresAt && e.expiresAt <= Date.now()) {
    storage.delete(key);
    return undefined;
  }
  return e.payload;
}
class TestAdapter {
  constructor(model) { this.model = model; }
  key(id) { return `${this.model}:${id}`; }
  async destroy(id) { storage.delete(this.key(id)); }
  async consume(id) {
    const p = storageGet(this.key(id));
    if (p) p.consumed = nowS();
  }
  async find(id) { return storageGet(this.key(id)); }
  async findByUid(uid) { return this.find(storageGet(`sessionUid:${uid}`)); }
  async findByUserCode(code) { return this.find(storageGet(`userCode:${code}`)); }
  async upsert(id, payload, expiresIn) {
    const expiresAt = expiresIn ? Date.now() + expiresIn * 1000 : 0;
    if (this.model === 'Session') storage.set(`sessionUid:${payload.uid}`, { payload: id, expiresAt });
    if (payload.userCode) storage.set(`userCode:${payload.userCode}`, { payload: id, expiresAt });
    if (GRANTABLE.has(this.model) && payload.grantId) {
      const g = storageGet(`grant:${payload.grantId}`);
      if (g) g.push(this.key(id));
      else storage.set(`grant:${payload.grantId}`, { payload: [this.key(id)], expiresAt: 0 });
    }
    if (this.model === 'RefreshToken') refreshTokens.set(id, { grantId: payload.grantId, exp: payload.exp });
    storage.set(this.key(id), { payload, expiresAt });
  }
  async revokeByGrantId(grantId) { // eslint-disable-line class-methods-use-this
    revokedGrants.add(grantId);
    const g = storageGet(`grant:${grantId}`);
    if (g) g.forEach((key) => storage.delete(key));
    storage.delete(`grant:${grantId}`);
  }
}

// refreshTokenState(id): is that refresh token live, and how many of its grant are (see above).
function refreshTokenActive(id) {
  const rec = refreshTokens.get(id);
  const p = storageGet(`RefreshToken:${id}`);
  return Boolean(rec && p && !p.consumed && (!p.exp || p.exp > nowS()) && !revokedGrants.has(rec.grantId));
}
function refreshTokenState(id) {
  const rec = refreshTokens.get(id);
  if (!rec) return { known: false, active: false };
  const out = {
    known: true,
    active: refreshTokenActive(id),
    grant_issued: 0,
    grant_active: 0,
    grant_consumed: 0,
    grant_revoked: revokedGrants.has(rec.grantId),
  };
  for (const [other, r] of refreshTokens) {
    if (r.grantId !== rec.grantId) continue;
    out.grant_issued += 1;
    if (refreshTokenActive(other)) out.grant_active += 1;
    const p = storageGet(`RefreshToken:${other}`);
    if (p && p.consumed) out.grant_consumed += 1;
  }
  return out;
}
let stallNextRefresh = false;

function readBody(req, limit = 8192) {
  return new Promise((resolve, reject) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c) => {
      body += c;
      if (body.length > limit) reject(new Error('body too large'));
    });
    req.on('end', () => resolve(body));
    req.on('error', reject);
  });
}

// A fresh signing key per run (only ID tokens would use it; the access tokens are opaque).
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const jwk = { ...privateKey.export({ format: 'jwk' }), use: 'sig', alg: 'RS256', kid: 'peer' };

// Listen first: the issuer must name the ephemeral port.
let handler = (req, res) => {
  res.statusCode = 503;
  res.end();
};
const server = createServer(tls, (req, res) => handler(req, res));
server.requestTimeout = 10000;
server.headersTimeout = 5000;
server.keepAliveTimeout = 2000;
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(0, '127.0.0.1', resolve);
});
const { port } = server.address();
const issuer = `https://127.0.0.1:${port}`;

const configuration = {
  adapter: TestAdapter,
  clients,
  jwks: { keys: [jwk] },
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  scopes: ['openid', 'offline_access', ...SPOTIFY_SCOPES],
  claims: { openid: ['sub'] },
  async findAccount(ctx, sub) {
    if (sub !== ACCOUNT) return undefined;
    return { accountId: sub, async claims() { return { sub }; } };
  },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: {
      enabled: true,
      // confidential clients may introspect any token (the tests check tokens with it)
      allowedPolicy: (ctx, client) => client.clientAuthMethod !== 'none',
    },
    revocation: { enabled: true },
    userinfo: { enabled: true },
  },
  // Plain OAuth 2.0 (RFC 6749 + RFC 7636): PKCE (S256 only) is required of public clients,
  // optional for confidential ones, as at Spotify.
  pkce: {
    methods: ['S256'],
    required: (ctx, client) => client.clientAuthMethod === 'none',
  },
  // Refresh tokens without asking for offline_access: every authorization code of a client
  // allowed the refresh_token grant gets one (as Spotify does).
  async issueRefreshToken(ctx, client) {
    return client.grantTypeAllowed('refresh_token');
  },
  rotateRefreshToken: () => rotate,
  ttl: {
    AccessToken: accessTTL,
    ClientCredentials: accessTTL,
    AuthorizationCode: 120,
    Interaction: 300,
    Session: 600,
    Grant: 14 * 24 * 3600,
    RefreshToken: 14 * 24 * 3600,
  },
  async renderError(ctx, out) {
    ctx.type = 'text/plain';
    // error and error_description only: never echo state or other request parameters
    ctx.body = `error: ${out.error}\nerror_description: ${out.error_description}\n`;
  },
};

let provider;
try {
  provider = new Provider(issuer, configuration);
} catch (err) {
  die(`bad provider configuration: ${err.message}`);
}

for (const event of ['grant.success', 'grant.error', 'authorization.success', 'authorization.error',
  'server_error', 'grant.revoked', 'introspection.error', 'revocation.error']) {
  provider.on(event, (ctx, err) => {
    const params = ctx?.oidc?.params || {};
    const parts = [event];
    if (params.grant_type) parts.push(`grant_type=${params.grant_type}`);
    if (ctx?.oidc?.client) parts.push(`client=${ctx.oidc.client.clientId}`);
    if (event === 'grant.success' && ctx?.oidc?.entities) {
      let rt = 'none';
      if (ctx.oidc.entities.RotatedRefreshToken) rt = 'rotated';
      else if (ctx.body?.refresh_token) rt = params.grant_type === 'refresh_token' ? 'unchanged' : 'issued';
      parts.push(`refresh_token=${rt}`);
    }
    if (event.endsWith('error') && err && typeof err === 'object') {
      parts.push(`error=${err.error || err.name}`);
      const why = err.error_detail || err.error_description;
      if (why) parts.push(`(${why})`);
    }
    log(parts.join(' '));
    if (event === 'grant.success' && params.grant_type === 'refresh_token' && stallNextRefresh) {
      // the rotated refresh token is saved and the answer not yet written: stall here
      stallNextRefresh = false;
      log('stall: stopping (SIGSTOP) before the answer to this refresh is written');
      process.kill(process.pid, 'SIGSTOP');
      log('stall: continued; the answer goes out');
    }
  });
}

// Headless interaction: finish login + consent (or deny) at once.
async function interaction(req, res) {
  const details = await provider.interactionDetails(req, res);
  const { prompt, params } = details;
  if (args.deny) {
    log(`interaction ${prompt.name}: access_denied (--deny)`);
    await provider.interactionFinished(req, res, {
      error: 'access_denied',
      error_description: 'the test provider denies every authorization',
    }, { mergeWithLastSubmission: false });
    return;
  }
  const accountId = details.session?.accountId || ACCOUNT;
  let grant;
  if (details.grantId) grant = await provider.Grant.find(details.grantId);
  if (!grant) grant = new provider.Grant({ accountId, clientId: params.client_id });
  if (params.scope) grant.addOIDCScope(params.scope);
  const grantId = await grant.save();
  log(`interaction ${prompt.name}: login ${accountId}, consent to the requested scopes`);
  await provider.interactionFinished(req, res, {
    login: { accountId },
    consent: { grantId },
  }, { mergeWithLastSubmission: false });
}

const app = provider.callback();
handler = (req, res) => {
  const path = (req.url || '').split('?')[0];
  res.on('finish', () => log(`${req.method} ${path} ${res.statusCode}`));
  if (path === '/__refresh_tokens' && req.method === 'POST') {
    readBody(req).then((body) => {
      const id = new URLSearchParams(body).get('token') || '';
      res.setHeader('Content-Type', 'application/json');
      res.end(`${JSON.stringify(refreshTokenState(id))}\n`);
    }, () => {
      res.statusCode = 400;
      res.end();
    });
    return;
  }
  if (path === '/__stall_next_refresh' && req.method === 'POST') {
    stallNextRefresh = true;
    log('stall: armed for the next refresh_token grant');
    res.end('armed\n');
    return;
  }
  if (/^\/interaction\/[^/]+$/.test(path) && req.method === 'GET') {
    interaction(req, res).catch((err) => {
      log(`interaction error: ${err.name}: ${err.message}`);
      if (!res.headersSent) {
        res.statusCode = 400;
        res.setHeader('Content-Type', 'text/plain');
        res.end(`interaction failed: ${err.name}\n`);
      }
    });
    return;
  }
  app(req, res);
};

const tmp = `${args['port-file']}.tmp${process.pid}`;
writeFileSync(tmp, `${port}\n`);
renameSync(tmp, args['port-file']);
log(`listening on ${issuer} rotate=${args.rotate} deny=${args.deny} access_ttl=${accessTTL} clients=${clients.map((c) => c.client_id).join(',')}`);

for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP']) {
  process.on(sig, () => {
    server.close();
    process.exit(0);
  });
}
