//! Money: `rust_decimal::Decimal` with two decimals, end to end. JSON input accepts a decimal
//! string (`"1200.50"`) or a number (`1200.5`); output is always a string with two decimals.
//! Never a float in between: a JSON number is read back through its shortest decimal text.

use std::str::FromStr;

use rust_decimal::Decimal;
use serde::de::{self, Deserializer, Visitor};

/// The largest amount accepted anywhere (fits NUMERIC(14,2)).
pub const MAX: Decimal = Decimal::from_parts(276_447_231, 23_283, 0, false, 2); // 999_999_999_999.99

/// `value` with exactly two decimals, for output and storage.
pub fn normalize(value: Decimal) -> Decimal {
    let mut value = value.round_dp(2);
    value.rescale(2);
    value
}

/// The OpenAPI schema of an amount in a response: a string with exactly two decimals.
#[derive(Debug)]
pub struct Amount;

impl utoipa::PartialSchema for Amount {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some(r"^[0-9]{1,12}\.[0-9]{2}$"))
            .description(Some("An amount: a decimal string with two decimals."))
            .examples(["1200.50"])
            .into()
    }
}

impl utoipa::ToSchema for Amount {}

/// The OpenAPI schema of an amount in a request: a decimal string or a JSON number, at most
/// two decimals, from 0 to 999999999999.99.
#[derive(Debug)]
pub struct AmountInput;

impl utoipa::PartialSchema for AmountInput {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
        OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some(r"^[0-9]{1,12}(\.[0-9]{1,2})?$")),
            )
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Number)
                    .minimum(Some(0))
                    .maximum(Some(999_999_999_999.99)),
            )
            .description(Some(
                "An amount: a decimal string (`\"1200.50\"`) or a number (`1200.5`), at most \
                 two decimals, from 0 to 999999999999.99.",
            ))
            .examples(["1200.50"])
            .into()
    }
}

impl utoipa::ToSchema for AmountInput {}

/// Why an amount is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MoneyError {
    TooManyDecimals,
    Negative,
    TooLarge,
}

impl std::fmt::Display for MoneyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::TooManyDecimals => "at most two decimals",
            Self::Negative => "must not be negative",
            Self::TooLarge => "too large",
        })
    }
}

/// Checks a non-negative amount with at most two decimals, normalized to two.
pub fn validate(value: Decimal) -> Result<Decimal, MoneyError> {
    if value.is_sign_negative() && !value.is_zero() {
        return Err(MoneyError::Negative);
    }
    if value.normalize().scale() > 2 {
        return Err(MoneyError::TooManyDecimals);
    }
    if value > MAX {
        return Err(MoneyError::TooLarge);
    }
    Ok(normalize(value))
}

/// `#[serde(deserialize_with = "shared::money::deserialize")]`: a decimal from a string or a
/// JSON number (range and scale are checked by the domain, which names the field).
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Decimal, D::Error> {
    deserializer.deserialize_any(DecimalVisitor)
}

/// The same for an optional field.
pub fn deserialize_option<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Decimal>, D::Error> {
    struct OptionVisitor;
    impl<'de> Visitor<'de> for OptionVisitor {
        type Value = Option<Decimal>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a decimal amount or null")
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            deserialize(d).map(Some)
        }
    }
    deserializer.deserialize_option(OptionVisitor)
}

struct DecimalVisitor;

impl Visitor<'_> for DecimalVisitor {
    type Value = Decimal;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a decimal amount as a string like \"12.50\" or a number")
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Decimal, E> {
        Decimal::from_str(value.trim())
            .map_err(|_| E::custom(format!("{value:?} is not a decimal amount")))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Decimal, E> {
        Ok(Decimal::from(value))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Decimal, E> {
        Ok(Decimal::from(value))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Decimal, E> {
        if !value.is_finite() {
            return Err(E::custom("not a finite amount"));
        }
        // Display prints the shortest text that reads back as this f64: 1200.1, not
        // 1200.0999999999999.
        Decimal::from_str(&value.to_string()).map_err(|_| E::custom("amount out of range"))
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Deserialize)]
    struct Body {
        #[serde(deserialize_with = "deserialize")]
        amount: Decimal,
    }

    fn parse(json: &str) -> Decimal {
        serde_json::from_str::<Body>(json).unwrap().amount
    }

    #[test]
    fn accepts_strings_and_numbers_without_float_noise() {
        assert_eq!(parse(r#"{"amount":"1200.10"}"#).to_string(), "1200.10");
        assert_eq!(
            normalize(parse(r#"{"amount":1200.1}"#)).to_string(),
            "1200.10"
        );
        assert_eq!(normalize(parse(r#"{"amount":7}"#)).to_string(), "7.00");
        assert!(serde_json::from_str::<Body>(r#"{"amount":"abc"}"#).is_err());
        assert!(serde_json::from_str::<Body>(r#"{"amount":true}"#).is_err());
    }

    #[test]
    fn validates_scale_sign_and_size() {
        assert_eq!(
            validate(Decimal::from_str("1.005").unwrap()),
            Err(MoneyError::TooManyDecimals)
        );
        assert_eq!(
            validate(Decimal::from_str("-1").unwrap()),
            Err(MoneyError::Negative)
        );
        assert_eq!(
            validate(Decimal::from_str("1000000000000").unwrap()),
            Err(MoneyError::TooLarge)
        );
        assert_eq!(
            validate(Decimal::from_str("1.50").unwrap())
                .unwrap()
                .to_string(),
            "1.50"
        );
        assert_eq!(MAX.to_string(), "999999999999.99");
    }
}
