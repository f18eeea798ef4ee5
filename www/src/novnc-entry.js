// The entry point `make` bundles into www/vendor/novnc.js with esbuild: noVNC's
// RFB class as one ES module the viewer page imports (no CDN, no loader).
export { default as RFB } from '@novnc/novnc';
