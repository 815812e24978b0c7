// k6 load test of the order saga: places orders whose outcome is known in advance and long-polls
// each one until it ends. See k6/README.md for the knobs and what the metrics mean.
//
//   k6 run k6/saga.js                         # against `sagactl up` on the default ports
//   SCENARIO=ramp RATE=50 DURATION=1m k6 run k6/saga.js

import http from 'k6/http';
import exec from 'k6/execution';
import { sleep } from 'k6';
import { Counter, Rate, Trend } from 'k6/metrics';

// ---------------------------------------------------------------------------------------------
// Configuration (all from the environment)

const env = (name, fallback) => {
  const value = __ENV[name];
  return value === undefined || value === '' ? fallback : value;
};
const num = (name, fallback) => {
  const raw = env(name, undefined);
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value)) throw new Error(`${name}=${raw} is not a number`);
  return value;
};

const ORDER_URL = env('ORDER_URL', 'http://127.0.0.1:8081');
const PRODUCT_URL = env('PRODUCT_URL', 'http://127.0.0.1:8082');
const COUPON_URL = env('COUPON_URL', 'http://127.0.0.1:8083');
const BALANCE_URL = env('BALANCE_URL', 'http://127.0.0.1:8084');

const SCENARIO = env('SCENARIO', 'constant');
const RATE = num('RATE', 20);
const DURATION = env('DURATION', '30s');
const RAMP_HOLD = env('RAMP_HOLD', '10s'); // ramp: time held at RATE after the ramp
const WAIT_MS = num('WAIT_MS', 10000); // wait_ms of each long poll
const E2E_TIMEOUT_MS = num('E2E_TIMEOUT_MS', 60000); // give up on one order after this
const P95_MS = num('P95_MS', 2000);
const HTTP_FAILED_MAX = num('HTTP_FAILED_MAX', 0.01);
const UNEXPECTED_MAX = num('UNEXPECTED_MAX', 0.01);
const RICH_USERS = num('RICH_USERS', 50);
const POOR_USERS = num('POOR_USERS', 5);
const SMALL_STOCK = num('SMALL_STOCK', 3);
const COUPON_EVERY = num('COUPON_EVERY', 4); // every Nth successful order uses a coupon (0: none)
const PRICE = '10.00';
const DISCOUNT = '5.00';
const RICH_BALANCE = '1000000000.00';
const POOR_BALANCE = '1.00'; // less than one item costs
const UNKNOWN_USER_COUPON = 9000000000000; // no such user coupon

// MIX = succeed,out-of-stock,bad-coupon,poor-balance (weights, need not add up to 100)
const OUTCOMES = ['succeed', 'out_of_stock', 'bad_coupon', 'poor_balance'];
const MIX = env('MIX', '80,10,5,5').split(',').map((w) => Number(w.trim()));
if (MIX.length !== 4 || MIX.some((w) => !Number.isFinite(w) || w < 0) || MIX.every((w) => w === 0)) {
  throw new Error(`MIX must be four non-negative weights (succeed,out_of_stock,bad_coupon,poor_balance), got ${env('MIX')}`);
}
const MIX_TOTAL = MIX.reduce((a, b) => a + b, 0);

/** Seconds in a k6 duration such as "30s", "1m30s", "500ms", "1h". */
function seconds(text) {
  let total = 0;
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h)/g;
  let match;
  let consumed = '';
  while ((match = re.exec(text)) !== null) {
    const value = Number(match[1]);
    total += { ms: value / 1000, s: value, m: value * 60, h: value * 3600 }[match[2]];
    consumed += match[0];
  }
  if (consumed !== text) throw new Error(`cannot read duration ${text}`);
  return total;
}

// How many iterations may run at most: sizes the pool of coupon holders made in setup().
const EXPECTED_ITERATIONS = Math.ceil(
  SCENARIO === 'ramp'
    ? RATE * (seconds(DURATION) / 2 + seconds(RAMP_HOLD))
    : RATE * seconds(DURATION),
);
const COUPON_HOLDERS = COUPON_EVERY > 0
  ? Math.ceil((EXPECTED_ITERATIONS * 1.1 + 10) / COUPON_EVERY)
  : 0;

