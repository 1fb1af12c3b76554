/** The session cookie and the cross-site rules of the web console, pure. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { clearedSessionCookie, cookieValue, crossSiteRefusal, sameOrigin, sessionCookie, sessionCookieName } from '../../../src/core/sessions.js';

test('the cookie is __Host- prefixed, per port, HttpOnly, Secure, SameSite=Strict on the whole site', () => {
  assert.equal(sessionCookieName(8443), '__Host-corral-session-8443');
  assert.equal(sessionCookieName(undefined), '__Host-corral-session');
  assert.equal(sessionCookie('__Host-corral-session-8443', 'abc', 43200), '__Host-corral-session-8443=abc; Path=/; Max-Age=43200; HttpOnly; Secure; SameSite=Strict');
  assert.equal(clearedSessionCookie('c'), 'c=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Strict');
});

test('a cookie is read by its exact name only', () => {
  const h = 'x=1; __Host-corral-session-8443=id1; __Host-corral-session-84430=id2; __Host-corral-session=id3';
  assert.equal(cookieValue(h, '__Host-corral-session-8443'), 'id1');
  assert.equal(cookieValue(h, '__Host-corral-session'), 'id3');
  assert.equal(cookieValue(h, 'y'), null);
  assert.equal(cookieValue(undefined, 'x'), null);
  assert.equal(cookieValue('novalue; x=2', 'x'), '2');
});

test('only https://HOST (with its port) is this API\'s origin', () => {
  assert.equal(sameOrigin('https://127.0.0.1:8443', '127.0.0.1:8443'), true);
  assert.equal(sameOrigin('https://127.0.0.1:8444', '127.0.0.1:8443'), false, 'another port of the same host is another origin');
  assert.equal(sameOrigin('http://127.0.0.1:8443', '127.0.0.1:8443'), false);
  assert.equal(sameOrigin('https://evil.example', '127.0.0.1:8443'), false);
  assert.equal(sameOrigin('null', '127.0.0.1:8443'), false);
  assert.equal(sameOrigin('https://h.example', 'h.example:443'), true, 'the default port is the same origin');
  assert.equal(sameOrigin('https://127.0.0.1:8443', undefined), false);
});

test('a request from another origin or site is refused; a websocket must say its origin', () => {
  const ok = { method: 'POST', host: '127.0.0.1:8443', origin: undefined, fetchSite: undefined, upgrade: false };
  assert.equal(crossSiteRefusal(ok), null, 'no Origin, no Sec-Fetch-Site (a program, not a browser page): the CSRF token decides');
  assert.equal(crossSiteRefusal({ ...ok, origin: 'https://127.0.0.1:8443', fetchSite: 'same-origin' }), null);
  assert.equal(crossSiteRefusal({ ...ok, method: 'GET', fetchSite: 'none' }), null, 'typed into the address bar');
  assert.match(crossSiteRefusal({ ...ok, origin: 'https://127.0.0.1:9000' })!, /another origin \(https:\/\/127\.0\.0\.1:9000\)/);
  assert.match(crossSiteRefusal({ ...ok, fetchSite: 'same-site' })!, /Sec-Fetch-Site: same-site/);
  assert.match(crossSiteRefusal({ ...ok, method: 'GET', fetchSite: 'cross-site' })!, /another site/);
  assert.match(crossSiteRefusal({ ...ok, method: 'GET', upgrade: true })!, /websocket .* must say its Origin/);
  assert.equal(crossSiteRefusal({ ...ok, method: 'GET', upgrade: true, origin: 'https://127.0.0.1:8443' }), null);
});
