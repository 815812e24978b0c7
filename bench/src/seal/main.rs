//! `seal-bench`: what sealing and opening cost per event, on this machine's CPU, for the saga's
//! own events at their real size: sealing (encrypt the payload, sign) once at the producer,
//! opening (verify, decrypt) at each consumer. Run it with `bash bench/run-seal.sh`; the one knob
//! is `SEAL_BENCH_EVENTS` (events per type, default 20,000). Single-threaded and in process:
//! no broker or database is involved, so the figures are the cryptography's and nothing else's.

use std::time::{Duration, Instant};

use anyhow::Context;
use bench::machine::Machine;
use bench::params::{Common, Knobs};
use bench::report::{self, Header, Results, Section, Table};
use rust_decimal::Decimal;
use serde::Serialize;
use shared::envelope::Envelope;
use shared::events::{
    CouponProcessed, OrderCommand, OrderLine, OrderProcessingStarted, PricedItem,
};
use shared::seal::{KeySettings, Keyring};

#[derive(Debug, Serialize)]
struct Figures {
    event_type: String,
    plain_bytes: usize,
    sealed_bytes: usize,
    seal_us: f64,
    open_us: f64,
}

#[derive(Debug, Serialize)]
struct SealResults {
    header: Header,
    events: usize,
    figures: Vec<Figures>,
}

impl Results for SealResults {
    const NAME: &'static str = "seal";
    const TITLE: &'static str = "Sealing and opening events";
    const README_ANCHOR: &'static str = "the-cost-of-sealed-events";

    fn header(&self) -> &Header {
        &self.header
    }

    fn summary(&self) -> Vec<Table> {
        let mut table = Table::new(
            None,
            &["event", "plain bytes", "sealed bytes", "seal µs", "open µs"],
        );
        for f in &self.figures {
            table.row(vec![
                f.event_type.clone(),
                f.plain_bytes.to_string(),
                f.sealed_bytes.to_string(),
                format!("{:.1}", f.seal_us),
                format!("{:.1}", f.open_us),
            ]);
        }
        vec![table]
    }

    fn sections(&self) -> Vec<Section> {
        Vec::new()
    }
}

/// The smallest and the largest saga events as a three-line order makes them.
fn samples() -> anyhow::Result<Vec<Envelope>> {
    let command = OrderCommand {
        order_id: 123_456,
        user_id: 1_234,
        items: (1..=3)
            .map(|n| OrderLine {
                product_id: 100 + n,
                quantity: 2,
            })
            .collect(),
        user_coupon_id: Some(77),
    };
    let items: Vec<PricedItem> = (1..=3)
        .map(|n| PricedItem {
            product_id: 100 + n,
            quantity: 2,
            unit_price: Decimal::new(1_999, 2),
        })
        .collect();
    let started = OrderProcessingStarted {
        command: command.clone(),
    };
    let paid = CouponProcessed {
        command,
        items,
        total_amount: Decimal::new(11_994, 2),
        discount_amount: Decimal::new(1_199, 2),
        amount_to_pay: Decimal::new(10_795, 2),
    };
    let traceparent = Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned());
    Ok(vec![
        Envelope::new(&started, Some(123_456))?.with_traceparent(traceparent.clone()),
        Envelope::new(&paid, Some(123_456))?.with_traceparent(traceparent),
    ])
}

fn measure(envelope: &Envelope, events: usize) -> anyhow::Result<Figures> {
    let producer = shared::events::producer_of(&envelope.event_type).context("a saga event")?;
    let sealer = KeySettings::dev().load(Some(producer))?;
    let reader: Keyring = KeySettings::dev().load(None)?;
    let started = Instant::now();
    let mut sealed = Vec::with_capacity(events);
    for _ in 0..events {
        sealed.push(sealer.seal(envelope)?);
    }
    let seal = started.elapsed();
    let started = Instant::now();
    for body in &sealed {
        let opened = reader
            .open(body)
            .map_err(|refusal| anyhow::anyhow!("{refusal}"))?;
        std::hint::black_box(opened);
    }
    let open = started.elapsed();
    let per = |total: Duration| total.as_secs_f64() * 1e6 / events as f64;
    Ok(Figures {
        event_type: envelope.event_type.clone(),
        plain_bytes: envelope.to_bytes()?.len(),
        sealed_bytes: sealed.first().map_or(0, Vec::len),
        seal_us: per(seal),
        open_us: per(open),
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    bench::command_line::parse(
        "seal-bench",
        "What sealing and opening a saga event cost, per event, on this machine",
    );
    let mut knobs = Knobs::default();
    let events: usize = knobs.parse("SEAL_BENCH_EVENTS", 20_000)?;
    let common = Common::read(&mut knobs)?;
    let machine = Machine::probe(&common.server).await?;
    let mut figures = Vec::new();
    for envelope in samples()? {
        // A first pass warms caches and the allocator; the second is measured.
        measure(&envelope, events.min(1_000))?;
        figures.push(measure(&envelope, events)?);
    }
    let results = SealResults {
        header: Header::new("seal", machine, knobs.finish()),
        events,
        figures,
    };
    let path = report::save(&results, &common.results_dir)?;
    println!("{}", report::summary(&results));
    println!("results written to {} and its .json", path.display());
    Ok(())
}
