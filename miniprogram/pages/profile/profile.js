// The profile page: who wxlogin says the user is, and the three ways a mini
// program fills a profile: avatar/nickname filling (today's way), the legacy
// getUserInfo button, and the phone-number button.
const { request } = require('../../utils/request');
const auth = require('../../utils/auth');
const { uploadAvatar } = require('../../utils/upload');

// STATUS_DATA_CHECK is wxlogin's answer to encrypted data it cannot verify,
// most often because a wx.login since the tap rotated the session_key.
const STATUS_DATA_CHECK = 5;

Page({
  data: {
    user: null,
    message: '',
  },

  onShow() {
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
      const url = await uploadAvatar(e.detail.avatarUrl);
      this.setData({ user: await request('/user', { method: 'PATCH', data: { avatar_url: url } }) });
    });
  },

  // onNicknameSubmit: a form around <input type="nickname" name="nickname">.
  // WeChat checks a nickname after the input loses focus and may clear it,
  // so it is read from the form's submit, not from the input's events.
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
      const { rawData, signature, encryptedData, iv } = e.detail;
      if (!encryptedData) throw new Error('未授权：' + e.detail.errMsg);
      try {
        this.setData({ user: await request('/user/userinfo', { method: 'POST', data: { rawData, signature, encryptedData, iv } }) });
      } catch (err) {
        // The data was made with the session_key of the moment of the tap; a
        // wx.login since then replaced it. Only a new tap can help.
        if (err.status === STATUS_DATA_CHECK) throw new Error('登录状态已更新，请再点一次');
        throw err;
      }
    });
  },

  // onGetPhoneNumber: <button open-type="getPhoneNumber">. Its one-time code
  // is redeemed by wxlogin with WeChat; the number comes back.
  onGetPhoneNumber(e) {
    return this.run(async () => {
      if (!e.detail.code) throw new Error('未授权手机号：' + e.detail.errMsg);
      const phone = await request('/user/phone', { method: 'POST', data: { code: e.detail.code } });
      this.setData({ user: Object.assign({}, this.data.user, phone) });
    });
  },

  onLogout() {
    return this.run(async () => {
      await auth.logout();
      this.setData({ user: null, message: '已退出；下次请求会重新登录' });
    });
  },
});
