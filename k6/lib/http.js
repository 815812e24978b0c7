// HTTP helpers that check each answer: setup() must not go on with data it did not get.

import http from 'k6/http';
import { sleep } from 'k6';

export const JSON_HEADERS = { headers: { 'content-type': 'application/json' } };

/** The JSON body of `res`, which must have answered `status` (one status or a list). */
export function must(res, what, status) {
  const ok = Array.isArray(status) ? status.includes(res.status) : res.status === status;
  if (!ok) {
    throw new Error(`${what}: HTTP ${res.status} ${res.error || ''} ${String(res.body).slice(0, 300)}`);
  }
  return res.json();
}

// setup() sends as fast as it can, which the gateway's per-client rate limit (GATEWAY_RATE_LIMIT)
// may refuse with a 429. A refused request never reached its service, so it is sent again after
// the Retry-After, and a 429 is not counted as a failed request.
const RETRIES = 20;
const SETUP_STATUSES = http.expectedStatuses({ min: 200, max: 399 }, 429);
const retryAfter = (res) => {
  const seconds = Number(res.headers['Retry-After']);
  return Number.isFinite(seconds) && seconds > 0 ? seconds : 1;
};

/** `POST url` with the JSON `body`, tagged `what`, which must answer `status`. */
export function post(url, body, what, status) {
  const params = { ...JSON_HEADERS, tags: { name: what }, responseCallback: SETUP_STATUSES };
  let res = http.post(url, JSON.stringify(body), params);
  for (let attempt = 0; res.status === 429 && attempt < RETRIES; attempt += 1) {
    sleep(retryAfter(res));
    res = http.post(url, JSON.stringify(body), params);
  }
  return must(res, what, status);
}

/** Runs requests in batches of `size` (http.batch) and checks each answer. */
export function batched(requests, what, status, size = 50) {
  const out = [];
  for (let i = 0; i < requests.length; i += size) {
    const batch = requests.slice(i, i + size).map((request) => ({
      ...request,
      params: { ...request.params, responseCallback: SETUP_STATUSES },
    }));
    const answers = http.batch(batch);
    for (let attempt = 0; attempt < RETRIES; attempt += 1) {
      const limited = answers.flatMap((res, j) => (res.status === 429 ? [j] : []));
      if (limited.length === 0) break;
      sleep(retryAfter(answers[limited[0]]));
      const again = http.batch(limited.map((j) => batch[j]));
      limited.forEach((j, k) => { answers[j] = again[k]; });
    }
    answers.forEach((res) => out.push(must(res, what, status)));
  }
  return out;
}
