// The sample's profile page against the real wxlogin: GET /user, avatar and
// nickname filling, the legacy getUserInfo button and the phone button.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const server = require('./server');
const { createPhone, launch, openPage } = require('./wx-shim');
const config = require('../config');
const auth = require('../utils/auth');
const { request } = require('../utils/request');

const srv = server.serveDuringTests(config);
let storage; // a stand-in for the developer's own image storage
const uploads = [];

test.before(async () => {
  storage = http.createServer((req, res) => {
    let body = '';
    req.setEncoding('latin1');
    req.on('data', (chunk) => (body += chunk));
    req.on('end', () => {
      uploads.push({ type: req.headers['content-type'], body });
      res.setHeader('Content-Type', 'application/json');
      res.end(JSON.stringify({ url: 'https://img.example.com/avatars/' + uploads.length + '.png' }));
    });
  });
  await new Promise((resolve) => storage.listen(0, '127.0.0.1', resolve));
});
test.after(() => storage.close());
test.beforeEach(() => {
  config.avatarUploadURL = '';
});

// profileOf launches the sample as user `name`, who agreed to the privacy
// guide in an earlier session (privacy.test.js tests the popup), and opens
// the profile page.
async function profileOf(name) {
  const phone = createPhone(srv.url, name);
  await phone.agreedBefore();
  await launch(phone, server.sampleRoot).globalData.ready;
  const page = openPage(phone, server.sampleRoot, 'pages/profile/profile');
  await page.onShow();
  return { phone, page };
}

// sent lists the phone's requests to wxlogin as "METHOD /path".
function sent(phone) {
  return phone.requests.map((r) => r.method + ' ' + r.path);
}

test('the page shows GET /user', async () => {
  const { page } = await profileOf('alice');
  assert.equal(page.data.message, '');
  assert.equal(typeof page.data.user.id, 'number');
  assert.match(page.data.user.openid, /^o/);
});

