// HTTP helpers that check each answer: setup() must not go on with data it did not get.

import http from 'k6/http';

export const JSON_HEADERS = { headers: { 'content-type': 'application/json' } };

/** The JSON body of `res`, which must have answered `status` (one status or a list). */
export function must(res, what, status) {
  const ok = Array.isArray(status) ? status.includes(res.status) : res.status === status;
  if (!ok) {
    throw new Error(`${what}: HTTP ${res.status} ${res.error || ''} ${String(res.body).slice(0, 300)}`);
  }
  return res.json();
}

/** `POST url` with the JSON `body`, tagged `what`, which must answer `status`. */
export function post(url, body, what, status) {
  return must(http.post(url, JSON.stringify(body), { ...JSON_HEADERS, tags: { name: what } }), what, status);
}

/** Runs requests in batches of `size` (http.batch) and checks each answer. */
export function batched(requests, what, status, size = 50) {
  const out = [];
  for (let i = 0; i < requests.length; i += size) {
    const answers = http.batch(requests.slice(i, i + size));
    answers.forEach((res) => out.push(must(res, what, status)));
  }
  return out;
}
