// Avatar upload. <button open-type="chooseAvatar"> gives a temporary path on
// the phone (http://tmp/… in DevTools), which no one else can load, so the
// image goes to your own storage and its URL to wxlogin. wxlogin refuses a
// temporary path with a hint saying so.
const config = require('../config');

// uploadAvatar uploads the file at tempPath and resolves to its lasting URL.
function uploadAvatar(tempPath) {
  return new Promise((resolve, reject) => {
    if (!config.avatarUploadURL) {
      reject(new Error('未配置 avatarUploadURL：头像须先上传到你的存储，再把地址交给 PATCH /user'));
      return;
    }
    wx.uploadFile({
      url: config.avatarUploadURL,
      filePath: tempPath,
      name: 'file',
      success(res) {
        // uploadFile, unlike request, hands over the body as a string.
        let url = '';
        try {
          url = JSON.parse(res.data).url;
        } catch (err) {
          // Handled below with the other bad replies.
        }
        if (res.statusCode !== 200 || typeof url !== 'string' || !url) {
          reject(new Error('头像上传失败（HTTP ' + res.statusCode + '）'));
          return;
        }
        resolve(url);
      },
      fail: (err) => reject(new Error('头像上传失败：' + err.errMsg)),
    });
  });
}

module.exports = { uploadAvatar };
