// Where the sample finds its server. In WeChat DevTools, a local wxlogin on
// plain HTTP needs "不校验合法域名、web-view（业务域名）、TLS 版本以及 HTTPS 证书"
// ticked under 详情 → 本地设置; on a phone, the server needs a domain with
// HTTPS listed among the mini program's request domains.
module.exports = {
  baseURL: 'http://127.0.0.1:8080',

  // wxlogin keeps no images. A chosen avatar is a temporary file on the
  // phone, so it is uploaded (wx.uploadFile, field "file") to your own
  // storage first, which must answer JSON {"url": "https://…"}; that URL is
  // what PATCH /user saves. Empty: the sample says so instead of uploading.
  avatarUploadURL: '',

  // Demo mode, for showing the sample in WeChat DevTools against `go run .`
  // (mock mode, no AppSecret): DevTools' wx.login codes are WeChat's, which
  // the built-in fake cannot know, so with this on the sample gets its
  // codes, and what the getUserInfo and phone buttons give, from the
  // server's fake, as demoUser (utils/demo.js). It works only in the
  // development version: a trial or release build ignores it and uses WeChat.
  demoCodesFromFake: false,
  demoUser: 'alice',
};
