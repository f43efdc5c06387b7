// The sample's login against the real wxlogin: on launch, with
// wx.checkSession, and again after logout, revocation or expiry, once for
// many requests at a time.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const server = require('./server');
const { createPhone, launch } = require('./wx-shim');
const config = require('../config');
const auth = require('../utils/auth');
const { request } = require('../utils/request');

const srv = server.serveDuringTests(config);

// count is how many requests the phone sent to path.
function count(phone, method, path) {
  return phone.requests.filter((r) => r.method === method && r.path === path).length;
}

// revoke ends a token on the server behind the phone's back, as a logout on
// another device or a server restart with lost tokens would.
async function revoke(url, token) {
  const resp = await fetch(url + '/logout', { method: 'POST', headers: { Authorization: 'Bearer ' + token } });
  assert.equal((await resp.json()).status, 0);
}

// statusOf is what wxlogin answers GET /user with the token.
async function statusOf(url, token) {
  const resp = await fetch(url + '/user', { headers: { Authorization: 'Bearer ' + token } });
  return (await resp.json()).status;
}

test('launch logs in with wx.login and POST /login, and stores the token', async () => {
  const phone = createPhone(srv.url, 'alice');
  const token = await launch(phone, server.sampleRoot).globalData.ready;
  assert.match(token, /^\S{20,}$/);
  assert.equal(phone.wx.getStorageSync('token'), token);
  assert.equal(phone.logins, 1);
  assert.equal(count(phone, 'POST', '/login'), 1);

  const user = await request('/user');
  assert.equal(user.appid, 'wxfa4e000000000000');
  assert.equal(phone.requests.at(-1).authorization, 'Bearer ' + token);
  assert.equal('session_key' in user, false);
});

test('a relaunch keeps the token while wx.checkSession succeeds, and logs in when it fails', async () => {
  const phone = createPhone(srv.url, 'bob');
  const first = await launch(phone, server.sampleRoot).globalData.ready;

  const again = await launch(phone, server.sampleRoot).globalData.ready;
  assert.equal(again, first);
  assert.equal(phone.logins, 1, 'a valid session needs no new login');

  phone.expireSession();
  const renewed = await launch(phone, server.sampleRoot).globalData.ready;
  assert.notEqual(renewed, first);
  assert.equal(phone.logins, 2);
  assert.equal(phone.wx.getStorageSync('token'), renewed);
});

test('a request with no token logs in first', async () => {
  const phone = createPhone(srv.url, 'carol');
  const user = await request('/user');
  assert.equal(typeof user.id, 'number');
  assert.equal(phone.logins, 1);
  assert.deepEqual(phone.requests.map((r) => r.method + ' ' + r.path), ['POST /login', 'GET /user']);
});

test('status 4 logs in again once and retries the request', async () => {
  const phone = createPhone(srv.url, 'alice');
  const old = await launch(phone, server.sampleRoot).globalData.ready;
  await revoke(srv.url, old);

  const user = await request('/user');
  assert.equal(typeof user.id, 'number');
  assert.equal(phone.logins, 2);
  assert.deepEqual(phone.requests.slice(1).map((r) => r.method + ' ' + r.path), ['GET /user', 'POST /login', 'GET /user']);
  assert.notEqual(phone.wx.getStorageSync('token'), old);
});

test('concurrent requests that all meet status 4 cause one login', async () => {
  const phone = createPhone(srv.url, 'alice');
  const old = await launch(phone, server.sampleRoot).globalData.ready;
  await revoke(srv.url, old);

  const users = await Promise.all(Array.from({ length: 8 }, () => request('/user')));
  assert.equal(new Set(users.map((u) => u.id)).size, 1);
  assert.equal(phone.logins, 2, 'eight refused requests, one new login');
  assert.equal(count(phone, 'POST', '/login'), 2);
  assert.equal(count(phone, 'GET', '/user'), 16);
});

test('a request refused after another already logged in again reuses the new token', async () => {
  const phone = createPhone(srv.url, 'alice');
  const old = await launch(phone, server.sampleRoot).globalData.ready;
  await revoke(srv.url, old);
  await request('/user'); // logs in again
  const fresh = phone.wx.getStorageSync('token');

  assert.equal(await auth.relogin(old), fresh);
  assert.equal(phone.logins, 2);
});

