// The Node.js tests' function: one export per behaviour (CommonJS, as most Lambda code is).
'use strict';

let count = 0;
// what ran after a callback's answer: a later call reports it (module state is kept warm)
const late = [];

exports.state = async (event) => {
  count += 1;
  return { event, count, pid: process.pid, late };
};

exports.context = async (event, context) => ({
  functionName: context.functionName,
  functionVersion: context.functionVersion,
  invokedFunctionArn: context.invokedFunctionArn,
  memoryLimitInMB: context.memoryLimitInMB,
  awsRequestId: context.awsRequestId,
  logGroupName: context.logGroupName,
  logStreamName: context.logStreamName,
  identity: context.identity,
  clientContext: context.clientContext,
  remaining: context.getRemainingTimeInMillis(),
  waits: context.callbackWaitsForEmptyEventLoop,
  legacy: [typeof context.done, typeof context.succeed, typeof context.fail],
  trace: process.env._X_AMZN_TRACE_ID,
  executionEnv: process.env.AWS_EXECUTION_ENV,
  handler: process.env._HANDLER,
  taskRoot: process.env.LAMBDA_TASK_ROOT,
  nodePath: process.env.NODE_PATH,
  runtimeApi: process.env.AWS_LAMBDA_RUNTIME_API,
});

// callback style: the answer is serialized when it is posted, so `order` shows whether the
// timer ran before it (callbackWaitsForEmptyEventLoop) or after
exports.callback = (event, context, callback) => {
  const order = ['handler'];
  context.callbackWaitsForEmptyEventLoop = event.wait;
  setTimeout(() => {
    order.push('timer');
    late.push(`timer of ${context.awsRequestId}`);
  }, 20);
  callback(null, { order, late });
  order.push('after callback');
};

exports.callbackError = (event, context, callback) => {
  callback(new Error('called back with an error'));
};

exports.succeed = (event, context) => {
  context.succeed({ legacy: 'succeed' });
  context.fail(new Error('ignored: the first answer stands'));
};

// a handler that is neither async nor calls back: Lambda answers null once the loop drains
exports.sync = () => ({ ignored: true });

exports.undefined = async () => undefined;

class NamedError extends Error {
  constructor(message) {
    super(message);
    this.name = 'NamedError';
  }
}

exports.throwError = async (event) => {
  if (event.named) throw new NamedError('a named one');
  throw new TypeError('bad thing');
};

exports.throwString = async () => {
  throw 'just a string';
};

exports.throwNumber = async () => {
  throw 42;
};

exports.reject = () => Promise.reject(new RangeError('rejected'));

// an exception no one catches, thrown by a timer while the call runs
exports.crash = () =>
  new Promise(() => {
    setTimeout(() => {
      throw new Error('thrown in a timer');
    }, 10);
  });

exports.hang = () => new Promise((resolve) => setTimeout(resolve, 60000));

exports.logs = async () => {
  console.log('hello %s', 'world', { n: 1 });
  console.info('an info');
  console.warn('a warning');
  console.error('an error');
  console.debug('a debug');
  console.trace('a trace');
  console.log('two\nlines');
  return 'logged';
};

exports.nested = { deeper: { fn: async () => 'nested' } };
exports.notAFunction = 42;

// a rejection no one handles, while the call still runs
exports.unhandled = async () => {
  Promise.reject(new Error('nobody caught this'));
  await new Promise((resolve) => setTimeout(resolve, 1000));
  return 'not reached';
};

// an async handler whose promise can never settle: the loop drains first
exports.never = async () => new Promise(() => {});
