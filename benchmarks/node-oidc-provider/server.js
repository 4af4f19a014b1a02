// node-oidc-provider set up like the token service in token-service/benches/issuance.rs: one
// client (client_secret_basic) doing client_credentials for opaque access tokens addressed to
// one resource server, which introspects them with its own client_secret_basic credentials.
// Its default adapter, in memory: nothing is written to disk, and a restart forgets every
// token. One process: that adapter cannot be shared by cluster workers.
//
// Run with: node server.js   (listens on 127.0.0.1 at a free port; prints "listening <url>")

import Provider, { errors } from 'oidc-provider';

const API = 'https://api.example.test';
const SCOPES = 'akamai:social_profile:read akamai:social_profile:write';
const port = Number(process.env.PORT ?? 0);

// The issuer must be known before listening; with port 0 the server is bound first.
import { createServer } from 'node:http';

const server = createServer();
await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: 'opaque-client',
      client_secret: 'opaque-secret',
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      scope: SCOPES,
    },
    {
      // The resource server: it only introspects.
      client_id: API,
      client_secret: 'api-secret',
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: [],
      response_types: [],
      redirect_uris: [],
    },
  ],
  scopes: SCOPES.split(' '),
  cookies: { keys: ['bench-only-cookie-key'] },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: {
      enabled: true,
      // Like the token service: only the resource server a token is addressed to learns of
      // it (the default policy lets any authenticated client introspect any token).
      allowedPolicy: async (ctx, client, token) => token.aud === client.clientId
        || (Array.isArray(token.aud) && token.aud.includes(client.clientId)),
    },
    resourceIndicators: {
      enabled: true,
      defaultResource: async () => API,
      useGrantedResource: async () => true,
      getResourceServerInfo: async (ctx, resourceIndicator) => {
        if (resourceIndicator !== API) throw new errors.InvalidTarget();
        return {
          scope: SCOPES,
          audience: API,
          accessTokenFormat: 'opaque',
          accessTokenTTL: 3600,
        };
      },
    },
  },
});

server.on('request', provider.callback());
console.log(`listening ${issuer}`);