// Each iteration holds a VU for about one saga, so allocate for RATE x (a few seconds).
const PRE_VUS = num('PRE_VUS', Math.max(20, Math.ceil(RATE * 3)));
const MAX_VUS = num('MAX_VUS', Math.max(100, Math.ceil(RATE * 15)));

const scenarios = {
  constant: {
    executor: 'constant-arrival-rate',
    rate: RATE,
    timeUnit: '1s',
    duration: DURATION,
    preAllocatedVUs: PRE_VUS,
    maxVUs: MAX_VUS,
    gracefulStop: `${Math.ceil(E2E_TIMEOUT_MS / 1000) + 5}s`,
  },
  ramp: {
    executor: 'ramping-arrival-rate',
    startRate: 1,
    timeUnit: '1s',
    stages: [
      { target: RATE, duration: DURATION },
      { target: RATE, duration: RAMP_HOLD },
    ],
    preAllocatedVUs: PRE_VUS,
    maxVUs: MAX_VUS,
    gracefulStop: `${Math.ceil(E2E_TIMEOUT_MS / 1000) + 5}s`,
  },
};
if (!scenarios[SCENARIO]) throw new Error(`SCENARIO must be constant or ramp, got ${SCENARIO}`);

export const options = {
  scenarios: { [SCENARIO]: scenarios[SCENARIO] },
  setupTimeout: '180s',
  summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max', 'count'],
  thresholds: {
    http_req_failed: [`rate<${HTTP_FAILED_MAX}`],
    saga_unexpected: [`rate<${UNEXPECTED_MAX}`],
    saga_e2e_ms: [`p(95)<${P95_MS}`],
    // No limits: listed so that the summary shows the latency of each kind of order.
    'saga_e2e_ms{expect:succeed}': [],
    'saga_e2e_ms{expect:out_of_stock}': [],
    'saga_e2e_ms{expect:bad_coupon}': [],
    'saga_e2e_ms{expect:poor_balance}': [],
    'http_req_duration{name:POST /orders}': [],
  },
};

// ---------------------------------------------------------------------------------------------
// Metrics

const e2e = new Trend('saga_e2e_ms', true); // POST /orders sent → terminal status seen
const completed = new Counter('saga_completed');
const failed = new Counter('saga_failed');
const cancelled = new Counter('saga_cancelled'); // never expected here
const timedOut = new Counter('saga_timed_out'); // not terminal within E2E_TIMEOUT_MS
const unexpected = new Rate('saga_unexpected'); // per order: not the outcome its mix chose

const JSON_HEADERS = { headers: { 'content-type': 'application/json' } };

// ---------------------------------------------------------------------------------------------
// setup(): the data every order relies on

function must(res, what, status) {
  const ok = Array.isArray(status) ? status.includes(res.status) : res.status === status;
  if (!ok) {
    throw new Error(`${what}: HTTP ${res.status} ${res.error || ''} ${String(res.body).slice(0, 300)}`);
  }
  return res.json();
}

function post(url, body, what, status) {
  return must(http.post(url, JSON.stringify(body), { ...JSON_HEADERS, tags: { name: what } }), what, status);
}

/** Runs requests in batches of `size` (http.batch) and checks each answer. */
function batched(requests, what, status, size = 50) {
  const out = [];
  for (let i = 0; i < requests.length; i += size) {
    const answers = http.batch(requests.slice(i, i + size));
    answers.forEach((res) => out.push(must(res, what, status)));
  }
  return out;
}

function waitReady() {
  const deadline = Date.now() + 60000;
  for (const base of [ORDER_URL, PRODUCT_URL, COUPON_URL, BALANCE_URL]) {
    for (;;) {
      const res = http.get(`${base}/ready`, { tags: { name: 'setup /ready' }, responseCallback: http.expectedStatuses(200, 503) });
      if (res.status === 200) break;
      if (Date.now() > deadline) throw new Error(`${base}/ready is not 200 (last: ${res.status} ${res.error || ''})`);
      sleep(0.5);
    }
  }
}

