// Loopback OpenID provider for the asgi-oauth-guard interop tests.
//
// panva's oidc-provider (pinned in package.json), configured so that the failures the guard exists to
// prevent are reproducible: short access-token and code lifetimes, PKCE required, refresh-token rotation
// with reuse detection, and a headless interaction route so a client that follows redirects gets a code
// without any HTML. See README.md beside this file.
//
// Listens on 127.0.0.1 only. Prints `READY <issuer>` on stdout once it accepts connections.

import * as crypto from 'node:crypto';
import * as http from 'node:http';

import Provider, { errors } from 'oidc-provider';

// ---------------------------------------------------------------------------------------------------------
// configuration from the environment

function intFromEnv(name, fallback, minimum = 0) {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < minimum) {
    throw new Error(`${name} must be an integer >= ${minimum}, got ${JSON.stringify(raw)}`);
  }
  return value;
}

function listFromEnv(name, fallback) {
  const raw = process.env[name];
  if (raw === undefined || raw.trim() === '') return fallback;
  return raw.split(',').map((s) => s.trim()).filter(Boolean);
}

const HOST = '127.0.0.1';
const PORT = intFromEnv('PORT', 0);
const CLIENT_ID = process.env.CLIENT_ID || 'interop-client';
const CLIENT_SECRET = process.env.CLIENT_SECRET || crypto.randomBytes(24).toString('base64url');
// The client is registered as a "native" application (RFC 8252 section 7.3): for http loopback redirect
// URIs oidc-provider then ignores the port when matching, so one registration serves apps on any free port.
// Scheme, host and path still have to match exactly.
const REDIRECT_URIS = listFromEnv('REDIRECT_URIS', [
  'http://127.0.0.1/auth/callback',
  'http://localhost/auth/callback',
  'http://127.0.0.1/callback',
  'http://localhost/callback',
]);
const POST_LOGOUT_REDIRECT_URIS = listFromEnv('POST_LOGOUT_REDIRECT_URIS', [
  'http://127.0.0.1/',
  'http://localhost/',
]);
// lifetimes in seconds; oidc-provider refuses 0
const ACCESS_TOKEN_TTL = intFromEnv('ACCESS_TOKEN_TTL', 5, 1);
const CODE_TTL = intFromEnv('CODE_TTL', 10, 1);
const REFRESH_TOKEN_TTL = intFromEnv('REFRESH_TOKEN_TTL', 3600, 1);
// oidc-provider accepts an opaque access token until exp + clockTolerance (default 15 s); 0 makes a 5 s
// token really die after 5 s.
const CLOCK_TOLERANCE = intFromEnv('CLOCK_TOLERANCE', 0);
const DEFAULT_ACCOUNT = process.env.DEFAULT_ACCOUNT || 'alice';
// OIDC Back-Channel Logout 1.0: where the provider POSTs logout tokens for the first client (none: not
// registered)
const BACKCHANNEL_LOGOUT_URI = process.env.BACKCHANNEL_LOGOUT_URI || '';
// A second confidential client with the same redirect URIs, for tests of tokens issued to another client
// (an ID token whose aud is not the guard's). Off unless SECOND_CLIENT_ID is set.
const SECOND_CLIENT_ID = process.env.SECOND_CLIENT_ID || '';
const SECOND_CLIENT_SECRET = process.env.SECOND_CLIENT_SECRET || crypto.randomBytes(24).toString('base64url');
// The main client's registered ID-token signing algorithm: RS256, ES256 (an EC key is published beside the
// RSA one) or HS256 (signed with the client secret; oidc-provider enables it only when asked).
const ID_TOKEN_ALG = process.env.ID_TOKEN_ALG || 'RS256';
// CLIENT_JWKS (a JSON JWK set of public keys): the main client authenticates with private_key_jwt
// (RFC 7523) with those keys instead of its secret.
const CLIENT_JWKS = process.env.CLIENT_JWKS ? JSON.parse(process.env.CLIENT_JWKS) : undefined;
// More clients beside the main one, each with the same redirect URIs, refresh tokens and rotation:
// KEY_CLIENT_ID with KEY_CLIENT_JWKS (a JSON JWK set of public keys) authenticates with private_key_jwt
// (RFC 7523) only; PUBLIC_CLIENT_ID is a public client (token_endpoint_auth_method "none": PKCE, no
// secret). Off unless set.
const KEY_CLIENT_ID = process.env.KEY_CLIENT_ID || '';
const KEY_CLIENT_JWKS = process.env.KEY_CLIENT_JWKS ? JSON.parse(process.env.KEY_CLIENT_JWKS) : undefined;
const PUBLIC_CLIENT_ID = process.env.PUBLIC_CLIENT_ID || '';
if (KEY_CLIENT_ID && !KEY_CLIENT_JWKS) throw new Error('KEY_CLIENT_ID needs KEY_CLIENT_JWKS');
// RFC 9126: every client must push its authorization requests (the metadata says
// require_pushed_authorization_requests); pushing is allowed either way.
const PAR_REQUIRED = process.env.PAR_REQUIRED === '1';
if (!['RS256', 'ES256', 'HS256'].includes(ID_TOKEN_ALG)) {
  throw new Error(`ID_TOKEN_ALG must be RS256, ES256 or HS256, got ${JSON.stringify(ID_TOKEN_ALG)}`);
}
const LOG_EVENTS = process.env.LOG_EVENTS === '1';
// RFC 8707: the APIs (resource indicators) this provider issues JWT access tokens for, their audience being
// the resource itself (none: every resource= is refused with invalid_target, oidc-provider's default)
const RESOURCES = listFromEnv('RESOURCES', []);
// RFC 6749 4.4: the main client may use the client_credentials grant
const CLIENT_CREDENTIALS = process.env.CLIENT_CREDENTIALS === '1';

