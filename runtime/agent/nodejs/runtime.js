/*
 * warmstart's Node.js runtime client: runs a `nodejs*.x` function's handler against the
 * Lambda Runtime API the agent serves (runtime/agent/runtime_api.py).
 *
 *   agent ──GET /invocation/next (long poll)──▶ this loop ──handler(event, context, callback)
 *         ◀──POST /invocation/{id}/response | /error ◀── result, rejection, callback, crash
 *         ◀──POST /init/error ◀── the handler cannot be loaded (then exit 129)
 *
 * Plain CommonJS on Node 16+, no dependencies.  Behaviour follows Lambda's Node.js runtime:
 * handler strings `dir/module.path.to.fn`, `Runtime.*` init errors, the callback model with
 * `callbackWaitsForEmptyEventLoop` (the answer waits for the event loop to drain, seen as
 * 'beforeExit'), the `{errorType, errorMessage, trace}` error document, and the text log
 * format `time\trequestId\tLEVEL\tmessage`.  An uncaught exception (or an unhandled
 * rejection) fails the running invoke and ends the process: the next call is cold.
 */

'use strict';

const http = require('http');
const fs = require('fs');
const path = require('path');
const util = require('util');
const { pathToFileURL } = require('url');

const API_PREFIX = '/2018-06-01/runtime';
const ERROR_TYPE_HEADER = 'Lambda-Runtime-Function-Error-Type';
// what Lambda's Node.js runtime exits with after an uncaught exception / unhandled rejection
const EXIT_UNCAUGHT = 129;
const EXIT_UNHANDLED_REJECTION = 128;

function runtimeError(name) {
  const cls = class extends Error {};
  cls.prototype.name = `Runtime.${name}`;
  return cls;
}

const ImportModuleError = runtimeError('ImportModuleError');
const HandlerNotFound = runtimeError('HandlerNotFound');
const MalformedHandlerName = runtimeError('MalformedHandlerName');
const UserCodeSyntaxError = runtimeError('UserCodeSyntaxError');
const NodeJsExit = runtimeError('NodeJsExit');
const UnhandledPromiseRejection = runtimeError('UnhandledPromiseRejection');

// -- errors as Lambda renders them ---------------------------------------------------------

function isErrorLike(value) {
  return (
    util.types.isNativeError(value) ||
    (value !== null &&
      typeof value === 'object' &&
      typeof value.name === 'string' &&
      typeof value.message === 'string' &&
      typeof value.stack === 'string' &&
      value.name !== '' &&
      value.message !== '')
  );
}

/** The document posted to /error: a thrown non-Error is `{errorType: typeof, ...}`. */
function errorDocument(error) {
  try {
    if (isErrorLike(error)) {
      let name = error.name;
      if (typeof name !== 'string' || name === '') {
        name = (error.constructor && error.constructor.name) || 'Error';
      }
      const stack = typeof error.stack === 'string' ? error.stack.split('\n') : [];
      return { errorType: name, errorMessage: String(error.message), trace: stack };
    }
    return { errorType: typeof error, errorMessage: String(error), trace: [] };
  } catch (_) {
    return {
      errorType: 'handled',
      errorMessage:
        'callback called with Error argument, but there was a problem while retrieving ' +
        'one or more of its message, name, and stack',
    };
  }
}

function intoError(value) {
  return value instanceof Error ? value : new Error(value);
}

/** An error as the log shows it: a tab, then JSON with its enumerable properties too. */
function formattedError(value) {
  const replacer = (_key, v) => {
    if (!(v instanceof Error)) return v;
    const out = Object.assign({ errorType: v.name, errorMessage: v.message, code: v.code }, v);
    if (typeof v.stack === 'string') out.stack = v.stack.split('\n');
    return out;
  };
  try {
    return '\t' + JSON.stringify(intoError(value), replacer);
  } catch (_) {
    return '\t' + JSON.stringify(errorDocument(value));
  }
}

// -- the log -------------------------------------------------------------------------------

let requestId; // undefined until the first invoke, as Lambda's log lines show it

