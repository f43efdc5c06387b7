// The sample's authorization page: wx.getSetting, wx.authorize, a refusal
// that then fails at once, the settings page, and scope.userInfo, which
// wx.authorize cannot ask for. The scopes it asks with wx.authorize are
// checked against wxlogin's GET /scopes.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const server = require('./server');
const { createPhone, launch, openPage } = require('./wx-shim');
const config = require('../config');

const srv = server.serveDuringTests(config);

// authorizationPage opens the page on a fresh phone.
async function authorizationPage() {
  const phone = createPhone(srv.url, 'alice');
  await phone.agreedBefore(); // privacy.test.js tests the popup in front of the scopes
  await launch(phone, server.sampleRoot).globalData.ready;
  const page = openPage(phone, server.sampleRoot, 'pages/authorize/authorize');
  await page.onShow();
  return { phone, page };
}

// kinds lists the dialogs the phone showed, in order.
function kinds(phone) {
  return phone.dialogs.map((d) => d.kind + (d.scope ? ' ' + d.scope : ''));
}

test('the scopes the sample asks for are the ones GET /scopes says wx.authorize can ask for', async () => {
  const resp = await fetch(srv.url + '/scopes');
  const { data } = await resp.json();
  const how = Object.fromEntries(data.scopes.map((s) => [s.scope, s.request]));
  assert.equal(how['scope.record'], 'authorize');
  assert.equal(how['scope.userLocation'], 'authorize');
  assert.equal(how['scope.userInfo'], 'button');
});

test('nothing asked yet: wx.getSetting lists no scope', async () => {
  const { page } = await authorizationPage();
  assert.deepEqual(page.data.authSetting, {});
});

test('allowed once, never asked again', async () => {
  const { phone, page } = await authorizationPage();
  phone.user.authorize = () => true;
  await page.onRecord();
  assert.equal(page.data.recordReady, true);
  assert.deepEqual(page.data.authSetting, { 'scope.record': true });

  await page.onRecord();
  assert.deepEqual(kinds(phone), ['authorize scope.record'], 'one dialog for two uses');
});

test('refused: no dialog any more, the settings page turns it back on', async () => {
  const { phone, page } = await authorizationPage();
  phone.user.authorize = () => false;
  await page.onLocation();
  assert.match(page.data.message, /scope\.userLocation 未授权：authorize:fail auth deny/);
  assert.deepEqual(page.data.authSetting, { 'scope.userLocation': false });

  // wx.authorize itself now fails at once, with no dialog.
  const direct = await new Promise((resolve) => phone.wx.authorize({ scope: 'scope.userLocation', fail: resolve }));
  assert.equal(direct.errMsg, 'authorize:fail auth deny');
  assert.deepEqual(kinds(phone), ['authorize scope.userLocation']);

  // The page offers the settings page; the user declines.
  phone.user.modal = () => false;
  await page.onLocation();
  assert.match(page.data.message, /未授权/);
  assert.equal(page.data.location, null);

  // The user accepts and switches it on.
  phone.user.modal = () => true;
  phone.user.settings = (setting) => Object.assign(setting, { 'scope.userLocation': true });
  await page.onLocation();
  assert.equal(page.data.message, '');
  assert.deepEqual(page.data.location, { latitude: 39.9087, longitude: 116.3975 });
  assert.deepEqual(page.data.authSetting, { 'scope.userLocation': true });
  assert.deepEqual(kinds(phone), ['authorize scope.userLocation', 'modal', 'modal', 'settings']);
});

test('the settings page left off: still refused', async () => {
  const { phone, page } = await authorizationPage();
  phone.user.authorize = () => false;
  await page.onRecord();
  phone.user.modal = () => true;
  phone.user.settings = () => ({});
  await page.onRecord();
  assert.match(page.data.message, /still off in settings/);
  assert.equal(page.data.recordReady, false);
});

test('the settings page lists only the scopes asked for', async () => {
  const { phone, page } = await authorizationPage();
  phone.user.authorize = (scope) => scope === 'scope.record';
  await page.onRecord();
  await page.onLocation();
  let listed;
  phone.user.settings = (setting) => {
    listed = Object.assign({}, setting);
    return { 'scope.record': false, 'scope.camera': true };
  };
  await page.onOpenSetting();
  assert.deepEqual(listed, { 'scope.record': true, 'scope.userLocation': false });
  assert.deepEqual(page.data.authSetting, { 'scope.record': false, 'scope.userLocation': false }, 'a scope never asked for cannot be switched on');
});

test('scope.userInfo: wx.authorize fails with no dialog; a button tap grants it', async () => {
  const { phone, page } = await authorizationPage();
  await page.onAuthorizeUserInfo();
  assert.match(page.data.message, /wx\.authorize 不能申请 scope\.userInfo/);
  assert.deepEqual(phone.dialogs, []);

  await phone.tap.getUserInfo();
  await page.onAuthorizeUserInfo();
  assert.equal(page.data.message, 'scope.userInfo 已授权（用户曾点过 getUserInfo 按钮）');
  assert.deepEqual(page.data.authSetting, { 'scope.userInfo': true });
});