// ---------------------------------------------------------------------------------------------------------
// a clock tests can move forward (POST /admin/advance-clock?seconds=N), so "after its TTL" needs no sleep.
// oidc-provider and the adapter below read the time through Date.now() only.

const realNow = Date.now.bind(Date);
let clockOffsetMs = 0;
Date.now = () => realNow() + clockOffsetMs;

// ---------------------------------------------------------------------------------------------------------
// accounts: two fixed users, and any other well-formed id (e.g. a test's own `login_hint=t-1234`) is a user
// too, so tests can work on users of their own and not disturb each other's grants.

const KNOWN_ACCOUNTS = {
  alice: { name: 'Alice Liddell', email: 'alice@example.test' },
  bob: { name: 'Bob Builder', email: 'bob@example.test' },
};
const ACCOUNT_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
// `login_hint=deny` makes the interaction end with error=access_denied (the user said no).
const DENY_HINT = 'deny';

function lookupAccount(id) {
  if (typeof id !== 'string' || !ACCOUNT_ID.test(id) || id === DENY_HINT) return undefined;
  const known = KNOWN_ACCOUNTS[id];
  return {
    sub: id,
    name: known?.name ?? `${id[0].toUpperCase()}${id.slice(1)} Example`,
    email: known?.email ?? `${id.toLowerCase()}@example.test`,
    email_verified: true,
    preferred_username: id,
  };
}

// ---------------------------------------------------------------------------------------------------------
// storage: a small in-memory adapter of our own. The built-in one is an LRU bounded to ~1000 entries (a long
// test session could lose grants) and it cannot list grants by user, which /admin/revoke-grants needs.
// Records are stored as copies, as a database would.

const records = new Map(); // `${model}:${id}` -> { payload, expiresAt }
const byGrant = new Map(); // grantId -> Set of record keys
const byUid = new Map(); // Session uid -> session id
const byUserCode = new Map(); // device user_code -> id

function liveRecord(key) {
  const record = records.get(key);
  if (!record) return undefined;
  if (record.expiresAt !== undefined && record.expiresAt <= Date.now()) {
    dropRecord(key);
    return undefined;
  }
  return record;
}

