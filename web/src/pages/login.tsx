/**
 * Log in with an API token: the token file's ($CORRAL_DATA_DIR/token) or one from `corral token create`. The
 * daemon answers with a session cookie the page cannot read; the token is not kept anywhere.
 */
import { useEffect, useState } from 'preact/hooks';
import { ApiError, login } from '../api';
import type { Session } from '../types';

export function Login({ onLoggedIn }: { onLoggedIn: (s: Session) => void }) {
  const [token, setToken] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  useEffect(() => {
    document.getElementById('token')?.focus();
  }, []);
  const submit = async (e: Event): Promise<void> => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const s = await login(token.trim());
      setToken('');
      onLoggedIn(s);
    } catch (err) {
      setError(err instanceof ApiError ? `${err.code}: ${err.message}` : (err as Error).message);
    } finally {
      setBusy(false);
    }
  };
  return (
    <main class="login">
      <form onSubmit={submit} aria-labelledby="login-title">
        <h1 id="login-title">Corral</h1>
        <label for="token">API token</label>
        <input
          id="token" name="token" type="password" autocomplete="off" spellcheck={false} autofocus required
          value={token} onInput={(e) => setToken(e.currentTarget.value)}
          aria-invalid={error ? true : undefined} aria-describedby={error ? 'login-error' : 'login-help'}
        />
        <p id="login-help" class="help">The token file <code>$CORRAL_DATA_DIR/token</code>, or a token from <code>corral token create NAME --role operator</code>.</p>
        {error && <p id="login-error" class="error" role="alert">{error}</p>}
        <button type="submit" disabled={busy}>{busy ? 'Logging in…' : 'Log in'}</button>
      </form>
    </main>
  );
}
