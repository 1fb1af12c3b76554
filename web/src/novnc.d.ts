/** The part of noVNC's RFB client (@novnc/novnc 1.6, lib/rfb.js; docs/API.md) the graphical console uses. */
declare module '@novnc/novnc/lib/rfb' {
  export default class RFB extends EventTarget {
    constructor(target: HTMLElement, url: string, options?: { shared?: boolean; credentials?: Record<string, string>; wsProtocols?: string[] });
    scaleViewport: boolean;
    resizeSession: boolean;
    clipViewport: boolean;
    viewOnly: boolean;
    focusOnClick: boolean;
    background: string;
    sendCtrlAltDel(): void;
    focus(): void;
    disconnect(): void;
  }
}
