import assert from 'node:assert/strict';
import { hostname } from 'node:os';
import { resolve } from 'node:path';
import { test } from 'node:test';
import { isLoopback, splitHostPort } from '../../src/address.js';
import { ConfigError, flagName, HelpRequested, loadConfig, usage } from '../../src/config.js';

// loadConfig takes argv and an environment record: nothing of this process's own is read.
const load = (env: Record<string, string> = {}, argv: string[] = []) => loadConfig(argv, env);
const refused = (env: Record<string, string>, pattern: RegExp, argv: string[] = []) =>
  assert.throws(
    () => load(env, argv),
    (err: unknown) => err instanceof ConfigError && pattern.test(err.message),
    `${JSON.stringify(env)} ${argv.join(' ')}`,
  );

test('with nothing set, every setting takes its documented default', () => {
  const config = load();
  assert.equal(config.workerId, `worker-${hostname()}`);
  assert.equal(config.grpcAddr, '127.0.0.1:50052');
  assert.equal(config.httpAddr, '127.0.0.1:50053');
  assert.equal(config.dataDir, resolve('.worker-data'));
  assert.equal(config.maxSessions, 10);
  assert.equal(config.maxMessageBytes, 64 * 1024 * 1024);
  assert.equal(config.logLevel, 'info');
  assert.equal(config.sessionIdleSeconds, 3600);
  assert.equal(config.maxTaskTimeoutSeconds, 300);
  assert.equal(config.maxOutputBytes, 1024 * 1024);
  assert.equal(config.taskHistory, 100);
  assert.equal(config.python, 'python3');
  assert.equal(config.sandbox, 'bwrap');
  assert.equal(config.allowNetwork, false);
  assert.equal(config.maxProcesses, 256);
  assert.equal(config.maxTaskOutputBytes, 64 * 1024 * 1024);
  assert.equal(config.defaultDiskMb, 10240);
  assert.equal(config.defaultMemoryMb, 2048);
  assert.equal(config.spareSessions, 8);
  assert.equal(config.warmInterpreter, true);
  assert.equal(config.checkpointsPerSession, 10);
  assert.equal(config.shutdownGraceSeconds, 30);
  assert.equal(config.uploadUrlTtlSeconds, 3600);
  assert.equal(config.downloadUrlTtlSeconds, 604800);
  assert.equal(config.maxArtifactBytes, 1024 * 1024 * 1024);
  assert.equal(config.artifactRetentionHours, 168);
  assert.equal(config.insecure, false);
  assert.equal(config.observeCalls, true);
  for (const unset of [
    'publicUrl',
    'advertiseAddr',
    'coordinatorAddr',
    'pipIndexUrl',
    'checkpointStore',
    's3Endpoint',
    'urlSecret',
    'uidBase',
    'authToken',
    'authTokenFile',
    'tlsCert',
    'tlsKey',
    'tlsClientCa',
    'coordinatorAuthToken',
    'coordinatorTlsCa',
    'coordinatorTlsCert',
    'coordinatorTlsKey',
  ] as const) {
    assert.equal(config[unset], undefined, unset);
  }
});

test('environment values are parsed into their types; megabyte settings become bytes', () => {
  const config = load({
    WORKER_MAX_SESSIONS: ' 42 ',
    WORKER_MAX_MESSAGE_MB: '2',
    WORKER_MAX_TASK_OUTPUT_MB: '3',
    WORKER_MAX_ARTIFACT_MB: '5',
    WORKER_ALLOW_NETWORK: 'YES',
    WORKER_WARM_INTERPRETER: '0',
    WORKER_DATA_DIR: 'rel/dir',
    WORKER_UID_BASE: '300000',
    WORKER_SANDBOX: 'none',
  });
  assert.equal(config.maxSessions, 42);
  assert.equal(config.maxMessageBytes, 2 * 1024 * 1024);
  assert.equal(config.maxTaskOutputBytes, 3 * 1024 * 1024);
  assert.equal(config.maxArtifactBytes, 5 * 1024 * 1024);
  assert.equal(config.allowNetwork, true);
  assert.equal(config.warmInterpreter, false);
  assert.equal(config.dataDir, resolve('rel/dir'));
  assert.equal(config.uidBase, 300000);
  assert.equal(config.sandbox, 'none');
});