function logLine(level, args) {
  const text = util.format(...args);
  const line = `${new Date().toISOString()}\t${requestId}\t${level}\t${text}`;
  // one record per line: newlines inside a message become carriage returns
  process.stdout.write(line.replace(/\n/g, '\r') + '\n');
}

function patchConsole() {
  const levels = { trace: 'TRACE', debug: 'DEBUG', info: 'INFO', warn: 'WARN', error: 'ERROR' };
  for (const [method, level] of Object.entries(levels)) {
    console[method] = (...args) => logLine(level, args);
  }
  console.log = console.info;
  console.fatal = (...args) => logLine('FATAL', args);
}

function logError(what, error) {
  console.error(what, formattedError(error));
}

// -- the Runtime API -----------------------------------------------------------------------

const [apiHost, apiPort] = (process.env.AWS_LAMBDA_RUNTIME_API || '127.0.0.1:9001').split(':');
// keep-alive: one connection for the whole life of the runtime.  An idle socket in the
// agent's free pool is unref'd by Node, so it does not keep the event loop alive (which is
// what lets 'beforeExit' tell that the loop has drained).
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

function request(method, urlPath, body, headers) {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: apiHost, port: Number(apiPort), path: urlPath, method, agent, headers },
      (res) => {
        const chunks = [];
        res.on('data', (chunk) => chunks.push(chunk));
        res.on('error', reject);
        res.on('end', () =>
          resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }),
        );
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

function post(urlPath, body, extraHeaders) {
  const data = Buffer.from(body, 'utf8');
  const headers = Object.assign(
    { 'Content-Type': 'application/json', 'Content-Length': data.length },
    extraHeaders,
  );
  return request('POST', urlPath, data, headers);
}

function errorTypeHeader(doc) {
  const type = doc.errorType;
  return typeof type === 'string' && /^[\x20-\x7e]{1,256}$/.test(type)
    ? { [ERROR_TYPE_HEADER]: type }
    : {};
}

function postInitError(error) {
  const doc = errorDocument(error);
  return post(`${API_PREFIX}/init/error`, JSON.stringify(doc), errorTypeHeader(doc));
}

function postInvocationError(id, error) {
  const doc = errorDocument(error);
  const where = `${API_PREFIX}/invocation/${encodeURIComponent(id)}/error`;
  return post(where, JSON.stringify(doc), errorTypeHeader(doc));
}

// -- loading the handler -------------------------------------------------------------------

function inModulePackage(folder) {
  // the nearest package.json decides whether .js is an ES module
  for (let dir = folder; ; dir = path.dirname(dir)) {
    if (dir.endsWith(`${path.sep}node_modules`)) return false;
    const file = path.join(dir, 'package.json');
    if (fs.existsSync(file)) {
      try {
        return JSON.parse(fs.readFileSync(file, 'utf8')).type === 'module';
      } catch (_) {
        return false;
      }
    }
    if (path.dirname(dir) === dir) return false;
  }
}

async function importFile(file) {
  return import(pathToFileURL(file).href);
}

async function requireFile(file) {
  try {
    return require(file);
  } catch (err) {
    if (err && err.code === 'ERR_REQUIRE_ESM') return importFile(file);
    throw err;
  }
}

async function loadModule(taskRoot, moduleRoot, moduleName) {
  const base = path.resolve(taskRoot, moduleRoot, moduleName);
  const isModule = inModulePackage(path.dirname(base));
  const candidates = [
    ['', requireFile],
    ['.js', isModule ? importFile : requireFile],
    ['.mjs', importFile],
    ['.cjs', requireFile],
  ];
  for (const [ext, load] of candidates) {
    const file = base + ext;
    if (fs.existsSync(file) && fs.statSync(file).isFile()) return load(file);
  }
  // not a file of the task root: Node's own resolution (and its "Cannot find module" error)
  const paths = [taskRoot, path.resolve(taskRoot, moduleRoot)];
  return require(require.resolve(moduleName, { paths }));
}