export function setup() {
  waitReady();
  // Fresh user ids per run, so that balances and coupons of earlier runs do not matter.
  const userBase = num('USER_BASE', (Math.floor(Date.now() / 1000) % 1000000) * 100000 + 1);

  const big = post(`${PRODUCT_URL}/products`, { name: 'k6 plenty', price: PRICE, stock: 1000000000 }, 'setup POST /products', 201);
  const small = post(`${PRODUCT_URL}/products`, { name: 'k6 scarce', price: PRICE, stock: SMALL_STOCK }, 'setup POST /products', 201);
  const coupon = post(
    `${COUPON_URL}/coupons`,
    { name: 'k6 fixed', discount_type: 'FIXED', discount_value: DISCOUNT, total_quantity: 1000000 },
    'setup POST /coupons',
    201,
  );

  let next = userBase;
  const take = (n) => Array.from({ length: n }, () => next++);
  const rich = take(RICH_USERS);
  const poor = take(POOR_USERS);
  const holders = take(COUPON_HOLDERS); // each uses its own coupon once
  const [victim] = take(1); // holds a coupon that others try to use

  const charge = (users, amount) => users.map((u) => ({
    method: 'POST',
    url: `${BALANCE_URL}/balances/${u}/charge`,
    body: JSON.stringify({ amount }),
    params: { ...JSON_HEADERS, tags: { name: 'setup POST /balances/{id}/charge' } },
  }));
  batched(charge(rich.concat(holders, [victim]), RICH_BALANCE), 'charge', 200);
  batched(charge(poor, POOR_BALANCE), 'charge', 200);

  const issued = batched(holders.concat([victim]).map((u) => ({
    method: 'POST',
    url: `${COUPON_URL}/coupons/${coupon.coupon_id}/issue`,
    body: JSON.stringify({ user_id: u }),
    params: { ...JSON_HEADERS, tags: { name: 'setup POST /coupons/{id}/issue' } },
  })), 'issue', 201);
  const victimCoupon = issued.pop().user_coupon_id;

  const data = {
    bigProduct: big.product_id,
    smallProduct: small.product_id,
    couponId: coupon.coupon_id,
    rich,
    poor,
    holders: holders.map((u, i) => ({ user: u, userCoupon: issued[i].user_coupon_id })),
    victim,
    victimCoupon,
  };
  console.log(
    `setup: products ${data.bigProduct} (plenty) and ${data.smallProduct} (stock ${SMALL_STOCK}), ` +
      `FIXED coupon ${data.couponId} (${DISCOUNT}) issued to ${holders.length + 1} users, ` +
      `${rich.length} rich and ${poor.length} poor users from id ${userBase}; ` +
      `scenario ${SCENARIO}, rate ${RATE}/s, duration ${DURATION}, mix ${MIX.join(',')}`,
  );
  return data;
}

// ---------------------------------------------------------------------------------------------
// One order per iteration

const pick = (list) => list[Math.floor(Math.random() * list.length)];

function chooseOutcome() {
  let roll = Math.random() * MIX_TOTAL;
  for (let i = 0; i < OUTCOMES.length; i += 1) {
    roll -= MIX[i];
    if (roll < 0) return OUTCOMES[i];
  }
  return OUTCOMES[OUTCOMES.findIndex((_, i) => MIX[i] > 0)];
}

