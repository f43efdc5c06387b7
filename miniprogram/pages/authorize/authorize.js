// The authorization page: what the user has granted (wx.getSetting), asking
// in advance (wx.authorize) for the microphone and the location, what a
// refusal means (no dialog any more, only the settings page), and why
// scope.userInfo cannot be asked for this way. The privacy popup comes
// first, when WeChat asks for it.
const scopes = require('../../utils/scopes');
const privacy = require('../../utils/privacy');

const getLocation = scopes.promisify((o) => wx.getLocation(o));

Page(Object.assign({
  data: {
    authSetting: {},
    recordReady: false,
    location: null,
    message: '',
    privacy: privacy.initialData,
  },

  onShow() {
    privacy.attach(this);
    return this.refresh();
  },

  // refresh shows wx.getSetting's decisions, which change behind the page's
  // back when the user visits the settings page.
  async refresh() {
    this.setData({ authSetting: await scopes.authSetting() });
  },

  // use runs an action that needs a scope and shows the outcome.
  async use(action) {
    this.setData({ message: '' });
    try {
      await action();
    } catch (err) {
      this.setData({ message: err.message });
    }
    await this.refresh();
  },

  // onRecord asks for the microphone before a recording would start, so the
  // dialog comes when the user expects it rather than mid-recording.
  onRecord() {
    return this.use(async () => {
      await scopes.ensureScope('scope.record', '录音需要使用你的麦克风');
      this.setData({ recordReady: true });
    });
  },

  // onLocation asks for the precise location, then reads it.
  onLocation() {
    return this.use(async () => {
      await scopes.ensureScope('scope.userLocation', '显示附近的门店需要你的位置');
      const location = await getLocation({ type: 'gcj02' });
      this.setData({ location: { latitude: location.latitude, longitude: location.longitude } });
    });
  },

  // onAuthorizeUserInfo shows why scope.userInfo is not asked for with
  // wx.authorize: it shows no dialog for it, and the profile comes from a
  // tap (avatar/nickname filling, or the legacy getUserInfo button).
  onAuthorizeUserInfo() {
    return this.use(async () => {
      try {
        await scopes.authorize({ scope: 'scope.userInfo' });
        this.setData({ message: 'scope.userInfo 已授权（用户曾点过 getUserInfo 按钮）' });
      } catch (err) {
        throw new Error('wx.authorize 不能申请 scope.userInfo（' + err.errMsg + '）：请用头像昵称填写，或让用户点按钮');
      }
    });
  },

  // onOpenSetting: a tap may open the settings page directly.
  onOpenSetting() {
    return this.use(async () => {
      const res = await scopes.openSetting();
      this.setData({ authSetting: res.authSetting });
    });
  },
}, privacy.pageMethods));
