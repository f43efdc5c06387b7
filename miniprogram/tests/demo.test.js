// Demo mode (config.demoCodesFromFake): in WeChat DevTools against `go run
// .`, the sample gets its codes and its buttons' data from the server's fake
// WeChat, never from DevTools' wx.login or buttons, whose data the fake
// cannot know; in a trial or release build it is off whatever config.js
// says.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const server = require('./server');
const { createPhone, launch, openPage } = require('./wx-shim');
const config = require('../config');

const srv = server.serveDuringTests(config);

test.afterEach(() => {
  config.demoCodesFromFake = false;
  config.demoUser = 'alice';
});

// sent lists the phone's requests as "METHOD /path".
function sent(phone) {
  return phone.requests.map((r) => r.method + ' ' + r.path);
}

// What DevTools' buttons give: WeChat's data, which the fake never made.
const devtoolsUserInfo = { type: 'getuserinfo', detail: { errMsg: 'getUserInfo:ok', rawData: '{"nickName":"微信用户"}', signature: 'devtools', encryptedData: 'ZGV2dG9vbHM=', iv: 'ZGV2dG9vbHMgaXYgMTY=' } };
const devtoolsPhone = { type: 'getphonenumber', detail: { errMsg: 'getPhoneNumber:ok', code: 'a-devtools-code-only-wechat-knows' } };

test('demo mode in the development version: the code comes from the fake, and the login works', async () => {
  config.demoCodesFromFake = true;
  config.demoUser = 'demo-dora';
  const phone = createPhone(srv.url, 'someone-else');
  const token = await launch(phone, server.sampleRoot).globalData.ready;
  assert.match(token, /^\S{20,}$/);
  assert.equal(phone.logins, 0, 'wx.login is not called');
  assert.deepEqual(sent(phone).slice(0, 2), ['POST /mock/wx.login', 'POST /login']);
  const user = await (await fetch(srv.url + '/user', { headers: { Authorization: 'Bearer ' + token } })).json();
  // The same user as a login of demo-dora's straight to the server.
  const { code } = await (await fetch(srv.url + '/mock/wx.login', { method: 'POST', body: JSON.stringify({ user: 'demo-dora' }) })).json();
  const dora = await (await fetch(srv.url + '/login', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ code }) })).json();
  assert.equal(user.data.id, dora.data.user_id, 'logged in as demoUser');
});

test('demo mode: the buttons\' data comes from the fake, and wxlogin verifies it', async () => {
  config.demoCodesFromFake = true;
  config.demoUser = 'demo-eve';
  const phone = createPhone(srv.url, 'demo-eve');
  await phone.agreedBefore();
  await launch(phone, server.sampleRoot).globalData.ready;
  const page = openPage(phone, server.sampleRoot, 'pages/profile/profile');
  await page.onShow();
  await page.onGetUserInfo(devtoolsUserInfo);
  assert.equal(page.data.message, '');
  assert.equal(page.data.user.nickname, 'demo-eve');
  await page.onGetPhoneNumber(devtoolsPhone);
  assert.equal(page.data.message, '');
  assert.match(page.data.user.phone_number, /^\d{11}$/);
});

test('demo mode is off in a trial or release build, whatever config.js says', async () => {
  config.demoCodesFromFake = true;
  for (const envVersion of ['trial', 'release']) {
    const phone = createPhone(srv.url, 'demo-frank');
    phone.envVersion = envVersion;
    await launch(phone, server.sampleRoot).globalData.ready;
    assert.equal(phone.logins, 1, envVersion + ': wx.login is called');
    assert.ok(!sent(phone).includes('POST /mock/wx.login'), envVersion + ': the fake is not asked');
  }
});

test('demo mode off (the default): wx.login, as in production', async () => {
  const file = require('node:fs').readFileSync(require.resolve('../config'), 'utf8');
  assert.match(file, /^\s*demoCodesFromFake: false,$/m, 'config.js ships with demo mode off');
  const phone = createPhone(srv.url, 'demo-grace');
  await launch(phone, server.sampleRoot).globalData.ready;
  assert.equal(phone.logins, 1);
  assert.ok(!sent(phone).includes('POST /mock/wx.login'));
});
