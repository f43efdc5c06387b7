// The teaching page of wxlogin in mock mode. The simulated phone runs the
// login and authorization flow step by step against this very server; each
// HTTP exchange is drawn as an arrow of a sequence diagram as it happens. The
// calls between wxlogin and WeChat do not pass through the browser: the fake
// WeChat records them, and the page fetches them from GET /mock/exchanges
// after each step. With ?autorun the page runs every step by itself, answers
// its own dialogs, and marks <body data-demo="done"> for a headless browser.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const lanes = { phone: 0, server: 1, wechat: 2 };
  // ?autorun runs every step; ?autorun=6 stops after the sixth, so that a
  // screenshot shows the phone logged in.
  const params = new URLSearchParams(location.search);
  const autorun = params.has('autorun');
  const autorunSteps = Number(params.get('autorun')) || Infinity;

  // What the phone holds, as a mini program would: the token in storage and
  // nothing else. The session_key is never here.
  const phone = { token: '', code: '', user: {}, exchangesSeen: 0 };

  // element builds a DOM element with a class and text; no HTML strings, so
  // nothing the server sends can become markup.
  function element(tag, className, text) {
    const el = document.createElement(tag);
    if (className) el.className = className;
    if (text !== undefined) el.textContent = text;
    return el;
  }

  // arrow draws one message from lane to lane, with its body folded below.
  function arrow(from, to, label, body, kind) {
    const row = element('li', 'row');
    const a = lanes[from], b = lanes[to];
    const line = element('div', 'arrow ' + (a < b ? 'ltr' : 'rtl') + (kind ? ' ' + kind : ''));
    line.style.gridColumn = (2 * Math.min(a, b) + 2) + ' / ' + (2 * Math.max(a, b) + 2);
    line.append(element('span', 'label', label));
    if (body !== undefined && body !== null && body !== '') {
      const details = element('details');
      details.append(element('summary', '', 'body'));
      details.append(element('pre', '', typeof body === 'string' ? body : JSON.stringify(body, null, 2)));
      line.append(details);
    }
    row.dataset.from = from;
    row.dataset.to = to;
    row.dataset.label = label;
    row.append(line);
    $('diagram').append(row);
    row.scrollIntoView({ block: 'nearest' });
    return row;
  }

  // note draws a box on one lifeline: what happens inside that party.
  function note(lane, text) {
    const row = element('li', 'row');
    const box = element('div', 'note', text);
    box.style.gridColumn = (2 * lanes[lane] + 1) + ' / ' + (2 * lanes[lane] + 3);
    row.dataset.note = lane;
    row.append(box);
    $('diagram').append(row);
  }

  // send makes one HTTP request and answers {status, body}. wx.request, too,
  // succeeds for every HTTP status; the envelope's status says what happened.
  async function send(method, path, body) {
    const init = { method, headers: {} };
    if (phone.token && !path.startsWith('/mock/')) init.headers.Authorization = 'Bearer ' + phone.token;
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const resp = await fetch(path, init);
    return { status: resp.status, body: await resp.json() };
  }

  // drawServerExchanges draws the calls wxlogin made to WeChat since the last
  // look, with the fake's redactions in place of every secret.
  async function drawServerExchanges() {
    const { body } = await send('GET', '/mock/exchanges?after=' + phone.exchangesSeen);
    for (const e of body.data.exchanges) {
      phone.exchangesSeen = e.seq;
      arrow('server', 'wechat', e.method + ' ' + e.path, e.query || e.request, 'upstream');
      const back = arrow('wechat', 'server', 'HTTP ' + e.status + ' · ' + summarize(e.response), e.response, 'upstream');
      // The reply that carries the session_key is shown open: it ends here.
      if (JSON.stringify(e.response || {}).includes('[session_key:')) back.querySelector('details').open = true;
    }
  }

  // summarize names the fields of a reply, so that an arrow reads like the
  // protocol: "openid, session_key, unionid".
  function summarize(reply) {
    if (!reply) return '';
    if (reply.errcode) return 'errcode ' + reply.errcode;
    return Object.keys(reply).filter((k) => k !== 'errcode' && k !== 'errmsg').join(', ');
  }

  // toServer is one mini program request to wxlogin: the request arrow, the
  // calls wxlogin makes to WeChat meanwhile, and the reply arrow.
  async function toServer(method, path, body) {
    const request = arrow('phone', 'server', method + ' ' + path, body);
    if (phone.token) request.querySelector('.label').after(element('span', 'tag', 'Authorization: Bearer …'));
    const reply = await send(method, path, body);
    await drawServerExchanges();
    const env = reply.body;
    arrow('server', 'phone', 'HTTP ' + reply.status + ' · status ' + env.status + ' · ' + env.msg, env,
      env.status === 0 ? '' : 'failed');
    return env;
  }

  // toWeChat is a client API call: what wx.login or a button tap gives the
  // mini program, straight from WeChat, with no wxlogin involved. A result
  // with an errno (a privacy interface before the agreement, no phone
  // quota) is a failure too.
  async function toWeChat(api, label) {
    arrow('phone', 'wechat', label);
    const reply = await send('POST', '/mock/' + api, { user: userName() });
    const failed = reply.status !== 200 || reply.body.errno !== undefined;
    arrow('wechat', 'phone', reply.body.errMsg, reply.body, failed ? 'failed' : '');
    if (failed) throw new Error(api + ' failed: ' + reply.body.errMsg);
    return reply.body;
  }

  // userName is who is using the phone: the fake WeChat gives each name its
  // own openid.
  function userName() { return $('user-name').value.trim() || 'alice'; }

  // expectOK returns a success's data and turns any other status into a
  // failure of the step.
  function expectOK(env, what) {
    if (env.status !== 0) throw new Error(what + ' answered status ' + env.status + ': ' + env.msg);
    return env.data;
  }

  // showUser fills the phone's card from a reply's data: the whole user
  // from GET /user, or only the phone fields from POST /user/phone.
  function showUser(data) {
    const user = Object.assign(phone.user, data);
    $('nickname').textContent = user.nickname || '(no nickname yet)';
    $('avatar').textContent = (user.nickname || '?').slice(0, 1);
    $('phone-number').textContent = user.phone_number ? '手机 ' + user.phone_number : '';
  }

  function showLoggedOut() {
    $('nickname').textContent = '未登录';
    $('phone-number').textContent = '';
    $('avatar').textContent = '?';
  }

  function showToken() {
    $('token-line').textContent = phone.token
      ? 'token in storage: ' + phone.token.slice(0, 6) + '…'
      : 'no token in storage';
  }

  // The steps of the flow, in order. Each explains itself on the phone.
  const steps = [
    {
      name: 'wx.login()',
      explain: 'The mini program asks WeChat for a one-time code. It is good for 5 minutes and one exchange; ' +
        'on its own it proves nothing about the user.',
      async run() {
        const res = await toWeChat('wx.login', 'wx.login()');
        phone.code = res.code;
      },
    },
    {
      name: 'POST /login',
      explain: 'The code goes to your server, which exchanges it with WeChat (code2Session) for openid, ' +
        'session_key and unionid. wxlogin keeps the session_key and answers with a token of its own.',
      async run() {
        const data = expectOK(await toServer('POST', '/login', { code: phone.code }), 'POST /login');
        note('server', (data.new_user ? 'new user ' : 'returning user ') + data.user_id +
          ': session_key kept here, token issued');
        phone.token = data.token;
        phone.code = '';
        showToken();
      },
    },
    {
      name: 'GET /user',
      explain: 'Every request that needs a login carries the token: Authorization: Bearer <token>.',
      async run() {
        showUser(expectOK(await toServer('GET', '/user'), 'GET /user'));
      },
    },
    {
      name: 'privacy agreement',
      explain: 'Since 2023-10-17 every interface that handles personal data (the buttons below, location, WeRun…) ' +
        'fails with "privacy permission is not authorized" until the user agrees to the app\'s privacy guide. ' +
        'wx.getPrivacySetting says whether they must; the app shows its own popup from wx.onNeedPrivacyAuthorization, ' +
        'and a tap on <button open-type="agreePrivacyAuthorization"> records the agreement with WeChat.',
      async run() {
        const setting = await toWeChat('wx.getPrivacySetting', 'wx.getPrivacySetting()');
        if (!setting.needAuthorization) {
          note('phone', 'agreed before: no popup');
          return;
        }
        const answer = await ask('请阅读并同意' + setting.privacyContractName + '后使用个人信息相关功能', ['拒绝', '同意'], '同意');
        if (answer !== '同意') {
          note('phone', 'refused: resolve({event: "disagree"}); the buttons below will fail until the user agrees');
          return;
        }
        await toWeChat('wx.agreePrivacyAuthorization', 'tap <button open-type="agreePrivacyAuthorization">');
      },
    },
    {
      name: 'getUserInfo button',
      explain: 'A tap on <button open-type="getUserInfo"> hands the mini program data WeChat signed and ' +
        'encrypted with the session_key. Only the server, which holds the key, can check and open it.',
      async run() {
        const detail = await toWeChat('wx.getUserInfo', 'tap <button open-type="getUserInfo">');
        const sent = {
          rawData: detail.rawData, signature: detail.signature,
          encryptedData: detail.encryptedData, iv: detail.iv,
        };
        const reply = await toServer('POST', '/user/userinfo', sent);
        note('server', 'signature checked and data decrypted with the session_key');
        showUser(expectOK(reply, 'POST /user/userinfo'));
      },
    },
    {
      name: 'getPhoneNumber button',
      explain: 'A tap on <button open-type="getPhoneNumber"> gives a one-time code. The server redeems it with ' +
        'WeChat (getuserphonenumber), which needs the app\'s access_token.',
      async run() {
        const detail = await toWeChat('wx.getPhoneNumber', 'tap <button open-type="getPhoneNumber">');
        showUser(expectOK(await toServer('POST', '/user/phone', { code: detail.code }), 'POST /user/phone'));
      },
    },
    {
      name: 'POST /logout',
      explain: 'Logging out kills the token on the server at once; the next request with it gets status 4, ' +
        'which tells a mini program to log in again.',
      async run() {
        expectOK(await toServer('POST', '/logout'), 'POST /logout');
        const after = await toServer('GET', '/user');
        if (after.status !== 4) throw new Error('GET /user after logout answered status ' + after.status);
        phone.token = '';
        phone.user = {};
        showToken();
        showLoggedOut();
      },
    },
  ];

  let nextStep = 0;
  let busy = false;

  function drawSteps() {
    const list = $('steps');
    list.replaceChildren();
    steps.forEach((s, i) => {
      const li = element('li', i < nextStep ? 'done' : i === nextStep ? 'current' : '', s.name);
      list.append(li);
    });
    $('next').disabled = busy || nextStep >= steps.length;
    $('run-all').disabled = busy || nextStep >= steps.length;
    // One action at a time: the others wait, visibly, instead of being ignored.
    for (const b of document.querySelectorAll('.scopes-panel button, #reset')) b.disabled = busy;
  }

  async function runStep() {
    const s = steps[nextStep];
    $('explain').textContent = s.explain;
    note('phone', (nextStep + 1) + '. ' + s.name);
    await s.run();
    nextStep++;
    drawSteps();
  }

  // guarded runs one user action at a time and shows a failure on the page.
  async function guarded(action) {
    if (busy) return;
    busy = true;
    drawSteps();
    try {
      await action();
    } catch (err) {
      fail(err);
    } finally {
      busy = false;
      drawSteps();
    }
  }

  const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  // runAll runs the remaining steps with a pause between them, slow enough
  // to follow.
  async function runAll() {
    for (let first = true; nextStep < steps.length; first = false) {
      if (!first) await pause(600);
      await runStep();
    }
  }

  function reset() {
    nextStep = 0;
    phone.token = '';
    phone.code = '';
    phone.user = {};
    showToken();
    showLoggedOut();
    $('diagram').replaceChildren();
    $('explain').textContent = 'Press Next step to start with wx.login().';
    drawSteps();
  }

  function fail(err) {
    document.body.dataset.demo = 'failed';
    $('explain').textContent = 'Failed: ' + err.message;
    $('result').textContent = JSON.stringify({ ok: false, error: err.message });
  }

  // The scope side, simulated in the page as the phone keeps it: a scope is
  // absent from authSetting until first asked, then true or false until the
  // user changes it in the settings page.
  const authSetting = {};
  let scopeTable = [];

  function logAuth(call, result, ok) {
    const li = element('li', ok ? 'ok' : 'failed');
    li.append(element('code', '', call), document.createTextNode(' → '), element('code', '', result));
    li.dataset.call = call;
    li.dataset.result = result;
    $('auth-log').append(li);
  }

  // ask shows a dialog on the phone and resolves to the button chosen. In
  // autorun the page answers for the user.
  function ask(text, choices, autoAnswer) {
    return new Promise((resolve) => {
      $('dialog-text').textContent = text;
      const buttons = $('dialog-buttons');
      buttons.replaceChildren();
      for (const choice of choices) {
        const b = element('button', '', choice);
        b.type = 'button';
        b.addEventListener('click', () => {
          $('dialog').hidden = true;
          resolve(choice);
        });
        buttons.append(b);
      }
      $('dialog').hidden = false;
      if (autorun) buttons.children[choices.indexOf(autoAnswer)].click();
    });
  }

  // authorize behaves as wx.authorize does for each kind of scope.
  async function authorize(info, autoAnswer) {
    const call = "wx.authorize({scope: '" + info.scope + "'})";
    const granted = authSetting[info.scope];
    if (info.request === 'none') {
      authSetting[info.scope] = true;
      logAuth(call, 'authorize:ok (no authorization any more: call ' + info.guards[0] + ' directly)', true);
    } else if (info.request === 'button') {
      logAuth(call, 'authorize:fail, no dialog: only a tap on a button can ask for it', false);
    } else if (info.request === 'settings') {
      logAuth(call, 'authorize:fail, no dialog: the user turns it on in wx.openSetting()', false);
      if (granted === undefined) authSetting[info.scope] = false;
    } else if (granted === true) {
      logAuth(call, 'authorize:ok (granted before, no dialog)', true);
    } else if (granted === false) {
      logAuth(call, 'authorize:fail auth deny (refused before: no dialog until wx.openSetting)', false);
    } else {
      const answer = await ask('"wxlogin demo" wants to use ' + info.purpose + ' (' + info.scope + ')', ['拒绝', '允许'], autoAnswer);
      authSetting[info.scope] = answer === '允许';
      logAuth(call, answer === '允许' ? 'authorize:ok' : 'authorize:fail auth deny', answer === '允许');
    }
    drawScopes();
  }

  // openSetting shows the settings page: one switch per scope asked for.
  // autoTurnOn lists the scopes autorun switches on.
  function openSetting(autoTurnOn) {
    return new Promise((resolve) => {
      $('dialog-text').textContent = 'Settings (设置) · only scopes asked for are listed';
      const sheet = $('dialog-buttons');
      sheet.replaceChildren();
      const switches = {};
      for (const scope of Object.keys(authSetting)) {
        const label = element('label', 'switch');
        const box = element('input');
        box.type = 'checkbox';
        box.checked = authSetting[scope];
        switches[scope] = box;
        label.append(box, document.createTextNode(' ' + scope));
        sheet.append(label);
      }
      const done = element('button', '', 'done');
      done.type = 'button';
      done.addEventListener('click', () => {
        $('dialog').hidden = true;
        for (const [scope, box] of Object.entries(switches)) authSetting[scope] = box.checked;
        logAuth('wx.openSetting()', JSON.stringify({ authSetting }), true);
        drawScopes();
        resolve();
      });
      sheet.append(done);
      $('dialog').hidden = false;
      if (autorun) {
        for (const scope of autoTurnOn || []) if (switches[scope]) switches[scope].checked = true;
        done.click();
      }
    });
  }

  // drawScopes renders the scope table from GET /scopes with the simulated
  // decision on each row.
  function drawScopes() {
    const body = $('scopes');
    body.replaceChildren();
    const how = {
      authorize: 'wx.authorize, or the API asks on first use',
      button: 'a tap on a button only',
      settings: 'the settings page only',
      none: 'nothing: call the API directly',
    };
    for (const info of scopeTable) {
      const tr = element('tr');
      tr.dataset.scope = info.scope;
      const state = authSetting[info.scope];
      tr.dataset.granted = state === undefined ? 'unasked' : String(state);
      tr.append(element('td', 'scope', info.scope), element('td', '', info.guards.join(', ')),
        element('td', '', info.purpose), element('td', 'privacy', info.privacy),
        element('td', '', how[info.request] + (info.note ? '. ' + info.note : '')));
      const cell = element('td');
      const b = element('button', '', 'wx.authorize');
      b.type = 'button';
      b.disabled = busy;
      b.addEventListener('click', () => guarded(() => authorize(info)));
      cell.append(b, element('span', 'state', state === undefined ? '' : state ? ' ✔ granted' : ' ✘ refused'));
      tr.append(cell);
      body.append(tr);
    }
  }

  // drawPrivacy shows the privacy layer, the gate in front of every scope,
  // from GET /scopes, with the privacy interfaces no scope guards.
  function drawPrivacy(privacy) {
    $('privacy-rule').textContent = 'Since ' + privacy.enforced_since + ': ' + privacy.rule;
    const list = $('privacy-unscoped');
    list.replaceChildren();
    for (const item of privacy.unscoped) {
      list.append(element('li', '', item.privacy + ': ' + item.guards.join(', ')));
    }
  }

  // getSetting logs what wx.getSetting would answer: only scopes asked for.
  function getSetting() {
    logAuth('wx.getSetting()', JSON.stringify({ authSetting }), true);
  }

  // load fetches the scope table, and skips the exchanges of earlier visits.
  async function load() {
    const { body } = await send('GET', '/scopes');
    scopeTable = body.data.scopes;
    drawPrivacy(body.data.privacy);
    drawScopes();
    const seen = await send('GET', '/mock/exchanges');
    for (const e of seen.body.data.exchanges) phone.exchangesSeen = e.seq;
  }

  // scopeTour is what autorun does on the scope side: a grant, a refusal that
  // then fails at once, the settings page turning it on, and the button-only
  // scope that wx.authorize cannot ask for.
  async function scopeTour() {
    const byName = Object.fromEntries(scopeTable.map((s) => [s.scope, s]));
    await authorize(byName['scope.record'], '允许');
    await authorize(byName['scope.userLocation'], '拒绝');
    await authorize(byName['scope.userLocation']);
    await openSetting(['scope.userLocation']);
    await authorize(byName['scope.userLocation']);
    await authorize(byName['scope.userInfo']);
    getSetting();
  }

  // autorunAll is ?autorun: the steps, then the scope tour, then the marks a
  // headless browser reads.
  async function autorunAll() {
    document.body.dataset.demo = 'running';
    await load();
    while (nextStep < steps.length && nextStep < autorunSteps) await runStep();
    await scopeTour();
    document.body.dataset.demo = 'done';
    $('result').textContent = JSON.stringify({
      ok: true,
      steps: nextStep,
      arrows: $('diagram').querySelectorAll('[data-label]').length,
      authSetting,
      layout: layoutOf(),
    });
  }

  // layoutOf is where the phone and the diagram are on the page, for a
  // headless browser to check the layout at its window's width.
  function layoutOf() {
    const box = (selector) => {
      const r = document.querySelector(selector).getBoundingClientRect();
      return { left: Math.round(r.left), right: Math.round(r.right), top: Math.round(r.top + scrollY), bottom: Math.round(r.bottom + scrollY) };
    };
    return { width: innerWidth, scrollWidth: document.documentElement.scrollWidth, phone: box('.phone'), diagram: box('#diagram') };
  }

  document.addEventListener('DOMContentLoaded', () => {
    $('next').addEventListener('click', () => guarded(runStep));
    $('run-all').addEventListener('click', () => guarded(runAll));
    $('reset').addEventListener('click', () => guarded(async () => reset()));
    $('get-setting').addEventListener('click', getSetting);
    $('open-setting').addEventListener('click', () => guarded(() => openSetting()));
    drawSteps();
    if (autorun) {
      guarded(autorunAll);
    } else {
      guarded(load);
    }
  });
})();
