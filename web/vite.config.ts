/**
 * The web console's build: `npx vite build web` (make build) writes dist/web (index.html and assets/), which the
 * daemon serves at / (src/api/web.ts). Everything the page needs is in the bundle: no CDN, system fonts.
 */
import { defineConfig, type Plugin } from 'vite';

/**
 * noVNC 1.6's npm package is CommonJS with a top-level await in lib/util/browser.js (whether WebCodecs decodes
 * H.264: novnc/noVNC#1943), which no CommonJS bundle may hold. The check runs without the await here: the flag is
 * false until it answers (rfb.js reads it when a server offers H.264, which QEMU's VNC server never does).
 */
function novncTopLevelAwait(): Plugin {
  const line = 'exports.supportsWebCodecsH264Decode = supportsWebCodecsH264Decode = await _checkWebCodecsH264DecodeSupport();';
  return {
    name: 'corral-novnc-top-level-await',
    enforce: 'pre',
    transform(code, id) {
      if (!id.replace(/\\/g, '/').endsWith('@novnc/novnc/lib/util/browser.js')) return null;
      if (!code.includes(line)) this.error(`${id}: the top-level await this plugin rewrites is not there (another noVNC version?)`);
      return code.replace(line, 'exports.supportsWebCodecsH264Decode = supportsWebCodecsH264Decode = false;\n_checkWebCodecsH264DecodeSupport().then((v) => { exports.supportsWebCodecsH264Decode = supportsWebCodecsH264Decode = v; });');
    },
  };
}

export default defineConfig({
  base: '/',
  plugins: [novncTopLevelAwait()],
  esbuild: { jsx: 'automatic', jsxImportSource: 'preact' },
  build: {
    outDir: '../dist/web',
    emptyOutDir: true,
    assetsDir: 'assets',
    target: 'es2022',
    sourcemap: false,
    // xterm.js and noVNC are chunks of their own, loaded only by an instance's page
    chunkSizeWarningLimit: 400,
  },
});
