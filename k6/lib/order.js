// One order per iteration: place it, long-poll it until it ends, check it ended as planned.

import http from 'k6/http';
import { Counter, Rate, Trend } from 'k6/metrics';

import { E2E_TIMEOUT_MS, ORDER_URL, WAIT_MS } from './config.js';
import { JSON_HEADERS } from './http.js';
import { chooseOutcome, plan } from './plan.js';

const e2e = new Trend('saga_e2e_ms', true); // POST /orders sent → terminal status seen
const completed = new Counter('saga_completed');
const failed = new Counter('saga_failed');
const cancelled = new Counter('saga_cancelled'); // never expected here
const timedOut = new Counter('saga_timed_out'); // not terminal within E2E_TIMEOUT
const unexpected = new Rate('saga_unexpected'); // per order: not the outcome its mix chose

const money = (value) => (value === null || value === undefined ? null : Number(value).toFixed(2));

let reported = 0;
function report(message) {
  // A few per VU, so that a broken run shows why without drowning the output.
  if (reported < 5) console.warn(message);
  reported += 1;
}

/** `POST /orders` of `want.body`; the order id, or null (counted unexpected) if not accepted. */
function place(want, outcome, tags) {
  const placed = http.post(`${ORDER_URL}/orders`, JSON.stringify(want.body), {
    ...JSON_HEADERS,
    tags: { name: 'POST /orders', expect: outcome },
  });
  if (placed.status !== 202) {
    report(`POST /orders ${JSON.stringify(want.body)}: HTTP ${placed.status} ${placed.error || ''} ${String(placed.body).slice(0, 200)}`);
    unexpected.add(1, tags);
    return null;
  }
  return placed.json('order_id');
}

/** Long-polls order `id` until it ends; the order, or null (counted) on a failed poll or timeout. */
function waitTerminal(id, outcome, tags, started) {
  for (;;) {
    const res = http.get(`${ORDER_URL}/orders/${id}?wait_ms=${WAIT_MS}`, {
      tags: { name: 'GET /orders/{id}?wait_ms', expect: outcome },
      timeout: `${WAIT_MS + 30000}ms`,
    });
    if (res.status !== 200) {
      report(`GET /orders/${id}: HTTP ${res.status} ${res.error || ''} ${String(res.body).slice(0, 200)}`);
      unexpected.add(1, tags);
      return null;
    }
    const order = res.json();
    if (['COMPLETED', 'FAILED', 'CANCELLED'].includes(order.status)) return order;
    if (Date.now() - started > E2E_TIMEOUT_MS) {
      report(`order ${id} (${outcome}) still ${order.status} after ${E2E_TIMEOUT_MS} ms`);
      timedOut.add(1, tags);
      unexpected.add(1, tags);
      return null;
    }
  }
}

/** How `order` differs from what was planned (`want`): none if it ended as it should. */
function problems(order, want) {
  const found = [];
  if (order.status !== want.status) found.push(`status ${order.status}, expected ${want.status}`);
  if (want.codes && order.status === 'FAILED' && !want.codes.includes(order.failure_code)) {
    found.push(`failure_code ${order.failure_code}, expected ${want.codes.join('|')}`);
  }
  if (want.paid && order.status === 'COMPLETED' && money(order.paid_amount) !== want.paid) {
    found.push(`paid ${order.paid_amount}, expected ${want.paid}`);
  }
  return found;
}

export function runOrder(data) {
  const outcome = chooseOutcome();
  const want = plan(data, outcome);
  const tags = { expect: outcome };

  const started = Date.now();
  const id = place(want, outcome, tags);
  if (id === null) return;
  const order = waitTerminal(id, outcome, tags, started);
  if (order === null) return;
  e2e.add(Date.now() - started, tags);

  if (order.status === 'COMPLETED') completed.add(1, tags);
  else if (order.status === 'FAILED') failed.add(1, tags);
  else cancelled.add(1, tags);

  const found = problems(order, want);
  if (found.length > 0) {
    report(`order ${id} (${outcome}${want.variant ? `/${want.variant}` : ''}): ${found.join('; ')}; ` +
      `reason: ${order.failure_reason}`);
  }
  unexpected.add(found.length > 0, tags);
}
