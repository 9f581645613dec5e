/**
 * `npm run demo`: the whole system in one command — see demo/demo.ts for what runs.
 * Uses the Postgres at DATABASE_URL for the demo database when set (a throwaway database
 * is created and dropped), otherwise embedded PGlite; nothing else is needed.
 */
import { runDemo, type DemoOutput } from './demo.js';

const color = process.stdout.isTTY && !process.env.NO_COLOR;
const paint = (code: string) => (s: string) => (color ? `\x1b[${code}m${s}\x1b[0m` : s);
const bold = paint('1');
const dim = paint('2');
const green = paint('32');
const red = paint('31');
const yellow = paint('33');
const cyan = paint('36');

function short(text: string, max = 220): string {
  const oneLine = text.replace(/\s+/g, ' ');
  return oneLine.length > max ? `${oneLine.slice(0, max)}…` : oneLine;
}

function print(o: DemoOutput): void {
  switch (o.kind) {
    case 'banner':
      console.log(dim(`scopegate demo — ${o.text}`));
      return;
    case 'step':
      console.log(`\n${bold(`${o.index}. ${o.title}`)}  ${dim(`[step token: ${o.step}]`)}`);
      return;
    case 'approver':
      console.log(
        o.action === 'approved'
          ? `   ${green('✔ approver')} approves ${o.approvalId} over the REST API (${o.summary})`
          : `   ${yellow('… approver')} leaves ${o.approvalId} pending (${o.summary})`,
      );
      return;
    case 'timeline': {
      console.log(`\n${bold('Session timeline')} ${dim('(GET /v1/sessions/:id, auditor key)')}`);
      for (const it of o.items) {
        const effect = it.effect === 'allow' ? green(it.effect) : it.effect === 'deny' ? red(it.effect) : yellow(it.effect);
        const what = `${it.resource_kind}:${it.resource_name}`;
        const reasons = it.reasons.slice(0, 2).join('; ');
        console.log(
          `  ${dim(it.time.slice(11, 23))} ${(it.event === 'decision' ? '' : `${it.event} `).padEnd(0)}${(it.shim ?? '-').padEnd(10)} ${(it.step ?? '-').padEnd(9)} ${what.padEnd(22)} ${effect.padEnd(color ? 26 : 17)} ${dim(short(reasons, 90))}`,
        );
      }
      return;
    }
    case 'agent': {
      const e = o.event;
      switch (e.kind) {
        case 'user':
          console.log(`   ${cyan('user')}   ${e.text}`);
          return;
        case 'tool_call':
          console.log(`   ${cyan('model')}  calls ${e.tool}(${JSON.stringify(e.args)})`);
          return;
        case 'guard': {
          const tag = e.outcome === 'allowed' ? green('allow') : e.outcome === 'denied' ? red('deny') : yellow(e.outcome);
          console.log(`   ${dim('sdk')}    guardTool ${e.tool}: ${tag} ${dim(`(${e.reasons.join('; ')})`)}`);
          return;
        }
        case 'held':
          console.log(`   ${yellow('pg-proxy')} held ${e.tool}: approval ${e.approvalId} required; waiting (long-poll)`);
          return;
        case 'tool_result':
          console.log(`   ${dim('tool')}   ${e.tool} → ${short(e.text)}`);
          return;
        case 'answer':
          console.log(`   ${cyan('model')}  ${e.text}`);
          return;
        case 'model_refused':
          console.log(`   ${red('http-proxy')} refused the prompt before it reached the model: HTTP ${e.status} ${dim(`(decision ${e.decisionId ?? '?'})`)}`);
          return;
      }
    }
  }
}

const started = Date.now();
runDemo({ databaseUrl: process.env.DATABASE_URL, out: print }).then(
  (r) => {
    console.log(dim(`\n${r.timeline.length} timeline entries; finished in ${((Date.now() - started) / 1000).toFixed(1)} s`));
    process.exit(0);
  },
  (err: unknown) => {
    console.error(red(`demo failed: ${(err as Error).message}`));
    process.exit(1);
  },
);