function dropRecord(key) {
  const record = records.get(key);
  if (!record) return;
  records.delete(key);
  const { grantId, uid, userCode } = record.payload;
  if (grantId) byGrant.get(grantId)?.delete(key);
  if (uid && byUid.get(uid) === key) byUid.delete(uid);
  if (userCode && byUserCode.get(userCode) === key) byUserCode.delete(userCode);
}

class LoopbackAdapter {
  constructor(model) {
    this.model = model;
  }

  key(id) {
    return `${this.model}:${id}`;
  }

  async upsert(id, payload, expiresIn) {
    const key = this.key(id);
    dropRecord(key);
    const expiresAt = typeof expiresIn === 'number' ? Date.now() + expiresIn * 1000 : undefined;
    records.set(key, { payload: structuredClone(payload), expiresAt });
    if (payload.grantId) {
      if (!byGrant.has(payload.grantId)) byGrant.set(payload.grantId, new Set());
      byGrant.get(payload.grantId).add(key);
    }
    if (this.model === 'Session' && payload.uid) byUid.set(payload.uid, key);
    if (payload.userCode) byUserCode.set(payload.userCode, key);
  }

  async find(id) {
    const record = liveRecord(this.key(id));
    return record ? structuredClone(record.payload) : undefined;
  }

  async findByUid(uid) {
    const key = byUid.get(uid);
    const record = key && liveRecord(key);
    return record ? structuredClone(record.payload) : undefined;
  }

  async findByUserCode(userCode) {
    const key = byUserCode.get(userCode);
    const record = key && liveRecord(key);
    return record ? structuredClone(record.payload) : undefined;
  }

  async consume(id) {
    const record = liveRecord(this.key(id));
    if (record) record.payload.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id) {
    dropRecord(this.key(id));
  }

  async revokeByGrantId(grantId) {
    // One call drops every token of the grant, whatever the model; oidc-provider calls it once per model.
    for (const key of [...(byGrant.get(grantId) ?? [])]) dropRecord(key);
    byGrant.delete(grantId);
  }
}

const sweeper = setInterval(() => {
  const now = Date.now();
  for (const [key, record] of records) {
    if (record.expiresAt !== undefined && record.expiresAt <= now) dropRecord(key);
  }
}, 30_000);
sweeper.unref();

// What the admin route /admin/grants reports: a user's grants, and how many of their tokens still work.
function grantsOf(sub) {
  const grants = [];
  for (const [key, record] of [...records]) {
    if (!key.startsWith('Grant:') || record.payload.accountId !== sub || !liveRecord(key)) continue;
    const grantId = key.slice('Grant:'.length);
    let refreshTokens = 0;
    let accessTokens = 0;
    for (const member of [...(byGrant.get(grantId) ?? [])]) {
      const token = liveRecord(member);
      if (!token) continue;
      // a rotated-out refresh token stays stored, marked consumed: presenting it again revokes the grant
      if (member.startsWith('RefreshToken:') && !token.payload.consumed) refreshTokens += 1;
      if (member.startsWith('AccessToken:')) accessTokens += 1;
    }
    grants.push({ grant_id: grantId, refresh_tokens: refreshTokens, access_tokens: accessTokens });
  }
  return grants;
}

// Revoke every grant of one user and end their sessions (what a password change does at a real IdP).
function revokeUser(sub) {
  let grants = 0;
  let sessions = 0;
  for (const [key, record] of [...records]) {
    if (record.payload.accountId !== sub) continue;
    if (key.startsWith('Grant:')) {
      const grantId = key.slice('Grant:'.length);
      for (const member of [...(byGrant.get(grantId) ?? [])]) dropRecord(member);
      byGrant.delete(grantId);
      dropRecord(key);
      grants += 1;
    } else if (key.startsWith('Session:')) {
      dropRecord(key);
      sessions += 1;
    }
  }
  // tokens whose grant record is already gone (belt and braces)
  for (const [key, record] of [...records]) {
    if (record.payload.accountId === sub && /^(AccessToken|RefreshToken|AuthorizationCode):/.test(key)) {
      dropRecord(key);
    }
  }
  return { grants, sessions };
}

