/**
 * Confirmation before an action that stops or removes something: a modal <dialog> (focus stays in it, Escape
 * cancels, Enter on the focused button chooses). `ask()` resolves true only when the action's button was chosen.
 */
import type { ComponentChildren } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';

interface Ask {
  title: string;
  body: ComponentChildren;
  action: string;
  resolve: (yes: boolean) => void;
}

let show: ((a: Ask) => void) | null = null;

export function ask(title: string, body: ComponentChildren, action: string): Promise<boolean> {
  return new Promise((resolve) => {
    if (!show) return resolve(false);
    show({ title, body, action, resolve });
  });
}

export function ConfirmHost() {
  const [req, setReq] = useState<Ask | null>(null);
  const dialog = useRef<HTMLDialogElement>(null);
  useEffect(() => {
    show = setReq;
    return () => {
      show = null;
    };
  }, []);
  useEffect(() => {
    if (req && dialog.current && !dialog.current.open) dialog.current.showModal();
  }, [req]);
  const done = (yes: boolean): void => {
    dialog.current?.close();
    req?.resolve(yes);
    setReq(null);
  };
  return (
    <dialog ref={dialog} class="confirm" aria-labelledby="confirm-title" onCancel={(e) => { e.preventDefault(); done(false); }}>
      {req && (
        <form method="dialog" onSubmit={(e) => { e.preventDefault(); done(true); }}>
          <h2 id="confirm-title">{req.title}</h2>
          <div class="confirm-body">{req.body}</div>
          <div class="buttons">
            <button type="button" onClick={() => done(false)}>Cancel</button>
            <button type="submit" class="danger" autofocus>{req.action}</button>
          </div>
        </form>
      )}
    </dialog>
  );
}
