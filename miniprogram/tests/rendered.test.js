// The sample in WeChat's own tools: every page's WXML and WXSS compiled by
// WeChat's compiler (wcc and wcsc, from the npm package
// miniprogram-compiler), and the pages rendered from that compiled template
// by Tencent's miniprogram-simulate (with j-component, in jsdom), against
// the real wxlogin. Taps go through the rendered template: an event sent to
// a button reaches the handler its WXML binds, or nothing, as on a phone.
// The tools are test-only, pinned in tools/wechat/package-lock.json and
// installed there by .ci/run (npm ci); the sample itself uses none. Where
// they are not installed these tests are skipped, saying so, unless
// WXLOGIN_REQUIRE_TOOLS is set, as .ci/run sets it.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { createRequire } = require('node:module');
const server = require('./server');
const { createPhone, launch } = require('./wx-shim');
const config = require('../config');

const toolsDir = path.join(__dirname, '..', '..', 'tools', 'wechat');
const installed = fs.existsSync(path.join(toolsDir, 'node_modules', 'miniprogram-simulate'));
if (!installed && process.env.WXLOGIN_REQUIRE_TOOLS) {
  throw new Error('WeChat\'s tools are not installed in tools/wechat (npm ci there), and WXLOGIN_REQUIRE_TOOLS is set');
}
const skip = installed ? false : 'SKIPPED: WeChat\'s compiler and simulator are not installed (cd tools/wechat && npm ci)';
if (skip) console.error(skip);

const root = server.sampleRoot;
const srv = installed ? server.serveDuringTests(config) : null;

// Every WXML file of the sample, as WeChat DevTools hands them to wcc: from
// the project's root, "./" first, so that an import of "/templates/…"
// resolves.
function wxmlFiles(dir = root) {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return e.name === 'tests' ? [] : wxmlFiles(p);
    return e.name.endsWith('.wxml') ? ['./' + path.relative(root, p)] : [];
  });
}

let tools; // the modules, loaded once jsdom's window is global

// loadTools makes jsdom's window the global one, as the simulator needs,
// and loads the tools from tools/wechat.
function loadTools() {
  if (tools) return tools;
  const load = createRequire(path.join(toolsDir, 'package.json'));
  const { JSDOM } = load('jsdom');
  const dom = new JSDOM('<!doctype html><html><body></body></html>', { pretendToBeVisual: true });
  global.window = dom.window;
  global.document = dom.window.document;
  // Node has an Event and a CustomEvent of its own; the DOM's must win.
  for (const name of ['Node', 'Event', 'CustomEvent', 'HTMLElement', 'TouchEvent', 'Touch', 'getComputedStyle', 'requestAnimationFrame']) {
    global[name] = dom.window[name];
  }
  window.__webview_engine_version__ = 0.02; // what wcc's output checks for
  tools = { compiler: load('miniprogram-compiler'), simulate: load('miniprogram-simulate') };
  return tools;
}

// compiled is WeChat's compiled template function ($gwx) of the sample.
function compiled() {
  const { compiler } = loadTools();
  return new Function(compiler.wxmlToJs(root, { wxmlList: wxmlFiles() }))(); // eslint-disable-line no-new-func
}

// renderPage renders route (e.g. "pages/profile/profile") from its compiled
// template, with the page's own definition, for a phone already launched.
// The page's Page({...}) is registered as a component: its data, and its
// functions as methods.
async function renderPage(route) {
  const { simulate } = loadTools();
  let definition;
  global.Page = (d) => { definition = d; };
  const file = path.join(root, route + '.js');
  delete require.cache[require.resolve(file)];
  require(file);
  const methods = {};
  for (const [name, value] of Object.entries(definition)) if (typeof value === 'function') methods[name] = value;
  const id = simulate.load({ template: compiled()('./' + route + '.wxml'), data: structuredClone(definition.data || {}), methods });
  const page = simulate.render(id);
  page.attach(document.createElement('parent-wrapper'));
  if (page.instance.onLoad) await page.instance.onLoad({});
  if (page.instance.onShow) await page.instance.onShow();
  return page;
}

// until polls cond every 20 ms for up to 5 s: a handler the template calls
// runs on its own, and its promise is not the test's.
async function until(what, cond) {
  for (const deadline = Date.now() + 5000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 20))) {
    if (cond()) return;
  }
  assert.fail('timed out waiting for ' + what);
}

// launched is a phone of user name, agreed to the privacy guide before,
// with the sample launched and logged in.
async function launched(name) {
  const phone = createPhone(srv.url, name);
  await phone.agreedBefore();
  await launch(phone, root).globalData.ready;
  return phone;
}

