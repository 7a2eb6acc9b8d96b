// A real OpenID Connect provider for the tests: panva's certified oidc-provider with its development interactions.
//
//   node tests/oidc/provider.mjs CONFIG.json PORT      (PORT may also come from the OIDC_PORT environment variable)
//
// It listens on 127.0.0.1:PORT with the issuer http://127.0.0.1:PORT, prints "READY <issuer>" on stdout once
// listening, and exits cleanly (status 0) on SIGTERM or SIGINT.
//
// CONFIG.json:
//   {
//     "clients": [{"client_id": "dash", "client_secret": "...", "redirect_uris": ["http://127.0.0.1:8050/auth/callback"],
//                  "post_logout_redirect_uris": ["http://127.0.0.1:8050/"],
//                  "token_endpoint_auth_method": "client_secret_basic"}],      // or "client_secret_post"
//     "accounts": {"alice": {"name": "Alice", "preferred_username": "alice", "roles": ["analyst"], "groups": ["lic-admins"]}},
//     "ttl": {"IdToken": 60, "Session": 60},          // optional, seconds; merged over the defaults below
//     "autoConsent": true                              // optional, default true: no consent page (see below)
//   }
//
// Sign-in: the built-in development interactions. The login page has a form with the text field name="login" and the
// password field name="password" (any password is accepted) and the button "button.login-submit" ("Sign-in"). The
// login is the account id: a known id gets that account's claims, any other id signs in as an account with only a
// `sub` (no name, no roles, no groups). With "autoConsent": false the first sign-in to a client then shows the dev
// consent page, whose only form posts name="prompt" value="consent" with the button "button.login-submit"
// ("Continue"); with the default (true) every requested scope and claim is granted without asking.
//
// Sign-out (RP-initiated logout, end_session_endpoint): the confirmation page's form is "#op\.logoutForm", submitted
// with the button "button[name=logout][value=yes]" ("Yes, sign me out"); it then redirects to the
// post_logout_redirect_uri (when given with id_token_hint or client_id), else shows "Sign-out Success".
//
// Claims: scope "openid" gives sub, "profile" gives name and preferred_username, and the custom scopes "roles" and
// "groups" give the claims of the same names. They are all put in the ID token too (conformIdTokenClaims: false), and
// the userinfo endpoint serves them as well. PKCE (S256) is required for every authorization code request.

import { generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';

import Provider from 'oidc-provider';

const [configPath, portArg] = process.argv.slice(2);
if (!configPath) {
  console.error('usage: node provider.mjs CONFIG.json PORT');
  process.exit(2);
}
const port = Number(portArg || process.env.OIDC_PORT);
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  console.error(`provider.mjs: a port is needed (second argument or OIDC_PORT), got ${portArg || process.env.OIDC_PORT}`);
  process.exit(2);
}
const host = '127.0.0.1';
const issuer = `http://${host}:${port}`;
const config = JSON.parse(readFileSync(configPath, 'utf8'));
const accounts = config.accounts || {};
const autoConsent = config.autoConsent !== false;

const DAY = 24 * 60 * 60;
const ttl = {
  AccessToken: 60 * 60,
  AuthorizationCode: 60,
  ClientCredentials: 10 * 60,
  DeviceCode: 10 * 60,
  BackchannelAuthenticationRequest: 10 * 60,
  IdToken: 60 * 60,
  RefreshToken: DAY,
  Interaction: 60 * 60,
  Session: DAY,
  Grant: DAY,
  ...(config.ttl || {}),
};

// A fresh signing key each run: nothing outside this process needs to know it in advance (RPs read the jwks_uri).
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: 'test-rs256', alg: 'RS256', use: 'sig' };

const clients = (config.clients || []).map((client) => ({
  grant_types: ['authorization_code'],
  response_types: ['code'],
  token_endpoint_auth_method: 'client_secret_basic',
  ...client,
}));

async function autoGrant(ctx) {
  // Find (or start) this client's grant in the session and add whatever this request asks for, so no consent is asked.
  const { oidc } = ctx;
  const grantId = oidc.result?.consent?.grantId || oidc.session.grantIdFor(oidc.client.clientId);
  const grant = (grantId && (await oidc.provider.Grant.find(grantId)))
    || new oidc.provider.Grant({ clientId: oidc.client.clientId, accountId: oidc.session.accountId });
  grant.addOIDCScope([...oidc.requestParamScopes].join(' '));
  if (oidc.requestParamClaims.size) grant.addOIDCClaims([...oidc.requestParamClaims]);
  await grant.save();
  return grant;
}

const claims = {
  openid: ['sub'],
  profile: ['name', 'preferred_username'],
  roles: ['roles'],
  groups: ['groups'],
  ...(config.claims || {}),
};

const configuration = {
  clients,
  jwks: { keys: [signingKey] },
  findAccount(ctx, id) {
    // An unknown login still signs in: an account with only a `sub`, so "no mapped role" can be tested.
    const accountClaims = { ...(accounts[id] || {}) };
    return {
      accountId: id,
      async claims() {
        return { ...accountClaims, sub: accountClaims.sub || id };
      },
    };
  },
  claims,
  scopes: [...new Set(['openid', ...Object.keys(claims).filter((scope) => Array.isArray(claims[scope]))])],
  conformIdTokenClaims: false,
  pkce: { methods: ['S256'], required: () => true },
  features: {
    devInteractions: { enabled: true },
    rpInitiatedLogout: { enabled: true },
    userinfo: { enabled: true },
  },
  cookies: {
    keys: config.cookieKeys || ['test-oidc-cookie-key-0123456789abcdef'],
    // Lax rather than the default None, which Chromium refuses on cookies that are not Secure (plain http here); the
    // provider and the app share the site 127.0.0.1 and every step is a top-level navigation or a same-origin POST.
    long: { signed: true, httpOnly: true, sameSite: 'lax' },
    short: { signed: true, httpOnly: true, sameSite: 'lax' },
  },
  ttl,
  ...(autoConsent ? { loadExistingGrant: autoGrant } : {}),
};

const provider = new Provider(issuer, configuration);
provider.proxy = false;

// The built-in pages import a web font from the internet; this machine has no route there, so a browser would wait on
// it. Drop the import from every HTML page the provider renders.
provider.use(async (ctx, next) => {
  await next();
  if (typeof ctx.body === 'string' && ctx.body.includes('@import url(https://fonts.googleapis.com')) {
    ctx.body = ctx.body.replace(/@import url\(https:\/\/fonts\.googleapis\.com[^)]*\);?/g, '');
  }
});

const server = provider.listen(port, host, () => {
  process.stdout.write(`READY ${issuer}\n`);
});
server.on('error', (err) => {
  console.error(`provider.mjs: ${err.message}`);
  process.exit(1);
});

function stop(signal) {
  console.error(`provider.mjs: ${signal}, stopping`);
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', () => stop('SIGTERM'));
process.on('SIGINT', () => stop('SIGINT'));
