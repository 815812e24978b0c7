//! The API contract, from outside: the running services against their OpenAPI documents
//! ([`contract`]), schemathesis fuzzing them ([`fuzz`]), and the gateway's API page in a real
//! browser ([`page`]). One test binary: each would link the whole system again.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

mod system;

mod api {
    mod contract;
    mod fuzz;
    mod page;
}
