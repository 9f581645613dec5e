/**
 * A LangChain callback handler that carries the session, chain, step and run ids of an
 * agent run into every decision the SDK asks for.
 *
 * Pass it in `callbacks` when invoking a chain, agent or tool. It remembers, per LangChain
 * run, the step named in the run's metadata (`scopegate_step`, inherited by child runs),
 * so a guarded tool deep inside a chain knows which step it belongs to. Handlers are
 * awaited (not run in the background) so the context is recorded before the tool runs.
 */
import { randomUUID } from 'node:crypto';
import { BaseCallbackHandler } from '@langchain/core/callbacks/base';
import type { Serialized } from '@langchain/core/load/serializable';

/** Metadata keys read from a run's config (`{ metadata: { scopegate_step: 'lookup' } }`). */
export const METADATA_KEYS = { step: 'scopegate_step', chain: 'scopegate_chain', session: 'scopegate_session' } as const;

export interface RunContext {
  session_id?: string;
  chain?: string;
  step?: string;
  run_id?: string;
}

interface RunEntry {
  parent: string | undefined;
  step: string | undefined;
  chain: string | undefined;
}

/** Runs remembered at most; the oldest are forgotten first (runs end, but errors can leak). */
const MAX_RUNS = 10_000;

export interface ScopegateCallbackHandlerOptions {
  /** Session id for the audit timeline. Default: a fresh UUID per handler. */
  sessionId?: string;
  /** Chain name when a run's metadata names none. */
  chain?: string;
  /** Step when a run's metadata names none (see also `setStep`). */
  step?: string;
}

export class ScopegateCallbackHandler extends BaseCallbackHandler {
  name = 'scopegate';
  readonly sessionId: string;
  readonly chain: string | undefined;
  #step: string | undefined;
  readonly #runs = new Map<string, RunEntry>();

  constructor(opts: ScopegateCallbackHandlerOptions = {}) {
    super({ _awaitHandler: true });
    this.sessionId = opts.sessionId ?? randomUUID();
    this.chain = opts.chain;
    this.#step = opts.step;
  }

  /** The step used for runs whose metadata names none (a simple agent loop sets it per turn). */
  setStep(step: string | undefined): void {
    this.#step = step;
  }

  get step(): string | undefined {
    return this.#step;
  }

  /** Context of a run: its own metadata first, then its ancestors', then the handler defaults. */
  contextFor(runId: string | undefined, metadata?: Record<string, unknown>): RunContext {
    let step = str(metadata?.[METADATA_KEYS.step]);
    let chain = str(metadata?.[METADATA_KEYS.chain]);
    const session = str(metadata?.[METADATA_KEYS.session]) ?? this.sessionId;
    // Bounded walk up the run tree (a cycle cannot happen, but a bound costs nothing).
    let id = runId;
    for (let i = 0; i < 256 && id !== undefined && (step === undefined || chain === undefined); i++) {
      const entry = this.#runs.get(id);
      if (!entry) break;
      step ??= entry.step;
      chain ??= entry.chain;
      id = entry.parent;
    }
    step ??= this.#step;
    chain ??= this.chain;
    return {
      session_id: session,
      ...(chain !== undefined ? { chain } : {}),
      ...(step !== undefined ? { step } : {}),
      ...(runId !== undefined ? { run_id: runId } : {}),
    };
  }

  #remember(runId: string, parentRunId: string | undefined, metadata: Record<string, unknown> | undefined): void {
    if (this.#runs.size >= MAX_RUNS) {
      const oldest = this.#runs.keys().next().value;
      if (oldest !== undefined) this.#runs.delete(oldest);
    }
    this.#runs.set(runId, { parent: parentRunId, step: str(metadata?.[METADATA_KEYS.step]), chain: str(metadata?.[METADATA_KEYS.chain]) });
  }

  #forget(runId: string): void {
    this.#runs.delete(runId);
  }

  override handleChainStart(
    _chain: Serialized,
    _inputs: unknown,
    runId: string,
    _runType?: string,
    _tags?: string[],
    metadata?: Record<string, unknown>,
    _runName?: string,
    parentRunId?: string,
  ): void {
    this.#remember(runId, parentRunId, metadata);
  }

  override handleChainEnd(_outputs: unknown, runId: string): void {
    this.#forget(runId);
  }

  override handleChainError(_err: unknown, runId: string): void {
    this.#forget(runId);
  }

  override handleToolStart(
    _tool: Serialized,
    _input: string,
    runId: string,
    parentRunId?: string,
    _tags?: string[],
    metadata?: Record<string, unknown>,
  ): void {
    this.#remember(runId, parentRunId, metadata);
  }

  override handleToolEnd(_output: unknown, runId: string): void {
    this.#forget(runId);
  }

  override handleToolError(_err: unknown, runId: string): void {
    this.#forget(runId);
  }
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' && v.length > 0 && v.length <= 256 ? v : undefined;
}
