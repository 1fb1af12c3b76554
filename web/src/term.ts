/**
 * The serial console in the page: xterm.js fed first with the console log (what the guest wrote before: the
 * scrollback), then with the console websocket, where what is typed goes back to the guest. Loaded only by an
 * instance's page (its own chunk of the bundle). The websocket carries the session cookie; the daemon checks its
 * Origin, since any page could open one.
 */
import { Terminal } from '@xterm/xterm';
import { FitAddon } from '@xterm/addon-fit';
import '@xterm/xterm/css/xterm.css';
import { consoleLog, enc } from './api';

export interface SerialConsole {
  close(): void;
  focus(): void;
}

export function openSerialConsole(el: HTMLElement, name: string, status: (text: string, live: boolean) => void): SerialConsole {
  const term = new Terminal({ scrollback: 5000, convertEol: false, cursorBlink: true, fontFamily: 'ui-monospace, "DejaVu Sans Mono", monospace', fontSize: 14 });
  const fit = new FitAddon();
  term.loadAddon(fit);
  term.open(el);
  fit.fit();
  const onResize = (): void => fit.fit();
  addEventListener('resize', onResize);
  let ws: WebSocket | null = null;
  let closed = false;
  const enc8 = new TextEncoder();
  term.onData((d) => {
    if (ws?.readyState === WebSocket.OPEN) ws.send(enc8.encode(d));
  });
  status('reading the console log…', false);
  void consoleLog(name).then((log) => {
    if (closed) return;
    if (log.length > 0) term.write(log);
    ws = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/v1/instances/${enc(name)}/console`);
    ws.binaryType = 'arraybuffer';
    ws.onopen = () => status('attached: what you type goes to the guest', true);
    ws.onmessage = (m) => term.write(typeof m.data === 'string' ? m.data : new Uint8Array(m.data as ArrayBuffer));
    ws.onclose = (c) => {
      if (closed) return;
      status(`detached${c.reason ? `: ${c.reason}` : ' (the instance is not running, its console is attached elsewhere, or the session ended)'}`, false);
    };
  });
  return {
    close: () => {
      closed = true;
      removeEventListener('resize', onResize);
      ws?.close();
      term.dispose();
    },
    focus: () => term.focus(),
  };
}