// ---------------------------------------------------------------------------------------------------------
// a journal of what clients did at the token and revocation endpoints, for GET /admin/events: tests count
// code exchanges, refreshes and invalid_grant answers from the provider's side. Entries carry a sequence
// number, so a test reads only what happened since it started.

const JOURNAL_LIMIT = 20_000;
const journal = [];
let journalNext = 0;

function journalAdd(entry) {
  journal.push({ seq: journalNext, ...entry });
  journalNext += 1;
  if (journal.length > JOURNAL_LIMIT) journal.splice(0, journal.length - JOURNAL_LIMIT);
}

function accountOf(ctx) {
  const entities = ctx?.oidc?.entities ?? {};
  for (const name of ['Account', 'Grant', 'RefreshToken', 'AuthorizationCode', 'AccessToken']) {
    const accountId = entities[name]?.accountId;
    if (accountId) return accountId;
  }
  return null;
}

function grantTypeOf(ctx) {
  const grantType = ctx?.oidc?.params?.grant_type;
  return typeof grantType === 'string' ? grantType : null;
}

function journalEvents(provider) {
  // every token request ends in exactly one of grant.success and grant.error (the error handler of the token
  // route comes before client authentication); grant.revoked follows reuse detection and RFC 7009 revocation
  provider.on('grant.success', (ctx) => {
    journalAdd({
      event: 'grant.success',
      client_id: ctx.oidc.client?.clientId ?? null,
      grant_type: grantTypeOf(ctx),
      sub: accountOf(ctx),
      grant_id: ctx.oidc.entities.Grant?.jti ?? null,
    });
  });
  provider.on('grant.error', (ctx, err) => {
    journalAdd({
      event: 'grant.error',
      client_id: ctx.oidc?.client?.clientId ?? null,
      grant_type: grantTypeOf(ctx),
      sub: accountOf(ctx),
      error: err?.error ?? String(err),
      // oidc-provider's internal cause ("refresh token already used"), never sent to the client
      detail: err?.error_detail ?? null,
    });
  });
  provider.on('backchannel.success', (_ctx, client, accountId, sid) => {
    journalAdd({ event: 'backchannel.success', client_id: client.clientId, sub: accountId, sid });
  });
  provider.on('backchannel.error', (_ctx, err, client, accountId, sid) => {
    const error = String(err?.message ?? err);
    journalAdd({ event: 'backchannel.error', client_id: client.clientId, sub: accountId, sid, error });
  });
  provider.on('pushed_authorization_request.success', (_ctx, client) => {
    journalAdd({ event: 'par.success', client_id: client.clientId });
  });
  provider.on('pushed_authorization_request.error', (ctx, err) => {
    journalAdd({ event: 'par.error', client_id: ctx.oidc?.client?.clientId ?? null, error: err?.error ?? String(err) });
  });
  provider.on('grant.revoked', (ctx, grantId) => {
    journalAdd({
      event: 'grant.revoked',
      client_id: ctx?.oidc?.client?.clientId ?? null,
      sub: accountOf(ctx),
      grant_id: grantId,
      route: ctx?.oidc?.route ?? null,
    });
  });
}

// ---------------------------------------------------------------------------------------------------------
// the provider

function signingKey() {
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  return { ...jwk, kid: `rs256-${crypto.randomBytes(6).toString('hex')}`, use: 'sig', alg: 'RS256' };
}

function pageShell(title, body) {
  return `<!DOCTYPE html><html><head><meta charset="utf-8"><title>${title}</title></head><body>${body}</body></html>`;
}