test('a flag wins over its environment variable; an empty value means the default', () => {
  const config = load({ WORKER_MAX_SESSIONS: '3', WORKER_ID: 'from-env', COORDINATOR_ADDR: 'c:1' }, [
    '--max-sessions',
    '7',
    '--worker-id=from-flag',
    '--coordinator-addr',
    'd:2',
  ]);
  assert.equal(config.maxSessions, 7);
  assert.equal(config.workerId, 'from-flag');
  assert.equal(config.coordinatorAddr, 'd:2');
  assert.equal(load({ WORKER_MAX_SESSIONS: '' }).maxSessions, 10);
});

test('a bad environment value is refused naming the variable; a bad flag naming the flag', () => {
  refused({ WORKER_MAX_SESSIONS: 'ten' }, /^WORKER_MAX_SESSIONS must be a whole number, got 'ten'$/);
  refused({}, /^--max-sessions must be a whole number, got 'ten'$/, ['--max-sessions', 'ten']);
  // The flag is what was read, so a bad variable under a good flag does not matter.
  assert.equal(load({ WORKER_MAX_SESSIONS: 'ten' }, ['--max-sessions', '4']).maxSessions, 4);
});

test('every kind of value has its refusal, naming the setting and quoting the value', () => {
  refused({ WORKER_ID: '   ' }, /^WORKER_ID must not be empty$/);
  refused({ WORKER_MAX_SESSIONS: '1.5' }, /^WORKER_MAX_SESSIONS must be a whole number, got '1\.5'$/);
  refused({ WORKER_MAX_SESSIONS: '0' }, /^WORKER_MAX_SESSIONS must be between 1 and 100000, got 0$/);
  refused({ WORKER_MAX_PROCESSES: '7' }, /^WORKER_MAX_PROCESSES must be between 8 and 100000, got 7$/);
  refused({ WORKER_MAX_MESSAGE_MB: '2048' }, /^WORKER_MAX_MESSAGE_MB must be between 1 and 2047, got 2048$/);
  refused({ WORKER_SESSION_IDLE_SECONDS: '-1' }, /^WORKER_SESSION_IDLE_SECONDS must be between 0 and/);
  refused({ WORKER_GRPC_ADDR: 'localhost' }, /^WORKER_GRPC_ADDR must be host:port \(port 0-65535\), got 'localhost'$/);
  refused({ WORKER_HTTP_ADDR: '127.0.0.1:65536' }, /^WORKER_HTTP_ADDR must be host:port/);
  refused({ COORDINATOR_ADDR: 'a b:1' }, /^COORDINATOR_ADDR must be host:port/);
  refused({ WORKER_PUBLIC_URL: 'not a url' }, /^WORKER_PUBLIC_URL must be a URL, got 'not a url'$/);
  refused({ WORKER_PUBLIC_URL: 'ftp://host/' }, /^WORKER_PUBLIC_URL must use http: or https:, got 'ftp:\/\/host\/'$/);
  refused({ WORKER_CHECKPOINT_STORE: 'https://bucket/x' }, /^WORKER_CHECKPOINT_STORE must use s3:/);
  refused({ WORKER_ALLOW_NETWORK: 'maybe' }, /^WORKER_ALLOW_NETWORK must be true or false, got 'maybe'$/);
  refused({ WORKER_LOG_LEVEL: 'loud' }, /^WORKER_LOG_LEVEL must be one of error, warn, info, http, verbose, debug, silly, got 'loud'$/);
  refused({ WORKER_SANDBOX: 'docker' }, /^WORKER_SANDBOX must be one of bwrap, none, got 'docker'$/);
});

test('accepted address forms: a name, IPv4, bracketed IPv6, port 0', () => {
  assert.equal(load({ WORKER_HTTP_ADDR: 'localhost:0' }).httpAddr, 'localhost:0');
  assert.equal(load({ WORKER_HTTP_ADDR: '[::1]:8080' }).httpAddr, '[::1]:8080');
  assert.equal(load({ WORKER_PIP_INDEX_URL: 'file:///srv/index' }).pipIndexUrl, 'file:///srv/index');
  assert.equal(load({ WORKER_CHECKPOINT_STORE: 's3://bucket/prefix' }).checkpointStore, 's3://bucket/prefix');
});