/** The order to place and what must become of it. */
function plan(data, outcome) {
  const one = (product, quantity) => ({ product_id: product, quantity });
  switch (outcome) {
    case 'succeed': {
      // Every COUPON_EVERY-th iteration of the test pays with a coupon of its own.
      const n = exec.scenario.iterationInTest;
      const slot = COUPON_EVERY > 0 && n % COUPON_EVERY === 0 ? n / COUPON_EVERY : -1;
      if (slot >= 0 && slot < data.holders.length) {
        const h = data.holders[slot];
        return {
          body: { user_id: h.user, items: [one(data.bigProduct, 2)], user_coupon_id: h.userCoupon },
          status: 'COMPLETED',
          paid: '15.00', // 2 x 10.00 - 5.00
          variant: 'coupon',
        };
      }
      return {
        body: { user_id: pick(data.rich), items: [one(data.bigProduct, 1)], user_coupon_id: null },
        status: 'COMPLETED',
        paid: '10.00',
        variant: 'plain',
      };
    }
    case 'out_of_stock':
      // More of the scarce product than it ever has, next to one the big product can give:
      // the whole order must fail and nothing be reserved.
      return {
        body: {
          user_id: pick(data.rich),
          items: [one(data.bigProduct, 1), one(data.smallProduct, SMALL_STOCK + 1)],
          user_coupon_id: null,
        },
        status: 'FAILED',
        codes: ['insufficient_stock'],
      };
    case 'bad_coupon': {
      const foreign = Math.random() < 0.5;
      return {
        body: {
          user_id: pick(data.rich),
          items: [one(data.bigProduct, 1)],
          user_coupon_id: foreign ? data.victimCoupon : UNKNOWN_USER_COUPON,
        },
        status: 'FAILED',
        codes: [foreign ? 'coupon_not_owned' : 'coupon_not_found'],
        variant: foreign ? 'foreign' : 'unknown',
      };
    }
    case 'poor_balance':
      return {
        body: { user_id: pick(data.poor), items: [one(data.bigProduct, 1)], user_coupon_id: null },
        status: 'FAILED',
        codes: ['insufficient_balance'],
      };
    default:
      throw new Error(outcome);
  }
}

const money = (value) => (value === null || value === undefined ? null : Number(value).toFixed(2));

let reported = 0;
function report(message) {
  // A few per VU, so that a broken run shows why without drowning the output.
  if (reported < 5) console.warn(message);
  reported += 1;
}

export default function (data) {
  const outcome = chooseOutcome();
  const want = plan(data, outcome);
  const tags = { expect: outcome };

  const started = Date.now();
  const placed = http.post(`${ORDER_URL}/orders`, JSON.stringify(want.body), {
    ...JSON_HEADERS,
    tags: { name: 'POST /orders', expect: outcome },
  });
  if (placed.status !== 202) {
    report(`POST /orders ${JSON.stringify(want.body)}: HTTP ${placed.status} ${placed.error || ''} ${String(placed.body).slice(0, 200)}`);
    unexpected.add(1, tags);
    return;
  }
  const id = placed.json('order_id');

  let order = null;
  for (;;) {
    const res = http.get(`${ORDER_URL}/orders/${id}?wait_ms=${WAIT_MS}`, {
      tags: { name: 'GET /orders/{id}?wait_ms', expect: outcome },
      timeout: `${WAIT_MS + 30000}ms`,
    });
    if (res.status !== 200) {
      report(`GET /orders/${id}: HTTP ${res.status} ${res.error || ''} ${String(res.body).slice(0, 200)}`);
      unexpected.add(1, tags);
      return;
    }
    order = res.json();
    if (['COMPLETED', 'FAILED', 'CANCELLED'].includes(order.status)) break;
    if (Date.now() - started > E2E_TIMEOUT_MS) {
      report(`order ${id} (${outcome}) still ${order.status} after ${E2E_TIMEOUT_MS} ms`);
      timedOut.add(1, tags);
      unexpected.add(1, tags);
      return;
    }
  }
  e2e.add(Date.now() - started, tags);

  if (order.status === 'COMPLETED') completed.add(1, tags);
  else if (order.status === 'FAILED') failed.add(1, tags);
  else cancelled.add(1, tags);

  const problems = [];
  if (order.status !== want.status) problems.push(`status ${order.status}, expected ${want.status}`);
  if (want.codes && order.status === 'FAILED' && !want.codes.includes(order.failure_code)) {
    problems.push(`failure_code ${order.failure_code}, expected ${want.codes.join('|')}`);
  }
  if (want.paid && order.status === 'COMPLETED' && money(order.paid_amount) !== want.paid) {
    problems.push(`paid ${order.paid_amount}, expected ${want.paid}`);
  }
  if (problems.length > 0) {
    report(`order ${id} (${outcome}${want.variant ? `/${want.variant}` : ''}): ${problems.join('; ')}; ` +
      `reason: ${order.failure_reason}`);
  }
  unexpected.add(problems.length > 0, tags);
}

