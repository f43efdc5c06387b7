// The request helper every page uses for wxlogin's routes that need a login.
const auth = require('./auth');

// request sends the stored token (Authorization: Bearer) and resolves to the
// reply's data. On status 4 (no login, or it expired) it logs in again once
// and retries; concurrent requests that all meet status 4 share one login.
// Any other failure rejects with an ApiError carrying wxlogin's status.
async function request(path, { method = 'GET', data } = {}) {
  let token = await auth.token();
  let env = await auth.call(path, { method, data, token });
  if (env.status === auth.STATUS_NOT_LOGGED_IN) {
    token = await auth.relogin(token);
    env = await auth.call(path, { method, data, token });
  }
  if (env.status !== 0) {
    throw new auth.ApiError(env.status, env.msg, { httpStatus: env.httpStatus, errcode: env.errcode });
  }
  return env.data;
}

module.exports = { request };