test('WORKER_UID_BASE must be a whole block of 100000 within the uid space', () => {
  refused({ WORKER_UID_BASE: '250000' }, /^WORKER_UID_BASE must be a multiple of 100000 \(uid ranges are whole blocks\), got 250000$/);
  refused({ WORKER_UID_BASE: '0' }, /^WORKER_UID_BASE must be between 100000 and 4294800000, got 0$/);
  refused({ WORKER_UID_BASE: '4294900000' }, /^WORKER_UID_BASE must be between/);
  assert.equal(load({ WORKER_UID_BASE: '100000' }).uidBase, 100000);
  assert.equal(load({ WORKER_UID_BASE: '4294800000' }).uidBase, 4294800000);
});

test('listening off loopback needs a token, a token file, mTLS or WORKER_INSECURE', () => {
  refused({ WORKER_GRPC_ADDR: '0.0.0.0:50052' }, /^WORKER_GRPC_ADDR 0\.0\.0\.0:50052 is not a loopback address.*WORKER_AUTH_TOKEN.*WORKER_INSECURE=true/);
  refused({}, /is not a loopback address/, ['--grpc-addr', '10.0.0.5:1']);
  assert.equal(load({ WORKER_GRPC_ADDR: '0.0.0.0:1', WORKER_AUTH_TOKEN: 't' }).authToken, 't');
  assert.equal(load({ WORKER_GRPC_ADDR: '0.0.0.0:1', WORKER_AUTH_TOKEN_FILE: '/run/secret' }).authTokenFile, '/run/secret');
  assert.equal(load({ WORKER_GRPC_ADDR: '0.0.0.0:1', WORKER_TLS_CERT: 'c', WORKER_TLS_KEY: 'k', WORKER_TLS_CLIENT_CA: 'ca' }).tlsClientCa, 'ca');
  assert.equal(load({ WORKER_GRPC_ADDR: '0.0.0.0:1', WORKER_INSECURE: 'true' }).insecure, true);
  // TLS without client certificates authenticates nobody.
  refused({ WORKER_GRPC_ADDR: '0.0.0.0:1', WORKER_TLS_CERT: 'c', WORKER_TLS_KEY: 'k' }, /is not a loopback address/);
});

test('settings that go together are refused alone, and settings that exclude each other together', () => {
  refused({ WORKER_AUTH_TOKEN: 'a', WORKER_AUTH_TOKEN_FILE: '/f' }, /^WORKER_AUTH_TOKEN and WORKER_AUTH_TOKEN_FILE are both set: give one$/);
  refused({ WORKER_TLS_CERT: 'c' }, /^WORKER_TLS_CERT and WORKER_TLS_KEY go together/);
  refused({ WORKER_TLS_KEY: 'k' }, /^WORKER_TLS_CERT and WORKER_TLS_KEY go together/);
  refused({ WORKER_TLS_CLIENT_CA: 'ca' }, /^WORKER_TLS_CLIENT_CA \(mTLS\) needs WORKER_TLS_CERT and WORKER_TLS_KEY$/);
  refused({ COORDINATOR_TLS_CERT: 'c' }, /^COORDINATOR_TLS_CERT and COORDINATOR_TLS_KEY go together/);
  refused({ COORDINATOR_TLS_KEY: 'k' }, /^COORDINATOR_TLS_CERT and COORDINATOR_TLS_KEY go together/);
  const both = load({ WORKER_TLS_CERT: 'c', WORKER_TLS_KEY: 'k', COORDINATOR_TLS_CERT: 'cc', COORDINATOR_TLS_KEY: 'ck' });
  assert.deepEqual([both.tlsCert, both.tlsKey, both.coordinatorTlsCert, both.coordinatorTlsKey], ['c', 'k', 'cc', 'ck']);
});

test('isLoopback: 127.0.0.0/8, ::1 and localhost only', () => {
  for (const address of ['127.0.0.1:1', '127.1.2.3:0', '[::1]:50052', 'localhost:80']) assert.equal(isLoopback(address), true, address);
  for (const address of ['0.0.0.0:1', '[::]:1', '10.0.0.1:1', '128.0.0.1:1', 'example.com:80', '[::ffff:10.0.0.1]:1'])
    assert.equal(isLoopback(address), false, address);
});

