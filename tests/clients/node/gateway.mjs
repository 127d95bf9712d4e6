// A gateway-shaped client of tally.v1 in Node (@grpc/grpc-js, @grpc/proto-loader), as a web
// gateway serving manager dashboards would call Tally. tests/integration/test_clients.c starts
// a whole system with two query-svc replicas and runs:
//
//   node gateway.mjs --proto DIR --commands HOST:PORT --query HOST:PORT,HOST:PORT --tenant T
//
// with TALLY_TOKEN in the environment. It checks, printing one line each and exiting non-zero
// on the first failure: GetDashboard with a deadline and a token, round-robin over both
// replicas (the test counts each replica's calls afterwards), a WatchDashboard stream that
// gets a new page after a command, and the rich error details (google.rpc.Status in
// grpc-status-details-bin: BadRequest, ErrorInfo) decoded with protobufjs.
import grpc from '@grpc/grpc-js';
import loader from '@grpc/proto-loader';
import protobuf from 'protobufjs';
import path from 'node:path';
import { parseArgs } from 'node:util';

const { values: opt } = parseArgs({
  options: {
    proto: { type: 'string' },
    commands: { type: 'string' },
    query: { type: 'string' },
    tenant: { type: 'string' },
    calls: { type: 'string', default: '20' },
  },
});
for (const k of ['proto', 'commands', 'query', 'tenant'])
  if (!opt[k]) throw new Error(`--${k} is required`);
const token = process.env.TALLY_TOKEN;
if (!token) throw new Error('TALLY_TOKEN is not set');

// The options docs/clients.md recommends: without keepCase, tenant_id becomes tenantId and is
// silently dropped; longs as numbers; enums as names; defaults so that 0 and false arrive.
const def = loader.loadSync(['tally/v1/dashboard.proto', 'tally/v1/commands.proto'], {
  includeDirs: [opt.proto], keepCase: true, longs: Number, enums: String, defaults: true,
  oneofs: true,
});
const tally = grpc.loadPackageDefinition(def).tally.v1;
const rpc = new protobuf.Root().loadSync([
  path.join(opt.proto, 'googleapis/google/rpc/status.proto'),
  path.join(opt.proto, 'googleapis/google/rpc/error_details.proto'),
], { keepCase: true });
const Status = rpc.lookupType('google.rpc.Status');

// Round robin over the replicas: an ipv4: target lists them (a headless Service's DNS name
// does the same in Kubernetes: dns:///query-svc-headless...). The service config is
// docs/clients.md's, as written there: WatchDashboard has an entry of its own without the
// Dashboard calls' 2 s timeout, which would cut every stream.
const serviceConfig = {
  loadBalancingConfig: [{ round_robin: {} }],
  methodConfig: [
    { name: [{ service: 'tally.v1.Dashboard' }],
      timeout: '2s',
      retryPolicy: { maxAttempts: 3, initialBackoff: '0.1s', maxBackoff: '1s',
                     backoffMultiplier: 2, retryableStatusCodes: ['UNAVAILABLE'] } },
    { name: [{ service: 'tally.v1.Dashboard', method: 'WatchDashboard' }] },
  ],
};
const channelOptions = { 'grpc.service_config': JSON.stringify(serviceConfig),
                         'grpc.keepalive_time_ms': 30000 };
const dashboard = new tally.Dashboard(`ipv4:${opt.query}`, grpc.credentials.createInsecure(),
                                      channelOptions);
const commands = new tally.ComplaintCommands(opt.commands, grpc.credentials.createInsecure());

const md = () => {
  const m = new grpc.Metadata();
  m.set('authorization', `Bearer ${token}`);
  return m;
};
const deadline = (ms) => ({ deadline: Date.now() + ms });
const unary = (client, method, req, ms = 5000) => new Promise((resolve, reject) =>
  client[method](req, md(), deadline(ms), (err, rep) => (err ? reject(err) : resolve(rep))));
const check = (what, cond, detail = '') => {
  if (!cond) {
    console.log(`FAIL ${what} ${detail}`);
    process.exit(1);
  }
  console.log(`ok ${what}`);
};

// The google.rpc.Status of a failed call, with its details decoded by their type_url.
function richStatus(err) {
  const bin = err.metadata && err.metadata.get('grpc-status-details-bin')[0];
  if (!bin) return null;
  const st = Status.decode(bin);
  const details = {};
  for (const any of st.details) {
    const name = any.type_url.split('/').pop();
    details[name] = rpc.lookupType(name).decode(any.value);
  }
  return { code: st.code, message: st.message, details };
}

