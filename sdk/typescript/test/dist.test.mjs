// dist/ is committed (so `npm install <path>` needs no build step): prove it is what
// tsc makes of src/ today.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

test('dist/ is current with src/', () => {
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  const out = mkdtempSync(join(tmpdir(), 'xray-sdk-dist-'));
  try {
    execFileSync(process.execPath, [tsc, '-p', join(ROOT, 'tsconfig.json'), '--outDir', out]);
    const fresh = readdirSync(out).sort();
    assert.deepEqual(readdirSync(join(ROOT, 'dist')).sort(), fresh);
    for (const name of fresh) {
      assert.equal(readFileSync(join(ROOT, 'dist', name), 'utf8'),
                   readFileSync(join(out, name), 'utf8'),
                   `dist/${name} is stale: run \`npm run build\` and commit dist/`);
    }
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});
