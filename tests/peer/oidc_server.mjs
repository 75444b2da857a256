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
