// The profile page: who wxlogin says the user is, and the ways a mini
// program fills a profile: avatar/nickname filling (today's way), the legacy
// getUserInfo button, and the two phone-number buttons. All of them are
// privacy interfaces: the page shows the privacy popup when WeChat asks.
// It also lets the user delete their account.
const { request } = require('../../utils/request');
const auth = require('../../utils/auth');
const privacy = require('../../utils/privacy');
const demo = require('../../utils/demo');
const { uploadAvatar } = require('../../utils/upload');
const { promisify } = require('../../utils/scopes');

// STATUS_DATA_CHECK is wxlogin's answer to data it cannot verify: most
// often made with a session_key wxlogin no longer accepts, older than the
// one before the newest wx.login, or that one past its two minutes.
const STATUS_DATA_CHECK = 5;

// ERRNO_NO_PHONE_QUOTA is the phone buttons' errno when the app's paid phone
// verifications are used up: WeChat charges each successful tap.
const ERRNO_NO_PHONE_QUOTA = 1400001;

const showModal = promisify((o) => wx.showModal(o));

Page(Object.assign({
  data: {
    user: null,
    message: '',
    privacy: privacy.initialData,
  },

  onShow() {
    privacy.attach(this);
    return this.load();
  },

  // load shows GET /user.
  async load() {
    await this.run(async () => {
      this.setData({ user: await request('/user') });
    });
  },

  // run performs one action and shows its failure on the page instead of
  // leaving a rejected promise behind.
  async run(action) {
    this.setData({ message: '' });
    try {
      await action();
    } catch (err) {
      this.setData({ message: err.message });
    }
  },

  // onChooseAvatar: <button open-type="chooseAvatar" bind:chooseavatar>.
  onChooseAvatar(e) {
    return this.run(async () => {
      if (privacy.refused(e.detail)) throw new Error('未同意隐私保护指引，无法选择头像');
      const url = await uploadAvatar(e.detail.avatarUrl);
      this.setData({ user: await request('/user', { method: 'PATCH', data: { avatar_url: url } }) });
    });
  },

  // onNicknameSubmit: a form around <input type="nickname" name="nickname">.
  // WeChat checks a nickname after the input loses focus and may clear it,
  // so it is read from the form's submit, not from the input's events.
  // wxlogin checks it again (status 9 when WeChat finds it risky).
  onNicknameSubmit(e) {
    return this.run(async () => {
      const nickname = e.detail.value.nickname.trim();
      if (!nickname) throw new Error('请填写昵称');
      this.setData({ user: await request('/user', { method: 'PATCH', data: { nickname } }) });
    });
  },

  // onGetUserInfo: the legacy <button open-type="getUserInfo">. e.detail is
  // signed and encrypted with the session_key, which only wxlogin holds;
  // the page sends it on unchanged. Since 2021 WeChat fills it with the
  // placeholder 微信用户, which wxlogin never lets overwrite a real profile.
  onGetUserInfo(e) {
    return this.run(async () => {
      if (privacy.refused(e.detail)) throw new Error('未同意隐私保护指引，无法获取用户信息');
      const detail = demo.on() ? await demo.buttonDetail('wx.getUserInfo') : e.detail;
      const { rawData, signature, encryptedData, iv } = detail;
      if (!encryptedData) throw new Error('未授权：' + detail.errMsg);
      try {
        this.setData({ user: await request('/user/userinfo', { method: 'POST', data: { rawData, signature, encryptedData, iv } }) });
      } catch (err) {
        // The data was made with a session_key wxlogin no longer accepts
        // (two wx.logins old, or the previous one past its two minutes).
        // Only a new tap can help.
        if (err.status === STATUS_DATA_CHECK) throw new Error('登录状态已更新，请再点一次');
        throw err;
      }
    });
  },

  // onGetPhoneNumber: <button open-type="getPhoneNumber">, and
  // onGetRealtimePhoneNumber: <button open-type="getRealtimePhoneNumber">,
  // which checks the number with the carrier on every tap. Both give a
  // one-time code that wxlogin redeems with WeChat. WeChat charges the app
  // for each tap that succeeds, so a failed redemption is not retried here:
  // wxlogin already tried once more where that was safe.
  onGetPhoneNumber(e) {
    return this.redeemPhone(e.detail);
  },
  onGetRealtimePhoneNumber(e) {
    return this.redeemPhone(e.detail);
  },

  redeemPhone(detail) {
    return this.run(async () => {
      if (privacy.refused(detail)) throw new Error('未同意隐私保护指引，无法获取手机号');
      if (demo.on()) detail = await demo.buttonDetail('wx.getPhoneNumber');
      if (detail.errno === ERRNO_NO_PHONE_QUOTA) throw new Error('手机号验证次数已用完，请稍后再试或手动填写');
      if (!detail.code) throw new Error('未授权手机号：' + detail.errMsg);
      const phone = await request('/user/phone', { method: 'POST', data: { code: detail.code } });
      this.setData({ user: Object.assign({}, this.data.user, phone) });
    });
  },

  onLogout() {
    return this.run(async () => {
      await auth.logout();
      this.setData({ user: null, message: '已退出；下次请求会重新登录' });
    });
  },

  // onDeleteAccount deletes the account after the user confirms: wxlogin
  // ends every login of the user and erases their data. Coming back later
  // makes a new account; a one-time benefit already claimed stays claimed.
  onDeleteAccount() {
    return this.run(async () => {
      const { confirm } = await showModal({
        title: '注销账号',
        content: '将删除你的资料和手机号，并退出所有设备上的登录。此操作无法撤销。',
        confirmText: '注销',
        confirmColor: '#fa5151',
      });
      if (!confirm) return;
      await request('/user', { method: 'DELETE' });
      auth.forget();
      this.setData({ user: null, message: '账号已注销' });
    });
  },
}, privacy.pageMethods));
