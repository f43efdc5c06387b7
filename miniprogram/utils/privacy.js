// The privacy agreement (用户隐私保护指引) on the phone. Since 2023-10-17 an
// interface that handles personal data (the phone buttons, chooseAvatar,
// location, WeRun, …) waits, the first time, until the user agrees to the
// app's privacy guide: WeChat fires wx.onNeedPrivacyAuthorization, the app
// shows its own popup, and the pending interface goes on when the app calls
// resolve({event: 'agree', buttonId}) after a tap on
// <button open-type="agreePrivacyAuthorization">, or fails with
// "privacy permission is not authorized" after resolve({event: 'disagree'}).
// The user may refuse and go on using everything else: the app must not
// close or nag (WECHAT.md §10).

// AGREE_BUTTON is the id of the popup's agree button, which WeChat checks
// was tapped before it accepts resolve({event: 'agree'}).
const AGREE_BUTTON = 'agree-btn';

// ERRNO_NOT_AUTHORIZED is the errno of an interface the user has not agreed to.
const ERRNO_NOT_AUTHORIZED = 104;

// pending holds the resolve of every interface waiting for the user's
// answer; page is the page showing the popup.
let pending = [];
let page = null;
let contractName = '《隐私保护指引》';

// install listens for WeChat's request to show the popup. Without a
// listener WeChat shows a popup of its own; the sample shows its own so the
// user sees it in the page's words.
function install() {
  pending = [];
  page = null;
  if (!wx.onNeedPrivacyAuthorization) return; // base library older than 2.32.3: nothing is gated
  wx.onNeedPrivacyAuthorization((resolve, eventInfo) => {
    pending.push(resolve);
    show(eventInfo && eventInfo.referrer);
  });
  if (wx.getPrivacySetting) {
    wx.getPrivacySetting({
      success: (res) => {
        contractName = res.privacyContractName || contractName;
      },
    });
  }
}

// attach makes p the page that shows the popup: the page on screen. A
// request that came while no page was attached shows now.
function attach(p) {
  page = p;
  if (pending.length) show('');
}

// show puts the popup on the attached page and tells WeChat it is shown.
function show(referrer) {
  if (!page) return;
  page.setData({ privacy: { show: true, contractName, referrer: referrer || '' } });
  for (const resolve of pending) resolve({ event: 'exposureAuthorization' });
}

// answer resolves every pending interface and hides the popup.
function answer(how) {
  const waiting = pending;
  pending = [];
  if (page) page.setData({ privacy: { show: false, contractName, referrer: '' } });
  for (const resolve of waiting) resolve(how);
}

// refused reports whether a wx result or event detail is the failure of a
// privacy interface the user did not agree to. WeChat's staff point to the
// errMsg; the errno is 104.
function refused(result) {
  if (!result) return false;
  return result.errno === ERRNO_NOT_AUTHORIZED || /privacy permission is not authorized/.test(result.errMsg || '');
}

// pageMethods are the popup's handlers, mixed into each page that shows it.
const pageMethods = {
  // bindagreeprivacyauthorization of the agree button: WeChat has recorded
  // the agreement; the interfaces waiting for it go on.
  onAgreePrivacy() {
    answer({ buttonId: AGREE_BUTTON, event: 'agree' });
  },
  onDisagreePrivacy() {
    answer({ event: 'disagree' });
  },
  onOpenPrivacyContract() {
    wx.openPrivacyContract({});
  },
};

// initialData is the popup's part of a page's data.
const initialData = { show: false, contractName: '', referrer: '' };

module.exports = { AGREE_BUTTON, install, attach, refused, pageMethods, initialData };
