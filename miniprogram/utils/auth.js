// Login state on the phone: the token wxlogin issued, kept in storage. The
// session_key is never here; wxlogin keeps it.
const config = require('../config');
const demo = require('./demo');

const TOKEN_KEY = 'token';

// The status wxlogin answers when a token is missing, unknown or expired.
const STATUS_NOT_LOGGED_IN = 4;

// The status wxlogin answers when WeChat's risk control blocks the user's
// logins (errcode 40226). A new wx.login would be blocked too, so the app
// stops trying until it is launched again.
const STATUS_USER_BLOCKED = 8;

// loginInFlight is the login under way, shared by every caller meanwhile, so
// that many requests failing at once cause one wx.login and one POST /login.
let loginInFlight = null;

// blocked is the refusal of a risk-blocked login, kept until the next
// launch: every later login rejects with it at once.
let blocked = null;

// ApiError is a reply of wxlogin's other than status 0, or no reply at all.
class ApiError extends Error {
  constructor(status, msg, extra = {}) {
    super(msg);
    this.name = 'ApiError';
    this.status = status; // wxlogin's status, or -1 when there was no proper reply
    Object.assign(this, extra); // httpStatus, errcode
  }
}

// call sends one request to wxlogin and resolves to its envelope. wx.request
// calls success for every HTTP status, so the envelope's status is what tells
// a failure; fail means no answer at all.
function call(path, { method = 'GET', data, token } = {}) {
  return new Promise((resolve, reject) => {
    const header = { 'Content-Type': 'application/json' };
    if (token) header.Authorization = 'Bearer ' + token;
    wx.request({
      url: config.baseURL + path,
      method,
      data,
      header,
      success(res) {
        const env = res.data;
        if (env === null || typeof env !== 'object' || typeof env.status !== 'number') {
          reject(new ApiError(-1, '服务器响应异常（HTTP ' + res.statusCode + '）', { httpStatus: res.statusCode }));
          return;
        }
        resolve(Object.assign(env, { httpStatus: res.statusCode }));
      },
      fail(err) {
        reject(new ApiError(-1, '网络错误：' + err.errMsg));
      },
    });
  });
}

// wxLogin resolves to a fresh code from wx.login, or in demo mode
// (utils/demo.js) from the server's fake WeChat.
function wxLogin() {
  if (demo.on()) return demo.code().catch((err) => Promise.reject(new ApiError(-1, err.message)));
  return new Promise((resolve, reject) => {
    wx.login({
      success: (res) => resolve(res.code),
      fail: (err) => reject(new ApiError(-1, 'wx.login 失败：' + err.errMsg)),
    });
  });
}

// login runs wx.login → POST /login and stores the token. Callers that come
// while one is under way share it.
function login() {
  if (blocked) return Promise.reject(blocked);
  if (!loginInFlight) {
    loginInFlight = (async () => {
      const code = await wxLogin();
      const env = await call('/login', { method: 'POST', data: { code } });
      if (env.status !== 0) {
        const err = new ApiError(env.status, env.msg, { httpStatus: env.httpStatus, errcode: env.errcode });
        if (env.status === STATUS_USER_BLOCKED) blocked = err;
        throw err;
      }
      wx.setStorageSync(TOKEN_KEY, env.data.token);
      return env.data.token;
    })().finally(() => {
      loginInFlight = null;
    });
  }
  return loginInFlight;
}

// checkSession resolves to whether WeChat still holds the session_key of
// the last wx.login. If it does, the stored token's login is still good as
// far as WeChat is concerned, and a new login would only rotate the key.
function checkSession() {
  return new Promise((resolve) => {
    wx.checkSession({ success: () => resolve(true), fail: () => resolve(false) });
  });
}

// restoreOrLogin is what the app does on launch: keep the stored token if
// WeChat's session is still valid, log in otherwise. A launch is also when a
// blocked user is given one more try: WeChat's risk control may have let go.
async function restoreOrLogin() {
  blocked = null;
  const token = wx.getStorageSync(TOKEN_KEY);
  if (token && (await checkSession())) return token;
  return login();
}

// token resolves to the stored token, logging in first if there is none.
function token() {
  const stored = wx.getStorageSync(TOKEN_KEY);
  return stored ? Promise.resolve(stored) : login();
}

// relogin replaces a token wxlogin refused. If another request has already
// replaced it, the new one is used without logging in again.
function relogin(refused) {
  const stored = wx.getStorageSync(TOKEN_KEY);
  if (stored && stored !== refused) return Promise.resolve(stored);
  return login();
}

// logout ends the login on the server and forgets the token. The token is
// forgotten even if the server cannot be reached: the user asked to leave.
async function logout() {
  const stored = wx.getStorageSync(TOKEN_KEY);
  wx.removeStorageSync(TOKEN_KEY);
  if (stored) await call('/logout', { method: 'POST', token: stored });
}

// forget drops the stored token without telling the server, for when the
// server has already ended it (the account was deleted).
function forget() {
  wx.removeStorageSync(TOKEN_KEY);
}

module.exports = {
  ApiError, STATUS_NOT_LOGGED_IN, STATUS_USER_BLOCKED, call, login, restoreOrLogin, token, relogin, logout, forget,
};
