// Scopes on the phone. WeChat keeps the user's decisions: wx.getSetting reads
// them, wx.authorize asks (once), and after a refusal only the settings page
// (wx.openSetting) can turn a scope back on. wxlogin's GET /scopes lists
// which scopes exist and how each is obtained. In front of every scope is
// the privacy agreement (utils/privacy.js): wx.authorize itself is a privacy
// interface, so a user who refused the privacy guide sees no scope dialog.
const privacy = require('./privacy');

// promisify turns a wx API taking success/fail callbacks into a promise.
function promisify(api) {
  return (options = {}) =>
    new Promise((resolve, reject) => api({ ...options, success: resolve, fail: reject }));
}

const getSetting = promisify((o) => wx.getSetting(o));
const authorize = promisify((o) => wx.authorize(o));
const openSetting = promisify((o) => wx.openSetting(o));
const showModal = promisify((o) => wx.showModal(o));

// ScopeRefused is a scope the user will not grant now.
class ScopeRefused extends Error {
  constructor(scope, errMsg) {
    super(scope + ' 未授权：' + errMsg);
    this.name = 'ScopeRefused';
    this.scope = scope;
  }
}

// authSetting resolves to the decisions so far: scope → true or false, and
// no key for a scope never asked for.
async function authSetting() {
  return (await getSetting()).authSetting;
}

// ensureScope resolves once scope is granted, asking as WeChat allows:
//   - granted before: nothing to ask;
//   - never asked: wx.authorize shows WeChat's dialog;
//   - refused before: wx.authorize would fail at once with no dialog, so the
//     user is asked whether to open the settings page, and wx.openSetting is
//     called from that modal's tap, as it must be (base library 2.3.0+).
// It rejects with ScopeRefused if the user says no.
async function ensureScope(scope, why) {
  const setting = await authSetting();
  if (setting[scope] === true) return;
  if (setting[scope] === undefined) {
    try {
      await authorize({ scope });
      return;
    } catch (err) {
      if (privacy.refused(err)) throw new ScopeRefused(scope, '未同意隐私保护指引，未弹出授权窗口');
      throw new ScopeRefused(scope, err.errMsg);
    }
  }
  const modal = await showModal({
    title: '需要授权',
    content: why + '，请在设置中打开。',
    confirmText: '去设置',
  });
  if (!modal.confirm) throw new ScopeRefused(scope, 'the user kept it off');
  const after = await openSetting();
  if (after.authSetting[scope] !== true) throw new ScopeRefused(scope, 'still off in settings');
}

module.exports = { ScopeRefused, authSetting, ensureScope, authorize, openSetting, promisify };
