/**
 * Compiles the bundled policy library (policies/) to .scopegate/build/bundle.tar.gz and
 * prints the output path. Run by `npm start` and `npm test` (prestart/pretest) so both
 * always use a bundle that matches the Rego on disk.
 */
import path from 'node:path';
import { BUNDLED_POLICY_DIR, REPO_ROOT } from '../pdp-server/src/config.js';
import { isScopegateError } from '../pdp-server/src/errors.js';
import { BUILT_BUNDLE_FILE, buildWasmBundle, findOpa } from '../pdp-server/src/policy/opa-cli.js';

try {
  const opa = await findOpa(process.env['SCOPEGATE_OPA_BIN']);
  await buildWasmBundle({ opa, dirs: [BUNDLED_POLICY_DIR], outFile: BUILT_BUNDLE_FILE });
  console.log(path.relative(REPO_ROOT, BUILT_BUNDLE_FILE));
} catch (err) {
  console.error(`policy build failed: ${isScopegateError(err) ? err.message : String(err)}`);
  process.exit(1);
}
