// The privacy agreement in the sample, against the real wxlogin and its
// fake WeChat, which keeps whether each user agreed: the popup the sample
// shows when WeChat asks, agreeing and refusing, and the privacy layer in
// front of the scopes.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const server = require('./server');
const { createPhone, launch, openPage } = require('./wx-shim');
const config = require('../config');
const privacy = require('../utils/privacy');

const srv = server.serveDuringTests(config);

// open launches the sample as a user who never agreed, and opens a page.
async function open(name, route) {
  const phone = createPhone(srv.url, name);
  await launch(phone, server.sampleRoot).globalData.ready;
  const page = openPage(phone, server.sampleRoot, route);
  await page.onShow();
  return { phone, page };
}

test('the phone button before the agreement: the popup shows, agreeing lets the tap go on', async () => {
  const { phone, page } = await open('pat', 'pages/profile/profile');
  const tapping = phone.tap.getPhoneNumber();
  const request = await phone.waitForPrivacyRequest();
  assert.equal(request.referrer, 'button.getPhoneNumber');
  assert.equal(page.data.privacy.show, true);
  assert.match(page.data.privacy.contractName, /^《.+隐私保护指引》$/);
  assert.equal(request.exposed, true, 'the popup was reported to WeChat as shown');

  // The user reads the guide, then taps the agree button.
  page.onOpenPrivacyContract();
  assert.ok(phone.dialogs.some((d) => d.kind === 'privacyContract'));
  page.onAgreePrivacy(await phone.tap.agreePrivacyAuthorization(privacy.AGREE_BUTTON));
  assert.equal(page.data.privacy.show, false);

  await page.onGetPhoneNumber(await tapping);
  assert.equal(page.data.message, '');
  assert.match(page.data.user.phone_number, /^\d{11}$/);

  // Agreed once, agreed for good: the next tap shows no popup.
  await page.onGetRealtimePhoneNumber(await phone.tap.getRealtimePhoneNumber());
  assert.equal(phone.privacyRequests.length, 1);
  assert.equal(page.data.message, '');
});

test('refused: the tap fails with WeChat\'s error, nothing is sent, everything else works', async () => {
  const { phone, page } = await open('quinn', 'pages/profile/profile');
  const before = phone.requests.length;
  const tapping = phone.tap.getPhoneNumber();
  await phone.waitForPrivacyRequest();
  page.onDisagreePrivacy();
  const e = await tapping;
  assert.equal(e.detail.errMsg, 'getPhoneNumber:fail privacy permission is not authorized');
  assert.equal(e.detail.errno, 104);
  await page.onGetPhoneNumber(e);
  assert.equal(page.data.message, '未同意隐私保护指引，无法获取手机号');
  assert.equal(page.data.privacy.show, false);
  assert.equal(phone.requests.length, before, 'nothing went to wxlogin');

  // The app goes on: the profile still loads and a nickname still saves.
  await page.onNicknameSubmit({ detail: { value: { nickname: '奎因' } } });
  assert.equal(page.data.message, '');
  assert.equal(page.data.user.nickname, '奎因');

  // Asked again on the next privacy interface, as WeChat does until the user agrees.
  const again = phone.tap.chooseAvatar();
  await phone.waitForPrivacyRequest();
  page.onDisagreePrivacy();
  await page.onChooseAvatar(await again);
  assert.equal(page.data.message, '未同意隐私保护指引，无法选择头像');
});

test('resolve "agree" without a tap on the agree button does not count', async () => {
  const { phone, page } = await open('rita', 'pages/profile/profile');
  const tapping = phone.tap.getUserInfo();
  await phone.waitForPrivacyRequest();
  page.onAgreePrivacy(); // no tap: WeChat checks the button was tapped
  await page.onGetUserInfo(await tapping);
  assert.equal(page.data.message, '未同意隐私保护指引，无法获取用户信息');
});

test('the privacy layer is in front of the scopes: refused, no scope dialog shows', async () => {
  const { phone, page } = await open('sam', 'pages/authorize/authorize');
  const recording = page.onRecord();
  const request = await phone.waitForPrivacyRequest();
  assert.equal(request.referrer, 'authorize');
  page.onDisagreePrivacy();
  await recording;
  assert.match(page.data.message, /scope\.record 未授权：未同意隐私保护指引/);
  assert.deepEqual(page.data.authSetting, {}, 'the scope was never asked for');
  assert.equal(phone.dialogs.filter((d) => d.kind === 'authorize').length, 0);

  // Agreed: now the scope's own dialog asks.
  phone.user.authorize = () => true;
  const again = page.onRecord();
  await phone.waitForPrivacyRequest();
  page.onAgreePrivacy(await phone.tap.agreePrivacyAuthorization(privacy.AGREE_BUTTON));
  await again;
  assert.equal(page.data.recordReady, true);
  assert.deepEqual(phone.dialogs.map((d) => d.kind), ['authorize']);
});

test('without a listener, WeChat shows its own popup', async () => {
  const phone = createPhone(srv.url, 'tess');
  let asked = '';
  phone.user.privacy = (referrer) => {
    asked = referrer;
    return true;
  };
  // No launch: nothing installed the sample's listener.
  const e = await phone.tap.getPhoneNumber();
  assert.equal(asked, 'button.getPhoneNumber');
  assert.match(e.detail.code, /^[0-9a-f]{64}$/);
  const setting = await new Promise((resolve) => phone.wx.getPrivacySetting({ success: resolve }));
  assert.equal(setting.needAuthorization, false);
});
