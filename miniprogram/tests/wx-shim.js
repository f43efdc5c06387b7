// A `wx` for Node that behaves like the real API where the sample depends
// on it, with WeChat's client side played by wxlogin's fake (/mock/wx.*):
//   - wx.request calls success for every HTTP status with {data, statusCode,
//     header}, and fail only when no answer came; data is parsed as JSON
//     when it can be, as dataType 'json' does;
//   - storage is a per-phone map; getStorageSync answers '' for a missing key;
//   - wx.login gets a code from POST /mock/wx.login, and wx.checkSession
//     succeeds until the test expires the session or the phone never logged in;
//   - scopes follow WeChat's rules (WECHAT.md §6): absent from authSetting
//     until asked; wx.authorize shows a dialog only the first time; a refused
//     scope fails at once until the settings page turns it on; wx.authorize of
//     scope.userInfo fails with no dialog unless a getUserInfo button tap
//     granted it. Dialogs, modals and the settings page are answered by the
//     test, through the `user` callbacks, and recorded in `dialogs`;
//   - the privacy agreement follows WeChat's rules (WECHAT.md §10), with the
//     fake keeping whether the user agreed: a privacy interface (the
//     buttons, wx.authorize, wx.getLocation) before the agreement fires the
//     listener of wx.onNeedPrivacyAuthorization and waits for its resolve;
//     'agree' goes on only if the agree button was tapped, 'disagree' fails
//     it with "privacy permission is not authorized" (errno 104). With no
//     listener, WeChat's own popup asks the test's user (`user.privacy`);
//   - global App, Page and getApp, with setData.
// Button taps, which the real WeChat turns into events, are made by `tap`.
'use strict';

const path = require('node:path');
const crypto = require('node:crypto');