test('every page\'s WXML and WXSS compiles with WeChat\'s compiler', { skip }, () => {
  const { compiler } = loadTools();
  const $gwx = compiled();
  const pages = JSON.parse(fs.readFileSync(path.join(root, 'app.json'), 'utf8')).pages;
  for (const page of pages) {
    assert.equal(typeof $gwx('./' + page + '.wxml'), 'function', page + '.wxml compiled');
  }
  assert.ok(compiler.wxssToJs(root).length > 0);
});

test('WeChat\'s compiler refuses a stray closing tag', { skip }, () => {
  const { compiler } = loadTools();
  const broken = fs.mkdtempSync(path.join(require('node:os').tmpdir(), 'sample-'));
  try {
    fs.cpSync(root, broken, { recursive: true, filter: (p) => !p.includes(path.sep + 'tests') });
    const wxml = path.join(broken, 'pages/profile/profile.wxml');
    fs.writeFileSync(wxml, fs.readFileSync(wxml, 'utf8').replace('</view>', '</view></text>'));
    assert.throws(() => compiler.wxmlToJs(broken, { wxmlList: ['./pages/profile/profile.wxml', './templates/privacy.wxml'] }), /expect end-tag/);
  } finally {
    fs.rmSync(broken, { recursive: true, force: true });
  }
});

test('the profile page, rendered: GET /user shown, the phone button\'s binding redeems the code', { skip }, async () => {
  const phone = await launched('rendered-rita');
  const page = await renderPage('pages/profile/profile');
  assert.match(page.dom.textContent, /openid o/, 'the user is shown');
  const tap = await phone.tap.getPhoneNumber();
  page.querySelector('#get-phone-number').dispatchEvent('getphonenumber', { detail: tap.detail });
  await until('the phone number', () => page.instance.data.user && page.instance.data.user.phone_number);
  assert.equal(page.instance.data.message, '');
  assert.ok(page.dom.textContent.includes('手机号 ' + page.instance.data.user.phone_number), 'the number is rendered');
});

test('the profile page, rendered: the getUserInfo button\'s binding saves the profile', { skip }, async () => {
  const phone = await launched('rendered-sam');
  const page = await renderPage('pages/profile/profile');
  const tap = await phone.tap.getUserInfo();
  page.querySelector('#get-user-info').dispatchEvent('getuserinfo', { detail: tap.detail });
  await until('the nickname', () => page.instance.data.user && page.instance.data.user.nickname === 'rendered-sam');
  assert.ok(page.dom.textContent.includes('rendered-sam'), 'the nickname is rendered');
});

test('the authorize page, rendered: a tap on the record button asks for scope.record', { skip }, async () => {
  const phone = await launched('rendered-tom');
  phone.user.authorize = () => true;
  const page = await renderPage('pages/authorize/authorize');
  page.querySelector('#record').dispatchEvent('tap');
  await until('the microphone', () => page.instance.data.recordReady);
  assert.ok(page.dom.textContent.includes('麦克风已授权'));
});

test('miniprogram-ci\'s offline code-quality check finds nothing', { skip }, () => {
  // The check needs a project with an upload key, which it never uses
  // offline: a key made here stands in. It leaves a file watcher running,
  // so it runs in a process of its own, which exits once it has answered.
  const dir = fs.mkdtempSync(path.join(require('node:os').tmpdir(), 'ci-key-'));
  try {
    const key = path.join(dir, 'private.key');
    const { privateKey } = require('node:crypto').generateKeyPairSync('rsa', { modulusLength: 2048 });
    fs.writeFileSync(key, privateKey.export({ type: 'pkcs1', format: 'pem' }));
    const script = `
      const ci = require(${JSON.stringify(path.join(toolsDir, 'node_modules', 'miniprogram-ci'))});
      const project = new ci.Project({ appid: 'wxfa4e000000000000', type: 'miniProgram', projectPath: ${JSON.stringify(root)},
        privateKeyPath: ${JSON.stringify(key)}, ignores: ['tests/**/*'] });
      ci.checkCodeQuality(project).then((r) => { process.stdout.write('RESULT ' + JSON.stringify(r) + '\\n'); process.exit(0); },
        (e) => { console.error(e); process.exit(1); });`;
    const out = require('node:child_process').execFileSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 120000, stdio: ['ignore', 'pipe', 'pipe'] });
    const line = out.split('\n').find((l) => l.startsWith('RESULT '));
    assert.ok(line, 'the check answered:\n' + out);
    const failed = JSON.parse(line.slice('RESULT '.length)).filter((r) => !r.success).map((r) => r.name + ': ' + r.text);
    assert.deepEqual(failed, [], 'findings of the code-quality check');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
