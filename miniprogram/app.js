// The sample's app: it logs in on launch and shares the result with pages.
const auth = require('./utils/auth');
const privacy = require('./utils/privacy');

App({
  globalData: {
    // ready settles once the launch login is done. Pages need not wait for
    // it: the request helper logs in by itself when there is no token.
    ready: null,
  },

  // onLaunch keeps a stored token while wx.checkSession says WeChat's session
  // is still valid, and logs in (wx.login → POST /login) otherwise.
  // It also listens for WeChat's privacy popup requests first, before any
  // page can call a privacy interface.
  onLaunch() {
    privacy.install();
    this.globalData.ready = auth.restoreOrLogin().catch((err) => {
      if (err.status === auth.STATUS_USER_BLOCKED) {
        console.warn('login on launch refused by WeChat\'s risk control; no retry until the next launch:', err.message);
      } else {
        console.warn('login on launch failed; the next request will try again:', err.message);
      }
      return '';
    });
  },
});