// createPhone installs a fresh wx, App, Page and getApp as globals, for the
// user named `name` against the wxlogin at serverURL, and returns the test's
// handle on them.
function createPhone(serverURL, name = 'alice') {
  const phone = {
    name,
    storage: new Map(),
    authSetting: {},
    sessionValid: false,
    requests: [], // {method, path, authorization} of every wx.request
    logins: 0, // wx.login calls
    envVersion: 'develop', // what wx.getAccountInfoSync says: DevTools runs the development version
    dialogs: [], // every dialog, modal and settings page shown
    tmpFiles: new Map(), // temporary path → bytes, as chooseAvatar leaves them
    app: null,
    pageConfig: null,
    // The user's answers. Each throws unless the test expects that dialog.
    user: {
      authorize: (scope) => { throw new Error('unexpected authorization dialog for ' + scope); },
      modal: (options) => { throw new Error('unexpected modal: ' + options.content); },
      settings: (authSetting) => { throw new Error('unexpected settings page: ' + JSON.stringify(authSetting)); },
      privacy: (referrer) => { throw new Error("unexpected WeChat privacy popup for " + referrer); },
    },
    privacyListener: null, // wx.onNeedPrivacyAuthorization's
    privacyRequests: [], // {referrer, exposed, answer} of each time the listener was fired
    agreeTaps: new Set(), // ids of the agree buttons tapped
    privacyWaiters: [], // resolves of waitForPrivacyRequest
  };

  // callback delivers a result the way wx APIs do: success or fail, then
  // complete, a tick later.
  function deliver(options, ok, result) {
    setImmediate(() => {
      const cb = ok ? options.success : options.fail;
      if (cb) cb(result);
      if (options.complete) options.complete(result);
    });
  }

  async function fakeWeChat(api, body) {
    const resp = await fetch(serverURL + '/mock/' + api, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(Object.assign({ user: phone.name }, body)),
    });
    const reply = await resp.json();
    if (!resp.ok) throw new Error(api + ': ' + reply.errMsg);
    return reply;
  }

  // privacyGate lets a privacy interface through as WeChat does: at once if
  // the user agreed before; otherwise through the app's listener, waiting
  // for its resolve, or WeChat's own popup when the app has no listener. It
  // resolves to whether the interface may go on.
  async function privacyGate(referrer) {
    const setting = await fakeWeChat('wx.getPrivacySetting', {});
    if (!setting.needAuthorization) return true;
    if (!phone.privacyListener) {
      phone.dialogs.push({ kind: 'privacy', referrer });
      const agreed = Boolean(phone.user.privacy(referrer));
      if (agreed) await fakeWeChat('wx.agreePrivacyAuthorization', {});
      return agreed;
    }
    return new Promise((resolve) => {
      const request = { referrer, exposed: false, answer: '' };
      phone.privacyRequests.push(request);
      phone.privacyListener((how = {}) => {
        if (how.event === 'exposureAuthorization') {
          request.exposed = true;
        } else if (!request.answer && (how.event === 'agree' || how.event === 'disagree')) {
          // The base library checks the agree button was really tapped.
          request.answer = how.event === 'agree' && phone.agreeTaps.has(how.buttonId) ? 'agree' : 'disagree';
          resolve(request.answer === 'agree');
        }
      }, { referrer });
      for (const waiter of phone.privacyWaiters.splice(0)) waiter(request);
    });
  }

  // privacyRefusal is what a privacy interface the user did not agree to
  // fails with.
  function privacyRefusal(api) {
    return { errMsg: api + ':fail privacy permission is not authorized', errno: 104 };
  }

  // guarded runs a privacy interface: fail as WeChat does when the user does
  // not agree, or go on with run.
  function guarded(api, options, run) {
    privacyGate(api).then((agreed) => (agreed ? run() : deliver(options, false, privacyRefusal(api))));
  }

  // authorizeScope is wx.authorize once the privacy gate let it through.
  function authorizeScope(options) {
    const scope = options.scope;
    const granted = phone.authSetting[scope];
    if (granted === true) {
      deliver(options, true, { errMsg: 'authorize:ok' });
    } else if (scope === 'scope.userInfo') {
      // No dialog: only a tap on <button open-type="getUserInfo"> may ask.
      deliver(options, false, { errMsg: 'authorize:fail scope.userInfo needs a button tap' });
    } else if (granted === false) {
      deliver(options, false, { errMsg: 'authorize:fail auth deny' });
    } else {
      const allowed = dialog(scope);
      deliver(options, allowed, { errMsg: allowed ? 'authorize:ok' : 'authorize:fail auth deny' });
    }
  }

  // dialog asks the test's user about scope and records that a dialog showed.
  function dialog(scope) {
    phone.dialogs.push({ kind: 'authorize', scope });
    const allowed = Boolean(phone.user.authorize(scope));
    phone.authSetting[scope] = allowed;
    return allowed;
  }

  // withScope runs a guarded API as WeChat does: granted goes on, refused
  // fails at once, never asked shows the dialog first.
  function withScope(api, scope, options, result) {
    let granted = phone.authSetting[scope];
    if (granted === undefined) granted = dialog(scope);
    deliver(options, granted, granted ? Object.assign({ errMsg: api + ':ok' }, result) : { errMsg: api + ':fail auth deny' });
  }

  const wx = {
    request(options) {
      const method = (options.method || 'GET').toUpperCase();
      const header = Object.assign({}, options.header);
      let url = options.url;
      let body;
      if (options.data !== undefined) {
        if (method === 'GET') {
          url += (url.includes('?') ? '&' : '?') + new URLSearchParams(options.data).toString();
        } else if (typeof options.data === 'string') {
          body = options.data;
        } else {
          const type = Object.keys(header).find((k) => k.toLowerCase() === 'content-type');
          const form = type && header[type].startsWith('application/x-www-form-urlencoded');
          body = form ? new URLSearchParams(options.data).toString() : JSON.stringify(options.data);
          if (!type) header['Content-Type'] = 'application/json';
        }
      }
      const auth = Object.keys(header).find((k) => k.toLowerCase() === 'authorization');
      phone.requests.push({ method, path: new URL(url).pathname, authorization: auth ? header[auth] : '' });
      fetch(url, { method, headers: header, body }).then(
        async (resp) => {
          const text = await resp.text();
          let data = text;
          if (options.dataType !== 'text') {
            try {
              data = JSON.parse(text);
            } catch (err) {
              // WeChat, too, hands over the text when it is not JSON.
            }
          }
          deliver(options, true, { data, statusCode: resp.status, header: Object.fromEntries(resp.headers), errMsg: 'request:ok' });
        },
        (err) => deliver(options, false, { errMsg: 'request:fail ' + err.message }),
      );
      return { abort() {} };
    },

    uploadFile(options) {
      const bytes = phone.tmpFiles.get(options.filePath);
      if (!bytes) {
        deliver(options, false, { errMsg: 'uploadFile:fail file not found' });
        return { abort() {} };
      }
      const form = new FormData();
      form.append(options.name, new Blob([bytes], { type: 'image/png' }), path.basename(options.filePath));
      for (const [k, v] of Object.entries(options.formData || {})) form.append(k, v);
      fetch(options.url, { method: 'POST', headers: options.header, body: form }).then(
        // uploadFile's data is always the body's text.
        async (resp) => deliver(options, true, { data: await resp.text(), statusCode: resp.status, errMsg: 'uploadFile:ok' }),
        (err) => deliver(options, false, { errMsg: 'uploadFile:fail ' + err.message }),
      );
      return { abort() {} };
    },

    setStorageSync(key, value) {
      phone.storage.set(key, JSON.stringify(value));
    },
    getStorageSync(key) {
      return phone.storage.has(key) ? JSON.parse(phone.storage.get(key)) : '';
    },
    removeStorageSync(key) {
      phone.storage.delete(key);
    },

    getAccountInfoSync() {
      return { miniProgram: { appId: 'wxfa4e000000000000', envVersion: phone.envVersion, version: '' } };
    },

    login(options = {}) {
      phone.logins++;
      fakeWeChat('wx.login', {}).then(
        (reply) => {
          phone.sessionValid = true;
          deliver(options, true, { code: reply.code, errMsg: 'login:ok' });
        },
        (err) => deliver(options, false, { errMsg: 'login:fail ' + err.message }),
      );
    },

    checkSession(options = {}) {
      deliver(options, phone.sessionValid, { errMsg: phone.sessionValid ? 'checkSession:ok' : 'checkSession:fail session time out' });
    },

    getSetting(options = {}) {
      deliver(options, true, { authSetting: Object.assign({}, phone.authSetting), errMsg: 'getSetting:ok' });
    },

    authorize(options) {
      guarded('authorize', options, () => authorizeScope(options));
    },

    openSetting(options = {}) {
      phone.dialogs.push({ kind: 'settings' });
      // The settings page lists only scopes asked for; the user may flip them.
      const changed = phone.user.settings(Object.assign({}, phone.authSetting)) || {};
      for (const scope of Object.keys(phone.authSetting)) {
        if (typeof changed[scope] === 'boolean') phone.authSetting[scope] = changed[scope];
      }
      deliver(options, true, { authSetting: Object.assign({}, phone.authSetting), errMsg: 'openSetting:ok' });
    },

    getLocation(options = {}) {
      guarded('getLocation', options, () =>
        withScope('getLocation', 'scope.userLocation', options, { latitude: 39.9087, longitude: 116.3975, accuracy: 30 }));
    },

    onNeedPrivacyAuthorization(listener) {
      phone.privacyListener = listener;
    },

    getPrivacySetting(options = {}) {
      fakeWeChat('wx.getPrivacySetting', {}).then(
        (res) => deliver(options, true, res),
        (err) => deliver(options, false, { errMsg: 'getPrivacySetting:fail ' + err.message }),
      );
    },

    requirePrivacyAuthorize(options = {}) {
      guarded('requirePrivacyAuthorize', options, () => deliver(options, true, { errMsg: 'requirePrivacyAuthorize:ok' }));
    },

    openPrivacyContract(options = {}) {
      phone.dialogs.push({ kind: 'privacyContract' });
      deliver(options, true, { errMsg: 'openPrivacyContract:ok' });
    },

    showModal(options = {}) {
      phone.dialogs.push({ kind: 'modal', content: options.content });
      const confirm = Boolean(phone.user.modal(options));
      deliver(options, true, { confirm, cancel: !confirm, errMsg: 'showModal:ok' });
    },

    showToast() {},
    showLoading() {},
    hideLoading() {},
  };

  // tap makes the events WeChat gives a button's handler.
  const tap = {
    // getUserInfo: <button open-type="getUserInfo">; allowing grants
    // scope.userInfo, as the dialog of that button did.
    async getUserInfo({ allow = true, anonymous = false } = {}) {
      if (!(await privacyGate('button.getUserInfo'))) return { type: 'getuserinfo', detail: privacyRefusal('getUserInfo') };
      if (!allow) return { type: 'getuserinfo', detail: { errMsg: 'getUserInfo:fail auth deny' } };
      phone.authSetting['scope.userInfo'] = true;
      return { type: 'getuserinfo', detail: await fakeWeChat('wx.getUserInfo', { anonymous }) };
    },
    // getPhoneNumber and getRealtimePhoneNumber: the two phone buttons. The
    // fake answers errno 1400001 when the app's quota is used up.
    async getPhoneNumber({ allow = true } = {}) {
      return phoneButton('getPhoneNumber', allow);
    },
    async getRealtimePhoneNumber({ allow = true } = {}) {
      return phoneButton('getRealtimePhoneNumber', allow);
    },
    // chooseAvatar leaves the picked image in a temporary file, as DevTools
    // does under http://tmp/.
    async chooseAvatar() {
      if (!(await privacyGate('button.chooseAvatar'))) return { type: 'chooseavatar', detail: privacyRefusal('chooseAvatar') };
      const file = 'http://tmp/' + crypto.randomBytes(8).toString('hex') + '.png';
      phone.tmpFiles.set(file, Buffer.from('\x89PNG\r\n\x1a\n fake avatar of ' + phone.name));
      return { type: 'chooseavatar', detail: { avatarUrl: file } };
    },
    // agreePrivacyAuthorization: <button id=… open-type="agreePrivacyAuthorization">.
    // WeChat records the agreement on the tap itself.
    async agreePrivacyAuthorization(id) {
      phone.agreeTaps.add(id);
      await fakeWeChat('wx.agreePrivacyAuthorization', {});
      return { type: 'agreeprivacyauthorization', currentTarget: { id }, detail: {} };
    },
  };

  // phoneButton is a tap on a phone button: the privacy gate, then WeChat's
  // sheet where the user allows or denies, then the code.
  async function phoneButton(api, allow) {
    const type = api.toLowerCase();
    if (!(await privacyGate('button.' + api))) return { type, detail: privacyRefusal(api) };
    if (!allow) return { type, detail: { errMsg: api + ':fail user deny' } };
    return { type, detail: await fakeWeChat('wx.' + api, {}) };
  }

  // waitForPrivacyRequest resolves once the app's privacy listener is fired
  // (at once if it already was and is unanswered), with that request.
  phone.waitForPrivacyRequest = () => {
    const open = phone.privacyRequests.find((r) => !r.answer);
    if (open) return Promise.resolve(open);
    return new Promise((resolve) => phone.privacyWaiters.push(resolve));
  };

  // agreedBefore records, at the fake, that the user agreed to the privacy
  // guide in an earlier session, for tests about other things.
  phone.agreedBefore = () => fakeWeChat('wx.agreePrivacyAuthorization', {});

  // expireSession makes wx.checkSession fail until the next wx.login, as
  // when WeChat drops a session_key the user has not used for long.
  phone.expireSession = () => {
    phone.sessionValid = false;
  };
  phone.tap = tap;
  phone.wx = wx;

  global.wx = wx;
  global.App = (config) => {
    phone.app = config;
  };
  global.getApp = () => phone.app;
  global.Page = (config) => {
    phone.pageConfig = config;
  };
  return phone;
}

// setData applies a setData argument to data: keys may be paths, "a.b".
function setData(data, changes) {
  for (const [key, value] of Object.entries(changes)) {
    const parts = key.split('.');
    let target = data;
    for (const part of parts.slice(0, -1)) {
      if (typeof target[part] !== 'object' || target[part] === null) target[part] = {};
      target = target[part];
    }
    target[parts[parts.length - 1]] = value;
  }
}

// launch loads the sample's app.js afresh and runs onLaunch, as WeChat does
// when the mini program starts.
function launch(phone, root) {
  const file = path.join(root, 'app.js');
  delete require.cache[require.resolve(file)];
  require(file);
  phone.app.onLaunch();
  return phone.app;
}

// openPage loads a page of the sample and returns an instance of it: its
// data and methods on one object, with setData.
function openPage(phone, root, route) {
  const file = path.join(root, route + '.js');
  delete require.cache[require.resolve(file)];
  require(file);
  const config = phone.pageConfig;
  const page = Object.assign({}, config, { data: structuredClone(config.data || {}), route });
  page.setData = (changes) => setData(page.data, changes);
  return page;
}

module.exports = { createPhone, launch, openPage };
