//! The order request, its validation, and the statuses an order goes through.

use serde::{Deserialize, Serialize};
use shared::events::OrderLine;
use shared::http::ApiError;

pub const MAX_ITEMS: usize = 50;
pub const MAX_QUANTITY: i64 = 1_000;
pub const MAX_IDEMPOTENCY_KEY: usize = 200;

/// An order to place (`POST /orders`).
// Numbers are read wide (i64) so that an out-of-range value is a 422 naming the field rather
// than a decode error.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderRequest {
    /// Who orders, and pays.
    #[schema(minimum = 1)]
    pub user_id: i64,
    /// 1 to 50 lines, each product once.
    #[schema(min_items = 1, max_items = 50)]
    pub items: Vec<LineRequest>,
    /// A coupon the user holds, used for a discount.
    #[serde(default)]
    #[schema(minimum = 1)]
    pub user_coupon_id: Option<i64>,
}

/// One line of an order.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LineRequest {
    #[schema(minimum = 1)]
    pub product_id: i64,
    #[schema(minimum = 1, maximum = 1000)]
    pub quantity: i64,
}

/// A validated order: what is stored and what the saga carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewOrder {
    pub user_id: i64,
    pub items: Vec<OrderLine>,
    pub user_coupon_id: Option<i64>,
}

impl OrderRequest {
    /// Checks every rule, naming the first field that breaks one.
    pub fn validate(self) -> Result<NewOrder, ApiError> {
        if self.user_id <= 0 {
            return Err(ApiError::validation(
                "user_id",
                "must be a positive integer",
            ));
        }
        if self.items.is_empty() || self.items.len() > MAX_ITEMS {
            return Err(ApiError::validation(
                "items",
                format!("must hold 1 to {MAX_ITEMS} items"),
            ));
        }
        let mut items = Vec::with_capacity(self.items.len());
        for (index, line) in self.items.iter().enumerate() {
            if line.product_id <= 0 {
                return Err(ApiError::validation(
                    format!("items[{index}].product_id"),
                    "must be a positive integer",
                ));
            }
            if self.items[..index]
                .iter()
                .any(|earlier| earlier.product_id == line.product_id)
            {
                return Err(ApiError::validation(
                    format!("items[{index}].product_id"),
                    format!(
                        "product {} appears twice; put the quantity on one line",
                        line.product_id
                    ),
                ));
            }
            let quantity = i32::try_from(line.quantity)
                .ok()
                .filter(|q| (1..=MAX_QUANTITY).contains(&i64::from(*q)))
                .ok_or_else(|| {
                    ApiError::validation(
                        format!("items[{index}].quantity"),
                        format!("must be 1 to {MAX_QUANTITY}"),
                    )
                })?;
            items.push(OrderLine {
                product_id: line.product_id,
                quantity,
            });
        }
        if let Some(coupon) = self.user_coupon_id
            && coupon <= 0
        {
            return Err(ApiError::validation(
                "user_coupon_id",
                "must be a positive integer or null",
            ));
        }
        Ok(NewOrder {
            user_id: self.user_id,
            items,
            user_coupon_id: self.user_coupon_id,
        })
    }
}

impl NewOrder {
    /// The request an Idempotency-Key stands for, compared on replay.
    pub fn fingerprint(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Checks an `Idempotency-Key` header value.
pub fn idempotency_key(raw: &str) -> Result<String, ApiError> {
    let key = raw.trim();
    if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY {
        return Err(ApiError::validation(
            "Idempotency-Key",
            format!("must be 1 to {MAX_IDEMPOTENCY_KEY} characters"),
        ));
    }
    Ok(key.to_owned())
}

shared::text_enum! {
    /// Where an order is in its saga (`docs/design.md`, the order's states).
    pub enum OrderStatus {
        Pending => "PENDING",
        Completed => "COMPLETED",
        Failed => "FAILED",
        Cancelling => "CANCELLING",
        Cancelled => "CANCELLED",
    }
}

impl OrderStatus {
    /// A status no saga step will change by itself (a COMPLETED order changes only if
    /// cancelled).
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(json: serde_json::Value) -> Result<NewOrder, ApiError> {
        serde_json::from_value::<OrderRequest>(json)
            .unwrap()
            .validate()
    }

    fn field(result: Result<NewOrder, ApiError>) -> String {
        match result {
            Err(ApiError::Validation { field, .. }) => field,
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn every_rule_names_its_field() {
        let line = |p: i64, q: i64| serde_json::json!({"product_id": p, "quantity": q});
        assert_eq!(
            field(request(
                serde_json::json!({"user_id": 0, "items": [line(1, 1)]})
            )),
            "user_id"
        );
        assert_eq!(
            field(request(serde_json::json!({"user_id": 1, "items": []}))),
            "items"
        );
        let many: Vec<_> = (1..=51).map(|p| line(p, 1)).collect();
        assert_eq!(
            field(request(serde_json::json!({"user_id": 1, "items": many}))),
            "items"
        );
        assert_eq!(
            field(request(
                serde_json::json!({"user_id": 1, "items": [line(1, 0)]})
            )),
            "items[0].quantity"
        );
        assert_eq!(
            field(request(
                serde_json::json!({"user_id": 1, "items": [line(1, 1001)]})
            )),
            "items[0].quantity"
        );
        assert_eq!(
            field(request(
                serde_json::json!({"user_id": 1, "items": [line(1, 1), line(-2, 1)]})
            )),
            "items[1].product_id"
        );
        assert_eq!(
            field(request(
                serde_json::json!({"user_id": 1, "items": [line(3, 1), line(3, 2)]})
            )),
            "items[1].product_id"
        );
        assert_eq!(
            field(request(
                serde_json::json!({"user_id": 1, "items": [line(1, 1)], "user_coupon_id": 0})
            )),
            "user_coupon_id"
        );
        let ok = request(
            serde_json::json!({"user_id": 1, "items": [line(1, 1000)], "user_coupon_id": null}),
        )
        .unwrap();
        assert_eq!(ok.items[0].quantity, 1000);
        assert!(idempotency_key("").is_err() && idempotency_key(&"k".repeat(201)).is_err());
    }
}