async function main() {
  // GetDashboard with a deadline and a token, spread over the replicas.
  const n = Number(opt.calls);
  for (let i = 0; i < n; i++) {
    const page = await unary(dashboard, 'GetDashboard', { tenant_id: opt.tenant }, 2000);
    if (i === 0) {
      check('GetDashboard answers with freshness', page.freshness &&
            typeof page.freshness.server_time_ms === 'number', JSON.stringify(page.freshness));
    }
  }
  check(`${n} GetDashboard calls with a deadline and a token`, true);

  // Rich errors: a bad tenant id is INVALID_ARGUMENT with a BadRequest naming the field.
  try {
    await unary(dashboard, 'GetDashboard', { tenant_id: 'not a tenant id' });
    check('a bad tenant_id is refused', false);
  } catch (err) {
    check('a bad tenant_id is INVALID_ARGUMENT', err.code === grpc.status.INVALID_ARGUMENT,
          `${err.code} ${err.details}`);
    const st = richStatus(err);
    check('grpc-status-details-bin holds a google.rpc.Status', st && st.code === err.code &&
          st.message === err.details, JSON.stringify(st));
    const bad = st.details['google.rpc.BadRequest'];
    check('BadRequest names the field', bad && bad.field_violations[0].field === 'tenant_id',
          JSON.stringify(bad));
    const info = st.details['google.rpc.ErrorInfo'];
    check('ErrorInfo has a reason and the domain', info && info.reason === 'INVALID_FIELD' &&
          info.domain === 'tally.v1', JSON.stringify(info));
  }

  // WatchDashboard: the page at once, then a new one after a command.
  const call = dashboard.WatchDashboard({ tenant_id: opt.tenant, min_interval_ms: 100 }, md(),
                                        deadline(60000));
  const pages = [];
  let wake = null;
  call.on('data', (p) => { pages.push(p); if (wake) wake(); });
  call.on('error', (err) => { if (err.code !== grpc.status.CANCELLED) pages.push(err); if (wake) wake(); });
  const nextPage = (ms) => new Promise((resolve, reject) => {
    const take = () => {
      if (pages.length) { wake = null; return resolve(pages.shift()); }
      return false;
    };
    if (take() !== false) return;
    const t = setTimeout(() => { wake = null; reject(new Error('no page in time')); }, ms);
    wake = () => { clearTimeout(t); take(); };
  });
  const first = await nextPage(20000);
  check('WatchDashboard sends the page at once', first.overview && first.freshness,
        String(first));
  // let pages of earlier changes pass
  for (;;) {
    let p;
    try { p = await nextPage(700); } catch { break; }
    if (p instanceof Error) check('the watch stream stays open', false, p.message);
  }
  const before = first.overview.created_today;
  const key = `node-${process.pid}-${Date.now()}`;
  const created = await unary(commands, 'CreateComplaint', {
    tenant_id: opt.tenant, idempotency_key: key, category_id: 'c1', priority: 'PRIORITY_HIGH',
    title: 'From Node', customer_id: 'cust-node' });
  check('CreateComplaint', created.complaint_id > 0, JSON.stringify(created));
  const got = await unary(commands, 'GetComplaint', { tenant_id: opt.tenant,
                                                     complaint_id: created.complaint_id });
  check('longs arrive as numbers, enums as names',
        typeof got.complaint.complaint_id === 'number' && got.complaint.status === 'STATUS_OPEN',
        JSON.stringify(got.complaint));
  let page;
  for (;;) {
    page = await nextPage(20000);
    if (page instanceof Error) check('the watch stream stays open', false, page.message);
    if (page.overview.created_today > before) break;
  }
  check('WatchDashboard pushes a new page after a command',
        page.overview.created_today >= before + 1 && page.freshness.events_applied > 0);
  call.cancel();

  // ABORTED says the current version in ErrorInfo's metadata.
  try {
    await unary(commands, 'ChangeStatus', { tenant_id: opt.tenant,
      complaint_id: created.complaint_id, status: 'STATUS_IN_PROGRESS', expected_version: 9,
      actor: 'node' });
    check('a stale expected_version is refused', false);
  } catch (err) {
    const info = richStatus(err)?.details['google.rpc.ErrorInfo'];
    check('ABORTED carries VERSION_CONFLICT and current_version',
          err.code === grpc.status.ABORTED && info.reason === 'VERSION_CONFLICT' &&
          info.metadata.current_version === '1', JSON.stringify(info));
  }
  dashboard.close();
  commands.close();
  console.log('gateway: all checks passed');
}

main().catch((err) => {
  console.log(`FAIL ${err.stack || err}`);
  process.exit(1);
});
