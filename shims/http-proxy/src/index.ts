/**
 * scopegate http-proxy as a library: `createHttpProxy(options)` returns a Fastify instance
 * (call `listen`/`close`, or `inject` in tests). The process entry point is main.ts.
 */
export { createHttpProxy, type HttpProxyOptions, type Decider } from './proxy-app.js';
export { compileRoutes, matchRoute, ROUTE_KINDS, RouteConfigError, type RouteConfig, type RouteKind, type Route } from './routes.js';
export { normalizePath } from './path-normalize.js';
export { PROXY_ERRORS, ProxyError, type ProxyErrorCode } from './errors.js';
