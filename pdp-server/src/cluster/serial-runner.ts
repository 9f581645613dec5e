/**
 * Runs store reads one at a time (polls, resyncs and prunes of one service never overlap),
 * skips them once the service is closed, and turns a failure into a logged warning — the
 * next scheduled run retries.
 */
export type SerialRunner = (what: string, fn: () => Promise<void>) => Promise<void>;

export function serialRunner(isClosed: () => boolean, onFailure: (what: string, err: Error) => void): SerialRunner {
  let chain: Promise<void> = Promise.resolve();
  return (what, fn) => {
    const run = chain.then(async () => {
      if (isClosed()) return;
      try {
        await fn();
      } catch (err) {
        onFailure(what, err as Error);
      }
    });
    chain = run;
    return run;
  };
}
