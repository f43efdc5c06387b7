// Builds wxlogin and runs it in mock mode on a free loopback port, for the
// sample's tests. Each test file builds once (Go caches the work) and may
// start several servers with different flags.
'use strict';

const test = require('node:test');
const { execFileSync, spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const repo = path.resolve(__dirname, '..', '..');
const sampleRoot = path.resolve(__dirname, '..');

let binary = '';

// build compiles the binary into a temporary directory, once per process.
function build() {
  if (!binary) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wxlogin-bin-'));
    binary = path.join(dir, 'wxlogin');
    execFileSync('go', ['build', '-o', binary, '.'], { cwd: repo, stdio: ['ignore', 'inherit', 'inherit'] });
  }
  return binary;
}

// start runs wxlogin with extra flags and resolves to {url, stop} once it
// logs the URL it listens on, or rejects if it exits or 30 s pass first.
function start(args = []) {
  const bin = build();
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'wxlogin-data-'));
  // Mock mode: no AppID or secret may leak in from the environment.
  const env = Object.assign({}, process.env);
  for (const k of ['WX_APPID', 'WX_APPSECRET', 'WX_APPSECRET_FILE', 'WXLOGIN_APPS']) delete env[k];
  const child = spawn(bin, ['-addr', '127.0.0.1:0', '-data', dataDir, ...args], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  let listening = false;
  const exited = new Promise((resolve) => child.once('exit', resolve));

  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => fail(new Error('wxlogin did not log its URL within 30 s:\n' + log)), 30000);
    function fail(err) {
      clearTimeout(timer);
      child.kill('SIGKILL');
      reject(err);
    }
    const early = (code) => fail(new Error('wxlogin exited with ' + code + ' before listening:\n' + log));
    child.once('exit', early);
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk) => {
      log += chunk;
      if (listening) return;
      const m = /msg="wxlogin listening" url=(http:\/\/\S+)/.exec(log);
      if (!m) return;
      listening = true;
      clearTimeout(timer);
      child.off('exit', early);
      resolve({
        url: m[1],
        // stop ends the server as Ctrl-C would and waits for it to exit.
        async stop() {
          if (child.exitCode === null) child.kill('SIGTERM');
          await exited;
          fs.rmSync(dataDir, { recursive: true, force: true });
        },
      });
    });
  });
}

// serveDuringTests starts one wxlogin before a test file's tests, stops it
// after them, and points the sample's config at it before each test. The
// handle it returns has the server's url and stop once the tests run.
function serveDuringTests(config, args = []) {
  const srv = {};
  test.before(async () => {
    Object.assign(srv, await start(args));
  });
  test.after(() => srv.stop());
  test.beforeEach(() => {
    config.baseURL = srv.url;
  });
  return srv;
}

module.exports = { start, serveDuringTests, sampleRoot };
