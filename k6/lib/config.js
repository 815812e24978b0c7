// Configuration, all from the environment (see k6/README.md for every knob), and the k6
// options it implies: the scenario and the thresholds.

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

export { env, num };

// Every service through the API gateway (`sagactl up` runs it on 8080), unless its own URL is set.
export const GATEWAY_URL = env('GATEWAY_URL', 'http://127.0.0.1:8080');
export const ORDER_URL = env('ORDER_URL', GATEWAY_URL);
export const PRODUCT_URL = env('PRODUCT_URL', GATEWAY_URL);
export const COUPON_URL = env('COUPON_URL', GATEWAY_URL);
export const BALANCE_URL = env('BALANCE_URL', GATEWAY_URL);

export const SCENARIO = env('SCENARIO', 'constant');
export const RATE = num('RATE', 20);
export const DURATION = env('DURATION', '30s');
export const RAMP_HOLD = env('RAMP_HOLD', '10s'); // ramp: time held at RATE after the ramp
// Durations take the one format of the whole project: 500ms, 10s, 1m.
for (const [old, renamed] of [['WAIT_MS', 'WAIT'], ['E2E_TIMEOUT_MS', 'E2E_TIMEOUT'], ['P95_MS', 'P95']]) {
  if (env(old, undefined) !== undefined) {
    throw new Error(`${old} was renamed ${renamed}, which takes a duration such as 500ms, 10s or 1m`);
  }
}
const millis = (name, fallback) => Math.round(seconds(env(name, fallback)) * 1000);
export const WAIT_MS = millis('WAIT', '10s'); // wait_ms of each long poll
export const E2E_TIMEOUT_MS = millis('E2E_TIMEOUT', '60s'); // give up on one order after this
const P95_MS = millis('P95', '2s');
const HTTP_FAILED_MAX = num('HTTP_FAILED_MAX', 0.01);
const UNEXPECTED_MAX = num('UNEXPECTED_MAX', 0.01);
export const RICH_USERS = num('RICH_USERS', 50);
export const POOR_USERS = num('POOR_USERS', 5);
export const SMALL_STOCK = num('SMALL_STOCK', 3);
export const COUPON_EVERY = num('COUPON_EVERY', 4); // every Nth successful order uses a coupon (0: none)
export const PRICE = '10.00';
export const DISCOUNT = '5.00';
export const RICH_BALANCE = '1000000000.00';
export const POOR_BALANCE = '1.00'; // less than one item costs
export const UNKNOWN_USER_COUPON = 9000000000000; // no such user coupon

// MIX = succeed,out-of-stock,bad-coupon,poor-balance (weights, need not add up to 100)
export const OUTCOMES = ['succeed', 'out_of_stock', 'bad_coupon', 'poor_balance'];
export const MIX = env('MIX', '80,10,5,5').split(',').map((w) => Number(w.trim()));
if (MIX.length !== 4 || MIX.some((w) => !Number.isFinite(w) || w < 0) || MIX.every((w) => w === 0)) {
  throw new Error(`MIX must be four non-negative weights (succeed,out_of_stock,bad_coupon,poor_balance), got ${env('MIX')}`);
}
export const MIX_TOTAL = MIX.reduce((a, b) => a + b, 0);

/** Seconds in a duration such as "30s", "1m30s", "500ms", "1h". */
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
export const COUPON_HOLDERS = COUPON_EVERY > 0
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
