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

// profileOf launches the sample as user `name` and opens the profile page.
async function profileOf(name) {
  const phone = createPhone(srv.url, name);
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

test('user info from before a wx.login: the page asks for another tap', async () => {
  const { phone, page } = await profileOf('heidi');
  const stale = await phone.tap.getUserInfo();
  await auth.login(); // a new wx.login gives a new session_key
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
  await page.onChooseAvatar(phone.tap.chooseAvatar());
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
  await page.onChooseAvatar(phone.tap.chooseAvatar());
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