test('logout ends the token on the server, and the next request logs in again', async () => {
  const phone = createPhone(srv.url, 'dave');
  const old = await launch(phone, server.sampleRoot).globalData.ready;
  await auth.logout();
  assert.equal(phone.wx.getStorageSync('token'), '');
  assert.equal(await statusOf(srv.url, old), 4);

  await request('/user');
  assert.equal(phone.logins, 2);
  assert.notEqual(phone.wx.getStorageSync('token'), old);
});

test('a token past its maximum age is replaced by a new login', async () => {
  const short = await server.start(['-token-max-age', '1s']);
  try {
    config.baseURL = short.url;
    const phone = createPhone(short.url, 'erin');
    const old = await launch(phone, server.sampleRoot).globalData.ready;
    const deadline = Date.now() + 15000;
    while ((await statusOf(short.url, old)) !== 4) {
      assert.ok(Date.now() < deadline, 'the token did not expire within 15 s of a 1 s maximum age');
      await new Promise((resolve) => setTimeout(resolve, 100));
    }

    const user = await request('/user');
    assert.equal(typeof user.id, 'number');
    assert.equal(phone.logins, 2);
  } finally {
    await short.stop();
  }
});

test('wx.request succeeds for every HTTP status; the envelope tells the failure', async () => {
  createPhone(srv.url, 'alice');
  const env = await auth.call('/no-such-route');
  assert.equal(env.httpStatus, 404);
  assert.equal(env.status, 1);

  const missing = await auth.call('/user');
  assert.equal(missing.httpStatus, 401);
  assert.equal(missing.status, auth.STATUS_NOT_LOGGED_IN);
});

test('a code WeChat refuses rejects with status 2 and its errcode', async () => {
  const phone = createPhone(srv.url, 'alice');
  phone.wx.login = (options) => setImmediate(() => options.success({ code: 'not-a-real-code', errMsg: 'login:ok' }));
  await assert.rejects(request('/user'), (err) => {
    assert.equal(err.name, 'ApiError');
    assert.equal(err.status, 2);
    assert.equal(err.httpStatus, 401);
    assert.equal(err.errcode, 40029);
    return true;
  });
});

test('a risk-blocked user: status 8, and no login is tried again until the next launch', async () => {
  const block = (blocked) => fetch(srv.url + '/mock/risk-control', { method: 'POST', body: JSON.stringify({ user: 'mallory', blocked }) });
  await block(true);
  try {
    const phone = createPhone(srv.url, 'mallory');
    assert.equal(await launch(phone, server.sampleRoot).globalData.ready, '');
    assert.equal(phone.logins, 1);
    for (let i = 0; i < 3; i++) {
      await assert.rejects(request('/user'), (err) => err.status === 8 && err.errcode === 40226);
    }
    assert.equal(phone.logins, 1, 'a new code would be blocked too: no wx.login');
    assert.equal(count(phone, 'POST', '/login'), 1);

    await block(false);
    await launch(phone, server.sampleRoot).globalData.ready;
    assert.equal(phone.logins, 2, 'a launch tries once more');
    assert.equal(typeof (await request('/user')).id, 'number');
  } finally {
    await block(false);
  }
});

test('no server rejects with status -1 and says so', async () => {
  createPhone(srv.url, 'alice');
  config.baseURL = 'http://127.0.0.1:1';
  await assert.rejects(request('/user'), (err) => err.status === -1 && /网络错误/.test(err.message));
});

test('the project is set up as the README says: pages exist, DevTools checks no domain, tests stay out', () => {
  const fs = require('node:fs');
  const path = require('node:path');
  const root = server.sampleRoot;
  const project = JSON.parse(fs.readFileSync(path.join(root, 'project.config.json'), 'utf8'));
  assert.equal(project.setting.urlCheck, false, 'a local http:// wxlogin needs 不校验合法域名');
  assert.deepEqual(project.packOptions.ignore, [{ type: 'folder', value: 'tests' }]);
  const app = JSON.parse(fs.readFileSync(path.join(root, 'app.json'), 'utf8'));
  for (const page of app.pages) {
    for (const ext of ['.js', '.json', '.wxml']) {
      assert.ok(fs.existsSync(path.join(root, page + ext)), page + ext + ' is missing');
    }
  }
});
