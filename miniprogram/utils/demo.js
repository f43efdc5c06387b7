// Demo mode: the sample in WeChat DevTools against `go run .`, which runs
// wxlogin on its built-in fake WeChat (mock mode) with no AppSecret.
// DevTools' wx.login gives codes that only WeChat can exchange, and its
// buttons give data made with WeChat's session_key, so in demo mode the
// sample asks the server's fake instead, as the user config.demoUser: POST
// /mock/wx.login for the code, /mock/wx.getUserInfo and
// /mock/wx.getPhoneNumber for what the buttons give. It is on only when
// config.demoCodesFromFake is, and only in the development version
// (envVersion "develop": DevTools and its previews); a trial or release
// build always uses WeChat, whatever config.js says.
const config = require('../config');

// on reports whether demo mode applies.
function on() {
  if (!config.demoCodesFromFake) return false;
  const info = typeof wx.getAccountInfoSync === 'function' ? wx.getAccountInfoSync() : null;
  return Boolean(info && info.miniProgram && info.miniProgram.envVersion === 'develop');
}

// fake calls the server's fake WeChat client API (a /mock/wx.* endpoint)
// for config.demoUser, and resolves to its reply.
function fake(api) {
  return new Promise((resolve, reject) => {
    wx.request({
      url: config.baseURL + '/mock/' + api,
      method: 'POST',
      data: { user: config.demoUser },
      header: { 'Content-Type': 'application/json' },
      success(res) {
        if (res.statusCode === 404) {
          reject(new Error('演示模式需要 mock 模式的服务器（go run .）：没有 /mock/' + api));
          return;
        }
        resolve(res.data);
      },
      fail(err) {
        reject(new Error('演示模式：' + err.errMsg));
      },
    });
  });
}

// code resolves to a login code from the fake, in place of wx.login's.
async function code() {
  const reply = await fake('wx.login');
  if (!reply || !reply.code) throw new Error('演示模式：/mock/wx.login 没有给出 code');
  return reply.code;
}

// buttonDetail resolves to what the fake gives for a tap on the button of
// api ("wx.getUserInfo", "wx.getPhoneNumber"), in place of DevTools'
// e.detail. The user agreed to the privacy guide in DevTools to get here,
// so the fake is told of the agreement first.
async function buttonDetail(api) {
  await fake('wx.agreePrivacyAuthorization');
  return fake(api);
}

module.exports = { on, code, buttonDetail };