// The signing keys, newest first: oidc-provider signs with the first one of the alg. POST
// /admin/rotate-signing-key puts a new one in front (the old one stays published, as providers do).
const signingKeys = [signingKey()];
if (ID_TOKEN_ALG === 'ES256') {
  const { privateKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  signingKeys.push({
    ...privateKey.export({ format: 'jwk' }), kid: `es256-${crypto.randomBytes(6).toString('hex')}`, use: 'sig', alg: 'ES256',
  });
}
const COOKIE_KEYS = [crypto.randomBytes(32).toString('base64url')];

function clientConfig(clientId, clientSecret, idTokenAlg = 'RS256', jwks = undefined) {
  const keyAuth = jwks ? { token_endpoint_auth_method: 'private_key_jwt', jwks } : {};
  return {
    id_token_signed_response_alg: idTokenAlg,
    client_id: clientId,
    client_secret: clientSecret,
    application_type: 'native',
    redirect_uris: REDIRECT_URIS,
    post_logout_redirect_uris: POST_LOGOUT_REDIRECT_URIS,
    grant_types: [
      'authorization_code',
      'refresh_token',
      ...(CLIENT_CREDENTIALS && clientId === CLIENT_ID ? ['client_credentials'] : []),
    ],
    response_types: ['code'],
    // client_secret_post is accepted too: oidc-provider takes either secret method for this client
    token_endpoint_auth_method: 'client_secret_basic',
    ...keyAuth,
    ...(BACKCHANNEL_LOGOUT_URI && clientId === CLIENT_ID
      ? { backchannel_logout_uri: BACKCHANNEL_LOGOUT_URI, backchannel_logout_session_required: true }
      : {}),
  };
}

// the clients that get refresh tokens (the second client is there to be another audience only)
const REFRESHING_CLIENTS = new Set([CLIENT_ID, KEY_CLIENT_ID, PUBLIC_CLIENT_ID].filter(Boolean));

function extraClients() {
  const clients = [];
  if (KEY_CLIENT_ID) {
    const { client_secret: _none, ...config } = clientConfig(KEY_CLIENT_ID, undefined, 'RS256', KEY_CLIENT_JWKS);
    clients.push(config);
  }
  if (PUBLIC_CLIENT_ID) {
    const { client_secret: _none, ...config } = clientConfig(PUBLIC_CLIENT_ID, undefined);
    clients.push({ ...config, token_endpoint_auth_method: 'none' });
  }
  return clients;
}

function createProvider(issuer) {
  const configuration = {
    adapter: LoopbackAdapter,
    clients: [
      clientConfig(CLIENT_ID, CLIENT_SECRET, ID_TOKEN_ALG, CLIENT_JWKS),
      ...(SECOND_CLIENT_ID ? [clientConfig(SECOND_CLIENT_ID, SECOND_CLIENT_SECRET)] : []),
      ...extraClients(),
    ],
    jwks: { keys: [...signingKeys] },
    // kept across rotations (the provider object is rebuilt), so sessions and interactions survive
    cookies: { keys: COOKIE_KEYS },
    clockTolerance: CLOCK_TOLERANCE,
    // HS256 is off in oidc-provider unless enabled; the defaults otherwise (discovery lists what the keys allow)
    ...(ID_TOKEN_ALG === 'HS256'
      ? { enabledJWA: { idTokenSigningAlgValues: ['RS256', 'PS256', 'ES256', 'EdDSA', 'HS256'] } }
      : {}),
    // oidc-provider refuses outgoing calls to special-use addresses (SSRF protection); here every client
    // lives on loopback, so its back-channel logout calls go out without that dispatcher
    fetch: (url, options) => {
      const { dispatcher: _ssrfGuard, ...rest } = options;
      return globalThis.fetch(url, rest);
    },
    clientAuthMethods: [
      'client_secret_basic',
      'client_secret_post',
      ...(CLIENT_JWKS || KEY_CLIENT_ID ? ['private_key_jwt'] : []),
      ...(PUBLIC_CLIENT_ID ? ['none'] : []),
    ],
    // the token request must name the redirect_uri it used, even with one registered URI
    allowOmittingSingleRegisteredRedirectUri: false,
    responseTypes: ['code'],
    scopes: ['openid', 'offline_access', 'profile', 'email'],
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name', 'preferred_username'],
    },
    // put the scope's claims (email, name) in the ID token, not only at userinfo
    conformIdTokenClaims: false,
    pkce: { required: () => true }, // oidc-provider 9 knows only S256
    rotateRefreshToken: true,
    issueRefreshToken: async (_ctx, client) => REFRESHING_CLIENTS.has(client.clientId) && client.grantTypeAllowed('refresh_token'),
    expiresWithSession: async () => false,
    ttl: {
      AccessToken: ACCESS_TOKEN_TTL,
      AuthorizationCode: CODE_TTL,
      RefreshToken: REFRESH_TOKEN_TTL,
      IdToken: 3600,
      Interaction: 600,
      Session: 24 * 3600,
      Grant: Math.max(REFRESH_TOKEN_TTL, 24 * 3600),
    },
    findAccount: async (_ctx, id) => {
      const account = lookupAccount(id);
      if (!account) return undefined;
      return { accountId: id, claims: async () => ({ ...account }) };
    },
    interactions: { url: async (_ctx, interaction) => `/interaction/${interaction.uid}` },
    clientBasedCORS: () => false,
    features: {
      devInteractions: { enabled: false },
      userinfo: { enabled: true },
      revocation: {
        enabled: true,
        allowedPolicy: async (_ctx, client, token) => token.clientId === client.clientId,
      },
      introspection: {
        enabled: true,
        allowedPolicy: async (_ctx, client, token) => token.clientId === client.clientId,
      },
      backchannelLogout: { enabled: true },
      pushedAuthorizationRequests: { enabled: true, requirePushedAuthorizationRequests: PAR_REQUIRED },
      clientCredentials: { enabled: CLIENT_CREDENTIALS },
      resourceIndicators: {
        enabled: true,
        getResourceServerInfo: async (_ctx, resourceIndicator) => {
          if (!RESOURCES.includes(resourceIndicator)) throw new errors.InvalidTarget();
          return {
            scope: 'api:read',
            audience: resourceIndicator,
            accessTokenTTL: ACCESS_TOKEN_TTL,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'RS256' } },
          };
        },
      },
      rpInitiatedLogout: {
        enabled: true,
        // auto-submitting confirmation, so a browser signs out without a click; headless clients post the
        // form themselves (xsrf + logout=yes)
        logoutSource: async (ctx, form) => {
          ctx.type = 'html';
          ctx.body = pageShell(
            'Sign out',
            `${form.replace('</form>', '<input type="hidden" name="logout" value="yes"/></form>')}`
              + '<script>document.forms[0].submit()</script>',
          );
        },
        postLogoutSuccessSource: async (ctx) => {
          ctx.type = 'html';
          ctx.body = pageShell('Signed out', '<p>Signed out.</p>');
        },
      },
    },
    renderError: async (ctx, out) => {
      ctx.type = 'json';
      ctx.body = out;
    },
  };

  const provider = new Provider(issuer, configuration);
  provider.on('server_error', (_ctx, err) => console.error('oidc-provider server_error:', err));
  journalEvents(provider);
  if (LOG_EVENTS) {
    for (const event of ['grant.success', 'grant.error', 'grant.revoked', 'authorization.error']) {
      provider.on(event, (_ctx, arg) => console.error(`event ${event}`, arg?.message ?? arg ?? ''));
    }
  }
  return provider;
}

