/**
 * Set-up entry used by `make start` and `make test` before any daemon runs: builds the tiny image into
 * $CORRAL_DATA_DIR with progress on stderr. (Users with a running daemon use `corral image build-tiny`.)
 */
import { dataDirFromEnv } from '../core/paths.js';
import { buildTiny } from '../storage/tiny.js';

const dataDir = dataDirFromEnv();
const t0 = Date.now();
buildTiny(dataDir, (ev) => {
  const pct = ev.percent === undefined ? '' : ` ${Math.round(ev.percent)}%`;
  process.stderr.write(`[${ev.step}] ${ev.message}${pct}\n`);
}, { force: process.argv.includes('--force') })
  .then((img) => {
    process.stderr.write(`tiny image ready in ${((Date.now() - t0) / 1000).toFixed(1)} s: ${img.disk}\n`);
  })
  .catch((e: Error) => {
    process.stderr.write(`error: building the tiny image failed: ${e.message}\n`);
    process.exit(1);
  });