test('the getUserInfo button: verified and saved by wxlogin', async () => {
  const { phone, page } = await profileOf('frank');
  await page.onGetUserInfo(await phone.tap.getUserInfo());
  assert.equal(page.data.message, '');
  assert.equal(page.data.user.nickname, 'frank');
  assert.match(page.data.user.avatar_url, /^https:\/\//);
  assert.deepEqual(sent(phone).slice(-1), ['POST /user/userinfo']);

  // Since 2021 the button gives a placeholder, which never overwrites.
  await page.onGetUserInfo(await phone.tap.getUserInfo({ anonymous: true }));
  assert.equal(page.data.user.nickname, 'frank');
});

test('the getUserInfo button, refused: nothing is sent', async () => {
  const { phone, page } = await profileOf('grace');
  const before = phone.requests.length;
  await page.onGetUserInfo(await phone.tap.getUserInfo({ allow: false }));
  assert.match(page.data.message, /^未授权：getUserInfo:fail/);
  assert.equal(phone.requests.length, before);
});

test('user info from before a wx.login still verifies; from before two, the page asks for another tap', async () => {
  const { phone, page } = await profileOf('heidi');
  const justBefore = await phone.tap.getUserInfo();
  await auth.login(); // a new wx.login gives a new session_key; wxlogin keeps the one before for two minutes
  await page.onGetUserInfo(justBefore);
  assert.equal(page.data.message, '');
  assert.equal(page.data.user.nickname, 'heidi');

  const stale = await phone.tap.getUserInfo();
  await auth.login();
  await auth.login(); // two logins later, its key is gone
  await page.onGetUserInfo(stale);
  assert.equal(page.data.message, '登录状态已更新，请再点一次');

  await page.onGetUserInfo(await phone.tap.getUserInfo());
  assert.equal(page.data.message, '');
  assert.equal(page.data.user.nickname, 'heidi');
});

test('the nickname input: saved with PATCH /user from the form', async () => {
  const { phone, page } = await profileOf('ivan');
  await page.onNicknameSubmit({ detail: { value: { nickname: '  伊万  ' } } });
  assert.equal(page.data.message, '');
  assert.equal(page.data.user.nickname, '伊万');
  assert.deepEqual(sent(phone).slice(-1), ['PATCH /user']);

  await page.onNicknameSubmit({ detail: { value: { nickname: '   ' } } });
  assert.equal(page.data.message, '请填写昵称');
  assert.deepEqual(sent(phone).slice(-1), ['PATCH /user'], 'an empty nickname is not sent');
});

test('chooseAvatar: uploaded to the storage, then its URL saved with PATCH /user', async () => {
  const { phone, page } = await profileOf('judy');
  config.avatarUploadURL = 'http://127.0.0.1:' + storage.address().port + '/upload';
  await page.onChooseAvatar(await phone.tap.chooseAvatar());
  assert.equal(page.data.message, '');
  const upload = uploads.at(-1);
  assert.match(upload.type, /^multipart\/form-data; boundary=/);
  assert.match(upload.body, /name="file"; filename="[0-9a-f]+\.png"/);
  assert.match(upload.body, /fake avatar of judy/);
  assert.equal(page.data.user.avatar_url, 'https://img.example.com/avatars/' + uploads.length + '.png');
  assert.deepEqual(sent(phone).slice(-1), ['PATCH /user']);
});

test('chooseAvatar with no storage configured: the page says so, nothing is sent', async () => {
  const { phone, page } = await profileOf('judy');
  const before = phone.requests.length;
  await page.onChooseAvatar(await phone.tap.chooseAvatar());
  assert.match(page.data.message, /avatarUploadURL/);
  assert.equal(phone.requests.length, before);
});

test('the phone button: the code is redeemed by wxlogin', async () => {
  const { phone, page } = await profileOf('ken');
  await page.onGetPhoneNumber(await phone.tap.getPhoneNumber());
  assert.equal(page.data.message, '');
  assert.match(page.data.user.phone_number, /^\d{11}$/);
  assert.equal(typeof page.data.user.id, 'number', 'the rest of the user stays on the page');

  await page.onShow();
  assert.equal(page.data.user.phone_number.length, 11, 'GET /user has it too');
});

test('the phone button, refused: nothing is sent', async () => {
  const { phone, page } = await profileOf('ken');
  const before = phone.requests.length;
  await page.onGetPhoneNumber(await phone.tap.getPhoneNumber({ allow: false }));
  assert.match(page.data.message, /^未授权手机号/);
  assert.equal(phone.requests.length, before);
});

test('a nickname WeChat\'s content check finds risky: status 9, the page says so, nothing saved', async () => {
  const { page } = await profileOf('ivy');
  await page.onNicknameSubmit({ detail: { value: { nickname: '赌博小王' } } });
  assert.equal(page.data.message, '昵称含有不适宜的内容，请修改后重试');
  await page.onShow();
  assert.equal(page.data.user.nickname, '');
});

test('the real-time phone button: its code is redeemed by the same route', async () => {
  const { phone, page } = await profileOf('kim');
  await page.onGetRealtimePhoneNumber(await phone.tap.getRealtimePhoneNumber());
  assert.equal(page.data.message, '');
  assert.match(page.data.user.phone_number, /^\d{11}$/);
  assert.deepEqual(sent(phone).slice(-1), ['POST /user/phone']);
});

test('no phone quota left: errno 1400001, the page says so, nothing is sent', async () => {
  const { phone, page } = await profileOf('lou');
  const setQuota = (remaining) => fetch(srv.url + '/mock/phone-quota', { method: 'POST', body: JSON.stringify({ remaining }) });
  await setQuota(0);
  try {
    const before = phone.requests.length;
    for (const tap of [phone.tap.getPhoneNumber, phone.tap.getRealtimePhoneNumber]) {
      const e = await tap();
      assert.equal(e.detail.errno, 1400001);
      await page.onGetPhoneNumber(e);
      assert.equal(page.data.message, '手机号验证次数已用完，请稍后再试或手动填写');
    }
    assert.equal(phone.requests.length, before);
  } finally {
    await setQuota(-1);
  }
});

// claim is POST /claims/welcome, the once-per-person gift, as the phone's user.
async function claim() {
  try {
    await request('/claims/welcome', { method: 'POST' });
    return 0;
  } catch (err) {
    return err.status;
  }
}

test('delete account: confirmed, every login ends and the data goes; a new login is a new user, the gift stays claimed', async () => {
  const { phone, page } = await profileOf('mona');
  await page.onGetPhoneNumber(await phone.tap.getPhoneNumber());
  const before = page.data.user;
  assert.equal(await claim(), 0);
  const token = phone.wx.getStorageSync('token');

  phone.user.modal = (options) => {
    assert.equal(options.title, '注销账号');
    return true;
  };
  await page.onDeleteAccount();
  assert.equal(page.data.message, '账号已注销');
  assert.equal(page.data.user, null);
  assert.equal(phone.wx.getStorageSync('token'), '');
  assert.deepEqual(sent(phone).slice(-1), ['DELETE /user']);
  const old = await fetch(srv.url + '/user', { headers: { Authorization: 'Bearer ' + token } });
  assert.equal((await old.json()).status, 4, 'the old token is dead');

  await page.onShow(); // logs in again: a new user, with none of the old data
  assert.notEqual(page.data.user.id, before.id);
  assert.equal(page.data.user.openid, before.openid, 'the same WeChat user');
  assert.equal(page.data.user.phone_number || '', '');
  assert.equal(await claim(), 6, 'the gift was claimed by this person before the deletion');
});

test('delete account, cancelled: nothing is sent', async () => {
  const { phone, page } = await profileOf('nora');
  const before = phone.requests.length;
  phone.user.modal = () => false;
  await page.onDeleteAccount();
  assert.equal(phone.requests.length, before);
  assert.equal(typeof page.data.user.id, 'number');
});

test('logout from the page, then showing it again logs in again', async () => {
  const { phone, page } = await profileOf('leo');
  const id = page.data.user.id;
  await page.onLogout();
  assert.equal(page.data.user, null);
  assert.equal(phone.wx.getStorageSync('token'), '');

  await page.onShow();
  assert.equal(page.data.user.id, id);
  assert.equal(phone.logins, 2);
});
