// k6 load test of the order saga: places orders whose outcome is known in advance and long-polls
// each one until it ends. See k6/README.md for the knobs and what the metrics mean.
//
//   k6 run k6/saga.js                         # against `sagactl up` on the default ports
//   SCENARIO=ramp RATE=50 DURATION=1m k6 run k6/saga.js
//
// The parts live in k6/lib/: config.js (the environment and the k6 options), setup.js (the data
// every order relies on), plan.js (what each order is and must become), order.js (one order per
// iteration, and the saga metrics), summary.js (the end-of-run summary).

import { options as configured } from './lib/config.js';
import { runOrder } from './lib/order.js';
import { prepare } from './lib/setup.js';
import { summarize } from './lib/summary.js';

export const options = configured;

export function setup() {
  return prepare();
}

export default function (data) {
  runOrder(data);
}

export function handleSummary(data) {
  return summarize(data);
}