async function loadHandler(taskRoot, fullHandler) {
  if (fullHandler.includes('..')) {
    throw new MalformedHandlerName(
      `'${fullHandler}' is not a valid handler name. Use absolute paths when specifying ` +
        'root directories in handler names.',
    );
  }
  const moduleAndPath = path.basename(fullHandler);
  const moduleRoot = fullHandler.slice(0, fullHandler.length - moduleAndPath.length);
  const match = /^([^.]*)\.(.*)$/.exec(moduleAndPath);
  if (!match) throw new MalformedHandlerName('Bad handler');
  const [, moduleName, propertyPath] = match;
  let loaded;
  try {
    loaded = await loadModule(taskRoot, moduleRoot, moduleName);
  } catch (err) {
    if (err instanceof SyntaxError) {
      const wrapped = new UserCodeSyntaxError(String(err));
      wrapped.stack = err.stack;
      throw wrapped;
    }
    if (err && (err.code === 'MODULE_NOT_FOUND' || err.code === 'ERR_MODULE_NOT_FOUND')) {
      throw new ImportModuleError(String(err));
    }
    throw err;
  }
  const fn = propertyPath.split('.').reduce((obj, key) => obj && obj[key], loaded);
  if (!fn) throw new HandlerNotFound(`${fullHandler} is undefined or not exported`);
  if (typeof fn !== 'function') throw new HandlerNotFound(`${fullHandler} is not a function`);
  return fn;
}

// -- one invocation ------------------------------------------------------------------------

let phase = 'init'; // 'init' until the first /next, then 'idle' or 'invoke'
let current = null; // { id, answered }
let onLoopEmpty = null; // what 'beforeExit' runs (once)

process.on('beforeExit', () => {
  const action = onLoopEmpty;
  onLoopEmpty = null;
  if (action) action();
});

function parseHeaderJson(value, name) {
  if (value === undefined) return undefined;
  try {
    return JSON.parse(value);
  } catch (err) {
    throw new Error(`Cannot parse ${name} as json: ${err.toString()}`);
  }
}

function decodeEvent(headers, body) {
  const type = (headers['content-type'] || 'application/json').split(';')[0].trim();
  const text = body.toString('utf8');
  return type.toLowerCase() === 'application/json' ? JSON.parse(text) : text;
}

function answer(invocation, send) {
  if (invocation.answered) return;
  invocation.answered = true;
  onLoopEmpty = null;
  send().then(
    () => {
      if (current === invocation) {
        current = null;
        phase = 'idle';
      }
      setImmediate(iterate);
    },
    (err) => fatal(err, EXIT_UNCAUGHT),
  );
}

function succeed(invocation, result) {
  let body;
  try {
    body = JSON.stringify(result === undefined ? null : result);
  } catch (_) {
    fail(invocation, new Error('Unable to stringify response body'));
    return;
  }
  answer(invocation, () =>
    post(`${API_PREFIX}/invocation/${encodeURIComponent(invocation.id)}/response`, body, {}),
  );
}

function fail(invocation, error) {
  if (invocation.answered) return;
  logError('Invoke Error', error);
  answer(invocation, () => postInvocationError(invocation.id, error));
}

/** The callback, and the context's callbackWaitsForEmptyEventLoop / done / succeed / fail. */
function callbackContext(invocation) {
  let waitForEmptyLoop = true;
  let finished = false;
  const once =
    (fn) =>
    (...args) => {
      if (finished) return;
      finished = true;
      fn(...args);
    };
  const done = (err, result) => {
    if (err !== undefined && err !== null) fail(invocation, err);
    else succeed(invocation, result);
  };
  const callback = (err, result) => {
    if ((err !== undefined && err !== null) || !waitForEmptyLoop) {
      done(err, result);
    } else {
      onLoopEmpty = () => setImmediate(() => succeed(invocation, result));
    }
  };
  const context = {
    get callbackWaitsForEmptyEventLoop() {
      return waitForEmptyLoop;
    },
    set callbackWaitsForEmptyEventLoop(value) {
      waitForEmptyLoop = value;
    },
    done: once(done),
    succeed: once((result) => done(null, result)),
    fail: once((err) => done(err === undefined || err === null ? 'handled' : err)),
  };
  return [once(callback), context];
}