// ---------------------------------------------------------------------------------------------------------
// the headless interaction: finish login (and consent) at once, for `alice` or the login_hint account

async function finishInteraction(provider, req, res) {
  const details = await provider.interactionDetails(req, res);
  const { prompt, params, session } = details;
  const hint = typeof params.login_hint === 'string' ? params.login_hint : undefined;

  if (hint === DENY_HINT) {
    await provider.interactionFinished(
      req,
      res,
      { error: 'access_denied', error_description: 'End-User denied the authorization request' },
      { mergeWithLastSubmission: false },
    );
    return;
  }

  const result = {};
  let accountId = session?.accountId;
  if (prompt.name === 'login' || !accountId) {
    accountId = hint || DEFAULT_ACCOUNT;
    if (!lookupAccount(accountId)) {
      await provider.interactionFinished(
        req,
        res,
        { error: 'access_denied', error_description: `unknown account ${JSON.stringify(accountId)}` },
        { mergeWithLastSubmission: false },
      );
      return;
    }
    result.login = { accountId };
  }

  // consent: grant what was asked for (known OIDC scopes, and resource scopes the prompt reports missing)
  let grant = details.grantId ? await provider.Grant.find(details.grantId) : undefined;
  if (!grant || grant.accountId !== accountId) {
    grant = new provider.Grant({ accountId, clientId: params.client_id });
  }
  const known = new Set(['openid', 'offline_access', 'profile', 'email']);
  const scopes = String(params.scope ?? '').split(' ').filter((s) => known.has(s));
  if (scopes.length) grant.addOIDCScope(scopes.join(' '));
  const promptDetails = prompt.details ?? {};
  if (promptDetails.missingOIDCClaims) grant.addOIDCClaims(promptDetails.missingOIDCClaims);
  for (const [indicator, missing] of Object.entries(promptDetails.missingResourceScopes ?? {})) {
    grant.addResourceScope(indicator, missing.join(' '));
  }
  result.consent = { grantId: await grant.save() };

  await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: true });
}

