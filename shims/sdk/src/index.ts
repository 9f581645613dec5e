/**
 * scopegate SDK for LangChain.js — least privilege for an agent by changing a few lines:
 *
 *   const pdp = new PdpClient({ url, key: shimKey, shim: 'sdk' });
 *   const tokens = stepTokens(pdpTokenMinter({ url, key: mintKey }), { lookup: [...], write: [...] }, { subject: 'support-bot' });
 *   const handler = new ScopegateCallbackHandler({ chain: 'support-bot' });
 *   const lookupOrders = guardTool(myTool, { pdp, token: (ctx) => tokens.token(ctx.step ?? 'lookup') });
 *   const model = new ChatOpenAI(chatOpenAIFields({ proxyUrl, model, token: await tokens.token('lookup'), sessionId: handler.sessionId }));
 *
 * See shims/sdk/README.md and docs/concepts.md.
 */
export { PdpClient, CLIENT_DENY_CODE, type PdpClientOptions, type ApprovalStatus } from '../../pdp-client/src/index.js';
export type { Decision, DecideRequest } from '../../pdp-client/src/index.js';
export {
  guardTool,
  refusalText,
  ToolRefusedError,
  type Decider,
  type GuardEvent,
  type GuardableTool,
  type GuardOutcome,
  type GuardToolOptions,
  type TokenSource,
} from './guard-tool.js';
export { ScopegateCallbackHandler, METADATA_KEYS, type RunContext, type ScopegateCallbackHandlerOptions } from './scopegate-callback-handler.js';
export {
  stepTokens,
  pdpTokenMinter,
  TokenMintError,
  type StepToken,
  type StepTokens,
  type StepTokensOptions,
  type TokenMinter,
  type MintTokenRequest,
  type MintTokenResponse,
} from './step-tokens.js';
export {
  chatOpenAIFields,
  httpProxyFetch,
  proxyRefusal,
  llmRefusal,
  createPgPool,
  pgPoolConfig,
  sqlRefusal,
  withSqlApproval,
  SqlApprovalPendingError,
  SESSION_HEADER,
  SQL_DENIED,
  type HttpProxyTarget,
  type PgProxyTarget,
  type ProxyRefusal,
  type SqlRefusal,
} from './proxy-clients.js';
