/**
 * A labelled form control with its error underneath: the API's own message for the field its INVALID_SPEC names.
 * The control is tied to both by id (label for=, aria-describedby, aria-invalid), so a screen reader reads them.
 */
import type { ComponentChildren } from 'preact';

export const fieldId = (field: string): string => `f-${field.replace(/[^a-zA-Z0-9]+/g, '-')}`;

export function Field(p: { field: string; label: string; error?: string | undefined; help?: string; children: ComponentChildren }) {
  const id = fieldId(p.field);
  return (
    <div class={p.error ? 'field invalid' : 'field'}>
      <label for={id}>{p.label}</label>
      {p.children}
      {p.help && !p.error && <small id={`${id}-help`} class="help">{p.help}</small>}
      {p.error && <small id={`${id}-error`} class="error" role="alert">{p.error}</small>}
    </div>
  );
}

/** What a control inside a Field needs: its id and its ties to the label's error or help. */
export function controlProps(field: string, error: string | undefined, help?: string): Record<string, unknown> {
  const id = fieldId(field);
  return {
    id,
    name: field,
    'aria-invalid': error ? true : undefined,
    'aria-describedby': error ? `${id}-error` : help ? `${id}-help` : undefined,
  };
}