// ---------------------------------------------------------------------------------------------------------
// the HTTP server: /interaction/* and /admin/* here, everything else to oidc-provider

function sendJson(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': Buffer.byteLength(text),
    'Cache-Control': 'no-store',
  });
  res.end(text);
}

function isLoopback(address) {
  return address === '127.0.0.1' || address === '::1' || address === '::ffff:127.0.0.1'
    || (typeof address === 'string' && address.startsWith('127.'));
}

let provider;
let providerCallback;
let issuer;

// POST /admin/hold-token?n=N holds the next N token requests (a slow provider) until POST /admin/release-token
const tokenHold = { armed: 0, held: 0, released: Promise.resolve(), release: () => {} };

async function route(req, res) {
  const url = new URL(req.url, 'http://loopback.invalid');

  if (url.pathname.startsWith('/interaction/')) {
    if (req.method !== 'GET') return sendJson(res, 405, { error: 'method_not_allowed' });
    try {
      await finishInteraction(provider, req, res);
    } catch (err) {
      sendJson(res, 400, { error: err.name ?? 'error', error_description: err.error_description ?? err.message });
    }
    return undefined;
  }

  if (req.method === 'GET' && url.pathname === '/jwks') journalAdd({ event: 'request', path: '/jwks' });
  if (req.method === 'POST' && ['/token', '/token/revocation', '/request'].includes(url.pathname)) {
    // counted as they arrive, before oidc-provider reads them: the events above say how each one ended
    journalAdd({ event: 'request', path: url.pathname });
  }

  if (req.method === 'POST' && url.pathname === '/token' && tokenHold.armed > 0) {
    // a slow provider, on demand: held before oidc-provider reads the request, until /admin/release-token
    tokenHold.armed -= 1;
    tokenHold.held += 1;
    await tokenHold.released;
  }

  if (url.pathname.startsWith('/admin/')) {
    if (!isLoopback(req.socket.remoteAddress)) return sendJson(res, 403, { error: 'forbidden' });
    if (url.pathname === '/admin/hold-token' && req.method === 'POST') {
      const n = Number(url.searchParams.get('n') ?? 1);
      if (!Number.isInteger(n) || n < 1) {
        return sendJson(res, 400, { error: 'invalid_request', error_description: 'n must be an integer >= 1' });
      }
      tokenHold.armed += n;
      tokenHold.released = new Promise((resolve) => {
        tokenHold.release = resolve;
      });
      return sendJson(res, 200, { armed: tokenHold.armed, held: tokenHold.held });
    }
    if (url.pathname === '/admin/hold-token' && req.method === 'GET') {
      return sendJson(res, 200, { armed: tokenHold.armed, held: tokenHold.held });
    }
    if (url.pathname === '/admin/release-token' && req.method === 'POST') {
      tokenHold.armed = 0;
      tokenHold.release();
      return sendJson(res, 200, { armed: 0, held: tokenHold.held });
    }
    if (url.pathname === '/admin/rotate-signing-key' && req.method === 'POST') {
      // a new signing key after discovery (rp-key-rotation-op-sign-key): the provider is rebuilt with it in
      // front; grants, sessions and tokens live in the module-level adapter and survive
      signingKeys.unshift(signingKey());
      provider = createProvider(issuer);
      providerCallback = provider.callback();
      return sendJson(res, 200, { kids: signingKeys.map((k) => k.kid) });
    }
    if (url.pathname === '/admin/health' && req.method === 'GET') {
      return sendJson(res, 200, { status: 'ok', issuer, client_id: CLIENT_ID });
    }
    if (url.pathname === '/admin/advance-clock' && req.method === 'POST') {
      const seconds = Number(url.searchParams.get('seconds'));
      if (!Number.isFinite(seconds) || seconds < 0) {
        return sendJson(res, 400, { error: 'invalid_request', error_description: 'seconds must be >= 0' });
      }
      clockOffsetMs += Math.round(seconds * 1000);
      return sendJson(res, 200, { offset_seconds: clockOffsetMs / 1000, now: Math.floor(Date.now() / 1000) });
    }
    if (url.pathname === '/admin/events' && req.method === 'GET') {
      const since = Number(url.searchParams.get('since') ?? 0);
      if (!Number.isInteger(since) || since < 0) {
        const description = 'since must be an integer >= 0';
        return sendJson(res, 400, { error: 'invalid_request', error_description: description });
      }
      return sendJson(res, 200, { next: journalNext, events: journal.filter((e) => e.seq >= since) });
    }
    if (url.pathname === '/admin/grants' && req.method === 'GET') {
      const sub = url.searchParams.get('sub');
      if (!sub) return sendJson(res, 400, { error: 'invalid_request', error_description: 'sub is required' });
      return sendJson(res, 200, { sub, grants: grantsOf(sub) });
    }
    if (url.pathname === '/admin/backchannel-logout' && req.method === 'POST') {
      // What the provider does when it ends a user's sessions: a back-channel logout of each of them, sent
      // by oidc-provider itself. `age=N` issues the logout tokens as if N seconds ago (a stale token).
      const sub = url.searchParams.get('sub');
      const age = Number(url.searchParams.get('age') ?? 0);
      if (!sub || !Number.isFinite(age) || age < 0) {
        return sendJson(res, 400, { error: 'invalid_request', error_description: 'sub, and age >= 0' });
      }
      const client = await provider.Client.find(CLIENT_ID);
      const results = [];
      for (const [key, record] of [...records]) {
        if (!key.startsWith('Session:') || record.payload.accountId !== sub || !liveRecord(key)) continue;
        const sid = record.payload.authorizations?.[CLIENT_ID]?.sid;
        if (!sid) continue;
        clockOffsetMs -= age * 1000;
        try {
          await client.backchannelLogout(sub, sid);
          results.push({ sid, delivered: true });
        } catch (err) {
          results.push({ sid, delivered: false, error: String(err?.message ?? err) });
        } finally {
          clockOffsetMs += age * 1000;
        }
      }
      return sendJson(res, 200, { sub, results });
    }
    if (url.pathname === '/admin/revoke-grants' && req.method === 'POST') {
      const sub = url.searchParams.get('sub');
      if (!sub) return sendJson(res, 400, { error: 'invalid_request', error_description: 'sub is required' });
      return sendJson(res, 200, { sub, ...revokeUser(sub) });
    }
    return sendJson(res, 404, { error: 'not_found' });
  }

  return providerCallback(req, res);
}

const server = http.createServer((req, res) => {
  route(req, res).catch((err) => {
    console.error('interop server error:', err);
    if (!res.headersSent) sendJson(res, 500, { error: 'server_error' });
    else res.destroy();
  });
});

server.on('error', (err) => {
  console.error(`interop server: ${err.message}`);
  process.exit(1);
});

server.listen(PORT, HOST, () => {
  const { port } = server.address();
  issuer = process.env.ISSUER || `http://${HOST}:${port}`;
  provider = createProvider(issuer);
  providerCallback = provider.callback();
  process.stdout.write(`READY ${issuer}\n`);
});

function shutdown(signal) {
  server.close(() => process.exit(0));
  server.closeAllConnections();
  // a connection that still refuses to close must not keep the process alive
  setTimeout(() => process.exit(0), 2000).unref();
  if (LOG_EVENTS) console.error(`interop server: ${signal}, exiting`);
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