test('isLoopback: a host name that merely starts with "127." is not loopback', () => {
  assert.equal(isLoopback('127.attacker.example:50052'), false);
  assert.throws(() => load({ WORKER_GRPC_ADDR: '127.attacker.example:50052' }), /is not a loopback address/);
});

test('splitHostPort: host and numeric port, IPv6 brackets removed', () => {
  assert.deepEqual(splitHostPort('127.0.0.1:50052'), ['127.0.0.1', 50052]);
  assert.deepEqual(splitHostPort('[::1]:0'), ['::1', 0]);
  assert.deepEqual(splitHostPort('[fe80::1:2]:443'), ['fe80::1:2', 443]);
  assert.deepEqual(splitHostPort('worker-0.svc:1'), ['worker-0.svc', 1]);
});

test('flagName: WORKER_ dropped (except WORKER_ID), lower case, dashes', () => {
  assert.equal(flagName('WORKER_GRPC_ADDR'), 'grpc-addr');
  assert.equal(flagName('COORDINATOR_ADDR'), 'coordinator-addr');
  assert.equal(flagName('WORKER_ID'), 'worker-id');
  assert.equal(flagName('COORDINATOR_TLS_CA'), 'coordinator-tls-ca');
  assert.equal(flagName('WORKER_MAX_TASK_TIMEOUT_SECONDS'), 'max-task-timeout-seconds');
});

test('usage lists every setting once, with its flag and variable, and each flag is accepted', () => {
  const rows = usage()
    .split('\n')
    .filter((line) => line.startsWith('  --') && !/^ {2}--(help|version) /.test(line))
    .map((line) => line.trim().split(/\s+/));
  assert.equal(rows.length, Object.keys(load()).length, 'one row per configuration field');
  const variables = rows.map(([, variable]) => variable);
  assert.equal(new Set(variables).size, variables.length, 'no variable listed twice');
  for (const [flag, variable = ''] of rows) {
    assert.equal(flag, `--${flagName(variable)}`);
    assert.match(variable, /^(WORKER|COORDINATOR)_[A-Z0-9_]+$/);
  }
  const flags = rows.map(([flag]) => flag);
  assert.equal(new Set(flags).size, flags.length, 'no two settings share a flag');
  // Every listed flag parses (an unknown one would be refused).
  for (const flag of flags) assert.doesNotThrow(() => loadConfig([`${flag}=`], {}), flag);
});

test('--help asks for the usage; unknown flags and positional arguments are refused with it', () => {
  assert.throws(
    () => load({}, ['--help']),
    (err: unknown) => err instanceof HelpRequested && err.message === usage(),
  );
  assert.throws(
    () => load({}, ['--no-such-flag', 'x']),
    (err: unknown) => err instanceof ConfigError && err.message.includes('--no-such-flag') && err.message.endsWith(usage()),
  );
  assert.throws(
    () => load({}, ['stray']),
    (err: unknown) => err instanceof ConfigError && err.message.includes('stray'),
  );
});

test('WORKER_GOPROXY: proxy URLs in GOPROXY syntax, the Go proxy by default; direct and off refused', () => {
  assert.equal(load().goProxy, 'https://proxy.golang.org');
  assert.equal(load().go, 'go');
  assert.equal(
    load({ WORKER_GOPROXY: 'https://a.example,file:///srv/mods|http://127.0.0.1:3000' }).goProxy,
    'https://a.example,file:///srv/mods|http://127.0.0.1:3000',
  );
  refused({ WORKER_GOPROXY: 'https://proxy.golang.org,direct' }, /WORKER_GOPROXY: 'direct' is not allowed/);
  refused({ WORKER_GOPROXY: 'off' }, /WORKER_GOPROXY: 'off' is not allowed/);
  refused({ WORKER_GOPROXY: 'ftp://x.example' }, /WORKER_GOPROXY must use http: or https: or file:/);
  refused({ WORKER_GOPROXY: 'https://a.example,,https://b.example' }, /WORKER_GOPROXY must be a URL/);
});
