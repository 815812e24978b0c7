// handleSummary(): the run in a few lines (orders, end-to-end latency per kind, thresholds), and
// k6's full summary as JSON when SUMMARY_JSON asks for it.

import { DURATION, MIX, OUTCOMES, RATE, SCENARIO, env } from './config.js';

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

function orderLines(m) {
  const count = (name) => (m[name] ? m[name].values.count : 0);
  const lines = ['orders'];
  lines.push(`  iterations                         ${count('iterations')} (dropped: ${count('dropped_iterations')})`);
  lines.push(`  saga_completed                     ${count('saga_completed')}`);
  lines.push(`  saga_failed                        ${count('saga_failed')}`);
  if (count('saga_cancelled')) lines.push(`  saga_cancelled                     ${count('saga_cancelled')}`);
  if (count('saga_timed_out')) lines.push(`  saga_timed_out                     ${count('saga_timed_out')}`);
  const un = m.saga_unexpected;
  lines.push(`  saga_unexpected                    ${pct(un && un.values.rate)} (${un ? un.values.passes : 0} of ${un ? un.values.passes + un.values.fails : 0})`);
  const hf = m.http_req_failed;
  lines.push(`  http_req_failed                    ${pct(hf && hf.values.rate)} (${hf ? hf.values.passes : 0} of ${hf ? hf.values.passes + hf.values.fails : 0} requests)`);
  return lines;
}

function thresholdLines(m) {
  const lines = ['thresholds'];
  let allOk = true;
  for (const [name, metric] of Object.entries(m)) {
    if (!metric.thresholds) continue;
    for (const [expr, result] of Object.entries(metric.thresholds)) {
      allOk = allOk && result.ok;
      lines.push(`  ${result.ok ? 'PASS' : 'FAIL'}  ${name}: ${expr}`);
    }
  }
  lines.push(`  => ${allOk ? 'all thresholds passed' : 'THRESHOLDS FAILED'}`);
  return lines;
}

export function summarize(data) {
  const m = data.metrics;
  const lines = [];
  lines.push('');
  lines.push(`order saga load test — scenario ${SCENARIO}, rate ${RATE}/s, duration ${DURATION}, mix ${MIX.join(',')} (succeed,out_of_stock,bad_coupon,poor_balance)`);
  lines.push('');
  lines.push(...orderLines(m));
  lines.push('');
  lines.push('end to end (POST /orders → terminal status)');
  lines.push(trendLine('saga_e2e_ms', m.saga_e2e_ms));
  for (const o of OUTCOMES) lines.push(trendLine(`  expect:${o}`, m[`saga_e2e_ms{expect:${o}}`]));
  lines.push(trendLine('http_req_duration POST /orders', m['http_req_duration{name:POST /orders}']));
  lines.push('');
  lines.push(...thresholdLines(m));
  lines.push('');

  const out = { stdout: lines.join('\n') + '\n' };
  const json = env('SUMMARY_JSON', '');
  if (json !== '' && json !== '0' && json !== 'false') {
    const path = /\.json$/.test(json) ? json : 'k6/results/summary.json';
    out[path] = JSON.stringify(data, null, 2);
  }
  return out;
}
