// The sample's app: it logs in on launch and shares the result with pages.
const auth = require('./utils/auth');

App({
  globalData: {
    // ready settles once the launch login is done. Pages need not wait for
    // it: the request helper logs in by itself when there is no token.
    ready: null,
  },

  // onLaunch keeps a stored token while wx.checkSession says WeChat's session
  // is still valid, and logs in (wx.login → POST /login) otherwise.
  onLaunch() {
    this.globalData.ready = auth.restoreOrLogin().catch((err) => {
      console.warn('login on launch failed; the next request will try again:', err.message);
      return '';
    });
  },
});