// ---------------------------------------------------------------------------------------------
// Summary

function fmtMs(v) {
  if (v === undefined || v === null) return '-';
  return v >= 1000 ? `${(v / 1000).toFixed(2)}s` : `${v.toFixed(1)}ms`;
}
const pct = (v) => (v === undefined ? '-' : `${(v * 100).toFixed(2)}%`);

function trendLine(label, metric) {
  if (!metric) return `  ${label.padEnd(34)} (no data)`;
  const v = metric.values;
  return `  ${label.padEnd(34)} n=${String(v.count ?? '-').padEnd(6)} avg=${fmtMs(v.avg).padEnd(9)} ` +
    `p50=${fmtMs(v.med).padEnd(9)} p90=${fmtMs(v['p(90)']).padEnd(9)} p95=${fmtMs(v['p(95)']).padEnd(9)} ` +
    `p99=${fmtMs(v['p(99)']).padEnd(9)} max=${fmtMs(v.max)}`;
}

export function handleSummary(data) {
  const m = data.metrics;
  const count = (name) => (m[name] ? m[name].values.count : 0);
  const lines = [];
  lines.push('');
  lines.push(`order saga load test — scenario ${SCENARIO}, rate ${RATE}/s, duration ${DURATION}, mix ${MIX.join(',')} (succeed,out_of_stock,bad_coupon,poor_balance)`);
  lines.push('');
  lines.push('orders');
  lines.push(`  iterations                         ${count('iterations')} (dropped: ${count('dropped_iterations')})`);
  lines.push(`  saga_completed                     ${count('saga_completed')}`);
  lines.push(`  saga_failed                        ${count('saga_failed')}`);
  if (count('saga_cancelled')) lines.push(`  saga_cancelled                     ${count('saga_cancelled')}`);
  if (count('saga_timed_out')) lines.push(`  saga_timed_out                     ${count('saga_timed_out')}`);
  const un = m.saga_unexpected;
  lines.push(`  saga_unexpected                    ${pct(un && un.values.rate)} (${un ? un.values.passes : 0} of ${un ? un.values.passes + un.values.fails : 0})`);
  const hf = m.http_req_failed;
  lines.push(`  http_req_failed                    ${pct(hf && hf.values.rate)} (${hf ? hf.values.passes : 0} of ${hf ? hf.values.passes + hf.values.fails : 0} requests)`);
  lines.push('');
  lines.push('end to end (POST /orders → terminal status)');
  lines.push(trendLine('saga_e2e_ms', m.saga_e2e_ms));
  for (const o of OUTCOMES) lines.push(trendLine(`  expect:${o}`, m[`saga_e2e_ms{expect:${o}}`]));
  lines.push(trendLine('http_req_duration POST /orders', m['http_req_duration{name:POST /orders}']));
  lines.push('');
  lines.push('thresholds');
  let allOk = true;
  for (const [name, metric] of Object.entries(m)) {
    if (!metric.thresholds) continue;
    for (const [expr, result] of Object.entries(metric.thresholds)) {
      allOk = allOk && result.ok;
      lines.push(`  ${result.ok ? 'PASS' : 'FAIL'}  ${name}: ${expr}`);
    }
  }
  lines.push(`  => ${allOk ? 'all thresholds passed' : 'THRESHOLDS FAILED'}`);
  lines.push('');

  const out = { stdout: lines.join('\n') + '\n' };
  const json = env('SUMMARY_JSON', '');
  if (json !== '' && json !== '0' && json !== 'false') {
    const path = /\.json$/.test(json) ? json : 'k6/results/summary.json';
    out[path] = JSON.stringify(data, null, 2);
  }
  return out;
}
