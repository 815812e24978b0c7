// What each iteration orders and what must become of it, chosen by MIX.

import exec from 'k6/execution';

import { COUPON_EVERY, MIX, MIX_TOTAL, OUTCOMES, SMALL_STOCK, UNKNOWN_USER_COUPON } from './config.js';

const pick = (list) => list[Math.floor(Math.random() * list.length)];
const one = (product, quantity) => ({ product_id: product, quantity });

export function chooseOutcome() {
  let roll = Math.random() * MIX_TOTAL;
  for (let i = 0; i < OUTCOMES.length; i += 1) {
    roll -= MIX[i];
    if (roll < 0) return OUTCOMES[i];
  }
  return OUTCOMES[OUTCOMES.findIndex((_, i) => MIX[i] > 0)];
}

function succeed(data) {
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

function badCoupon(data) {
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

/** The order to place and what must become of it. */
export function plan(data, outcome) {
  switch (outcome) {
    case 'succeed':
      return succeed(data);
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
    case 'bad_coupon':
      return badCoupon(data);
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
