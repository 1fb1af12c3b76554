/**
 * The web console's build: `npx vite build web` (make build) writes dist/web (index.html and assets/), which the
 * daemon serves at / (src/api/web.ts). Everything the page needs is in the bundle: no CDN, system fonts.
 */
import { defineConfig } from 'vite';

export default defineConfig({
  base: '/',
  esbuild: { jsx: 'automatic', jsxImportSource: 'preact' },
  build: {
    outDir: '../dist/web',
    emptyOutDir: true,
    assetsDir: 'assets',
    target: 'es2022',
    sourcemap: false,
    // xterm.js is its own chunk, loaded only by an instance's page
    chunkSizeWarningLimit: 400,
  },
});