function invocationContext(base, headers) {
  const env = process.env;
  const deadline = Number(headers['lambda-runtime-deadline-ms']);
  return Object.assign(base, {
    functionName: env.AWS_LAMBDA_FUNCTION_NAME,
    functionVersion: env.AWS_LAMBDA_FUNCTION_VERSION,
    memoryLimitInMB: env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
    logGroupName: env.AWS_LAMBDA_LOG_GROUP_NAME,
    logStreamName: env.AWS_LAMBDA_LOG_STREAM_NAME,
    invokedFunctionArn: headers['lambda-runtime-invoked-function-arn'],
    awsRequestId: headers['lambda-runtime-aws-request-id'],
    clientContext: parseHeaderJson(headers['lambda-runtime-client-context'], 'ClientContext'),
    identity: parseHeaderJson(headers['lambda-runtime-cognito-identity'], 'CognitoIdentity'),
    getRemainingTimeInMillis() {
      return Math.max(0, deadline - Date.now());
    },
  });
}

function isPromise(value) {
  return value !== null && typeof value === 'object' && typeof value.then === 'function';
}

function invoke(handler, isAsync, headers, body) {
  const id = headers['lambda-runtime-aws-request-id'];
  const invocation = { id, answered: false };
  current = invocation;
  phase = 'invoke';
  requestId = id;
  if (headers['lambda-runtime-trace-id']) {
    process.env._X_AMZN_TRACE_ID = headers['lambda-runtime-trace-id'];
  } else {
    delete process.env._X_AMZN_TRACE_ID;
  }
  const [callback, base] = callbackContext(invocation);
  // the loop drained without an answer: an async handler's promise can never settle; a
  // callback-style handler that never called back answers null
  onLoopEmpty = isAsync
    ? () => fail(invocation, new NodeJsExit('Error: Runtime exited without providing a reason'))
    : () => succeed(invocation, null);
  try {
    const context = invocationContext(base, headers);
    const result = handler(decodeEvent(headers, body), context, callback);
    if (isPromise(result)) {
      result.then(context.succeed, context.fail).then(undefined, context.fail);
    }
  } catch (err) {
    callback(err);
  }
}

// -- the loop ------------------------------------------------------------------------------

let handlerFn = null;
let handlerIsAsync = false;

async function iterate() {
  let next;
  try {
    next = await request('GET', `${API_PREFIX}/invocation/next`);
  } catch (err) {
    fatal(err, 1);
    return;
  }
  if (next.status !== 200) {
    // the environment is closing (500) or refuses this runtime (403): end promptly
    process.exit(1);
  }
  invoke(handlerFn, handlerIsAsync, next.headers, next.body);
}

function exitAfter(promise, code) {
  promise.then(
    () => process.exit(code),
    () => process.exit(code),
  );
}

/** An error nothing handled: fail the call (or the init) it belongs to, then end. */
function fatal(error, code) {
  if (phase === 'init') {
    exitAfter(postInitError(error), code);
  } else if (current !== null && !current.answered) {
    current.answered = true;
    exitAfter(postInvocationError(current.id, error), code);
  } else {
    process.exit(code);
  }
}

async function main() {
  patchConsole();
  process.on('uncaughtException', (error) => {
    logError('Uncaught Exception', error);
    fatal(error, EXIT_UNCAUGHT);
  });
  process.on('unhandledRejection', (reason) => {
    const error = new UnhandledPromiseRejection(String(reason));
    logError('Unhandled Promise Rejection', error);
    fatal(error, EXIT_UNHANDLED_REJECTION);
  });
  const taskRoot = process.env.LAMBDA_TASK_ROOT || process.cwd();
  try {
    handlerFn = await loadHandler(taskRoot, process.env._HANDLER || '');
  } catch (error) {
    logError('Uncaught Exception', error);
    exitAfter(postInitError(error), EXIT_UNCAUGHT);
    return;
  }
  handlerIsAsync = handlerFn.constructor && handlerFn.constructor.name === 'AsyncFunction';
  phase = 'idle';
  setImmediate(iterate);
}

// the entry point only: code that happens to require this file does not start a second loop
if (require.main === module) main();
