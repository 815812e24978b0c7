// setup(): the data every order relies on (products, a coupon, charged users, coupon holders).

import http from 'k6/http';
import { sleep } from 'k6';

import {
  BALANCE_URL, COUPON_HOLDERS, COUPON_URL, DISCOUNT, DURATION, MIX, ORDER_URL, POOR_BALANCE,
  POOR_USERS, PRICE, PRODUCT_URL, RATE, RICH_BALANCE, RICH_USERS, SCENARIO, SMALL_STOCK, num,
} from './config.js';
import { JSON_HEADERS, batched, post } from './http.js';

// A public read of each service that answers 200 once it serves: through the gateway a
// service's own /ready is not reachable (an operator endpoint, kept off the gateway).
const PROBES = () => [
  `${ORDER_URL}/orders?user_id=1`,
  `${PRODUCT_URL}/products`,
  `${COUPON_URL}/users/1/coupons`,
  `${BALANCE_URL}/balances/1/history`,
];

function waitReady() {
  const deadline = Date.now() + 60000;
  for (const url of PROBES()) {
    for (;;) {
      const res = http.get(url, { tags: { name: 'setup ready' }, responseCallback: http.expectedStatuses({ min: 200, max: 599 }) });
      if (res.status === 200) break;
      if (Date.now() > deadline) throw new Error(`${url} is not 200 (last: ${res.status} ${res.error || ''})`);
      sleep(0.5);
    }
  }
}

/** Charge requests giving each of `users` `amount`. */
const charges = (users, amount) => users.map((u) => ({
  method: 'POST',
  url: `${BALANCE_URL}/balances/${u}/charge`,
  body: JSON.stringify({ amount }),
  params: { ...JSON_HEADERS, tags: { name: 'setup POST /balances/{id}/charge' } },
}));

/** Issues coupon `couponId` to each of `users`; the answers, in order. */
const issueTo = (couponId, users) => batched(users.map((u) => ({
  method: 'POST',
  url: `${COUPON_URL}/coupons/${couponId}/issue`,
  body: JSON.stringify({ user_id: u }),
  params: { ...JSON_HEADERS, tags: { name: 'setup POST /coupons/{id}/issue' } },
})), 'issue', 201);

export function prepare() {
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

  batched(charges(rich.concat(holders, [victim]), RICH_BALANCE), 'charge', 200);
  batched(charges(poor, POOR_BALANCE), 'charge', 200);
  const issued = issueTo(coupon.coupon_id, holders.concat([victim]));
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
