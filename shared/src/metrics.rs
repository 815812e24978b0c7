//! Prometheus metrics: one registry per service, even when several services share a process.
//!
//! The `metrics` facade has one global recorder per process. `sagactl up` and the end-to-end
//! tests run all services in one process, and each service's `/metrics` must still show only
//! its own series (a Prometheus scraping five endpoints of one shared registry would count
//! everything five times). So the global recorder here dispatches on the `service` label that
//! every metric of this code base carries, to a Prometheus recorder per service.
//!
//! Conventions: counters end in `_total`, durations in `_seconds`; labels are bounded (service,
//! route pattern, event type, outcome, failure code), never ids.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

/// The label every metric carries.
pub const SERVICE: &str = "service";

/// Latency buckets, in seconds: 1 ms to 30 s.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// A description as the facade hands it over, kept to replay on registries created later.
type Description = (KeyName, Option<Unit>, SharedString, Kind);

#[derive(Default)]
struct Dispatch {
    services: RwLock<HashMap<String, Arc<PrometheusRecorder>>>,
    /// Descriptions arrive without labels: every service's registry gets all of them.
    descriptions: RwLock<Vec<Description>>,
}

#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

static DISPATCH: OnceLock<Arc<Dispatch>> = OnceLock::new();

/// Installs the dispatching recorder (once per process; later calls are no-ops).
pub fn install() {
    DISPATCH.get_or_init(|| {
        let dispatch = Arc::new(Dispatch::default());
        if metrics::set_global_recorder(Forward(dispatch.clone())).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
        }
        dispatch
    });
}

/// The registry of `service`, for its `/metrics` route.
pub fn handle(service: &str) -> PrometheusHandle {
    install();
    DISPATCH
        .get()
        .map(|dispatch| dispatch.recorder(service).handle())
        .unwrap_or_else(|| PrometheusBuilder::new().build_recorder().handle())
}

/// Keeps histograms' windows rolling; call on a timer.
pub fn run_upkeep() {
    if let Some(dispatch) = DISPATCH.get() {
        let services = dispatch.services.read().unwrap_or_else(|e| e.into_inner());
        for recorder in services.values() {
            recorder.handle().run_upkeep();
        }
    }
}

/// Runs upkeep every few seconds until `shutdown`.
pub async fn upkeep(mut shutdown: crate::shutdown::Shutdown) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(5)) => run_upkeep(),
            _ = shutdown.wait() => return,
        }
    }
}

impl Dispatch {
    fn recorder(&self, service: &str) -> Arc<PrometheusRecorder> {
        if let Some(found) = self
            .services
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(service)
        {
            return found.clone();
        }
        let mut services = self.services.write().unwrap_or_else(|e| e.into_inner());
        services
            .entry(service.to_owned())
            .or_insert_with(|| {
                let recorder = Arc::new(
                    PrometheusBuilder::new()
                        .set_buckets(BUCKETS)
                        .map(PrometheusBuilder::build_recorder)
                        .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder()),
                );
                for (name, unit, text, kind) in self
                    .descriptions
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .iter()
                {
                    describe(recorder.as_ref(), name.clone(), *unit, text.clone(), *kind);
                }
                recorder
            })
            .clone()
    }

    fn for_key(&self, key: &Key) -> Arc<PrometheusRecorder> {
        let service = key
            .labels()
            .find(|label| label.key() == SERVICE)
            .map_or("unlabelled", |label| label.value());
        self.recorder(service)
    }

    fn describe(&self, name: KeyName, unit: Option<Unit>, text: SharedString, kind: Kind) {
        self.descriptions
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push((name.clone(), unit, text.clone(), kind));
        for recorder in self
            .services
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
        {
            describe(recorder.as_ref(), name.clone(), unit, text.clone(), kind);
        }
    }
}

fn describe(
    recorder: &PrometheusRecorder,
    name: KeyName,
    unit: Option<Unit>,
    text: SharedString,
    kind: Kind,
) {
    match kind {
        Kind::Counter => recorder.describe_counter(name, unit, text),
        Kind::Gauge => recorder.describe_gauge(name, unit, text),
        Kind::Histogram => recorder.describe_histogram(name, unit, text),
    }
}

struct Forward(Arc<Dispatch>);

impl Recorder for Forward {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.0.describe(key, unit, description, Kind::Counter);
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.0.describe(key, unit, description, Kind::Gauge);
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.0.describe(key, unit, description, Kind::Histogram);
    }

    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> Counter {
        self.0.for_key(key).register_counter(key, metadata)
    }

    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        self.0.for_key(key).register_gauge(key, metadata)
    }

    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> Histogram {
        self.0.for_key(key).register_histogram(key, metadata)
    }
}

/// Describes the metrics every service exports (HTTP and consumer); each binary describes its
/// own on top.
pub fn describe_common() {
    use metrics::{describe_counter, describe_histogram};
    describe_counter!(
        "http_requests_total",
        "HTTP requests by route pattern, method and status"
    );
    describe_histogram!(
        "http_request_duration_seconds",
        Unit::Seconds,
        "HTTP request latency by route pattern"
    );
    describe_counter!(
        "consumer_messages_total",
        "Messages consumed by queue, event type and outcome (processed, duplicate, retried, dead_lettered)"
    );
    describe_counter!(
        "consumer_unauthenticated_total",
        "Messages refused and dead-lettered as unauthenticated, by the seal check they failed"
    );
    describe_histogram!(
        "consumer_handling_seconds",
        Unit::Seconds,
        "Time to decide and settle one message"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_service_renders_only_its_own_series() {
        install();
        describe_common();
        metrics::counter!("http_requests_total", SERVICE => "alpha", "route" => "/x", "method" => "GET", "status" => "200").increment(2);
        metrics::counter!("http_requests_total", SERVICE => "beta", "route" => "/y", "method" => "GET", "status" => "200").increment(1);
        let alpha = handle("alpha").render();
        let beta = handle("beta").render();
        assert!(
            alpha.contains("service=\"alpha\"") && !alpha.contains("service=\"beta\""),
            "{alpha}"
        );
        assert!(
            beta.contains("service=\"beta\"") && !beta.contains("service=\"alpha\""),
            "{beta}"
        );
        assert!(alpha.contains("# HELP http_requests_total"), "{alpha}");
    }
}
