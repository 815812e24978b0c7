//! The gateway's API contract: the public OpenAPI documents of the five services merged into
//! one, with the answers the gateway itself may give added to every operation.

use serde_json::{Value, json};

use super::page;

/// The gateway's document, as JSON.
pub fn document() -> anyhow::Result<Value> {
    let mut merged = order_service::openapi();
    for other in [
        product_service::openapi(),
        coupon_service::openapi(),
        balance_service::openapi(),
        monitor_service::openapi(),
    ] {
        merged.merge(other);
    }
    let mut document = serde_json::to_value(&merged)?;
    document["info"] = json!({
        "title": "Order saga API",
        "version": env!("CARGO_PKG_VERSION"),
        "description": "Every public operation of the order saga's services, through the API \
            gateway's one port. Place an order, then poll it with `wait_ms` until its saga ends. \
            Every error is the JSON object {\"error\":{\"code\",\"message\",\"field\"}}; `field` \
            names the request field at fault when there is one.",
        "license": {"name": "MIT OR Apache-2.0", "identifier": "MIT OR Apache-2.0"},
    });
    add_gateway_answers(&mut document);
    Ok(document)
}

/// What the gateway answers on its own, before or instead of a service.
fn add_gateway_answers(document: &mut Value) {
    let error = json!({"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}});
    let answers = [
        ("413", "The body is larger than the gateway takes."),
        (
            "429",
            "Too many requests from this client: retry after `Retry-After` seconds.",
        ),
        ("502", "No instance of the service could be reached."),
        ("504", "The service did not answer in time."),
    ];
    let Some(paths) = document["paths"].as_object_mut() else {
        return;
    };
    for item in paths.values_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for (_, operation) in item
            .iter_mut()
            .filter(|(key, _)| page::METHODS.contains(&key.as_str()))
        {
            let Some(responses) = operation
                .get_mut("responses")
                .and_then(Value::as_object_mut)
            else {
                continue;
            };
            for (status, description) in answers {
                responses.entry(status).or_insert_with(|| {
                    let mut response = json!({"description": description, "content": error});
                    if status == "429" {
                        response["headers"] = json!({"Retry-After": {
                            "description": "Seconds to wait.",
                            "schema": {"type": "integer", "minimum": 1}
                        }});
                    }
                    response
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::ROUTES;

    /// Every documented path goes through the gateway to the service that documents it, and
    /// every path the gateway routes is documented.
    #[test]
    fn the_gateway_routes_exactly_the_documented_paths() {
        let documents = [
            ("order", order_service::openapi()),
            ("product", product_service::openapi()),
            ("coupon", coupon_service::openapi()),
            ("balance", balance_service::openapi()),
            ("monitor", monitor_service::openapi()),
        ];
        for (service, document) in &documents {
            let prefixes = ROUTES
                .iter()
                .find(|(name, _)| name == service)
                .map(|(_, prefixes)| *prefixes)
                .unwrap_or_default();
            let paths: Vec<&String> = document.paths.paths.keys().collect();
            assert!(!paths.is_empty(), "{service} documents no path");
            for path in &paths {
                let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
                assert!(
                    prefixes.contains(&first),
                    "{service} documents {path}, which the gateway does not route to it"
                );
            }
            for prefix in prefixes {
                assert!(
                    paths
                        .iter()
                        .any(|path| path.starts_with(&format!("/{prefix}"))),
                    "the gateway routes /{prefix} to {service}, which documents no such path"
                );
            }
        }
    }

    /// Merging keeps every service's schemas and operation ids: none shares a name with
    /// another service's.
    #[test]
    fn merging_loses_nothing() -> anyhow::Result<()> {
        let merged = document()?;
        let mut ids = std::collections::HashSet::new();
        for operation in page::operations(&merged) {
            let id = operation_id(&merged, operation.method, operation.path);
            assert!(ids.insert(id.clone()), "operation id {id} twice");
        }
        for service in [
            order_service::openapi(),
            product_service::openapi(),
            coupon_service::openapi(),
            balance_service::openapi(),
            monitor_service::openapi(),
        ] {
            let own = serde_json::to_value(&service)?;
            for (name, schema) in own["components"]["schemas"]
                .as_object()
                .into_iter()
                .flatten()
            {
                assert_eq!(
                    &merged["components"]["schemas"][name], schema,
                    "{name} of {} differs in the merged document",
                    own["info"]["title"]
                );
            }
        }
        Ok(())
    }

    fn operation_id(document: &Value, method: &str, path: &str) -> String {
        document["paths"][path][method]["operationId"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    #[test]
    fn every_operation_carries_the_gateway_answers() -> anyhow::Result<()> {
        let document = document()?;
        let operations = page::operations(&document);
        assert!(operations.len() >= 18, "{} operations", operations.len());
        for operation in operations {
            let responses = &document["paths"][operation.path][operation.method]["responses"];
            for status in ["429", "502", "504"] {
                assert!(
                    responses.get(status).is_some(),
                    "{} {} lacks {status}",
                    operation.method,
                    operation.path
                );
            }
        }
        Ok(())
    }
}
