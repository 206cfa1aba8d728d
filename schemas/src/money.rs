//! Money: ISO 4217 currency codes and amounts in minor units (cents), never floats.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::fmt;

/// An ISO 4217 currency code such as `USD` or `EUR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(try_from = "String", into = "String")]
#[schemars(with = "String", extend("pattern" = "^[A-Z]{3}$"))]
pub struct Currency([u8; 3]);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("'{0}' is not an ISO 4217 currency code")]
    UnknownCurrency(String),
    #[error("must be between {min} and {max} minor units, got {got}")]
    OutOfRange { min: i64, max: i64, got: i64 },
}

impl Currency {
    pub fn parse(code: &str) -> Result<Self, MoneyError> {
        // The iso_currency crate holds the official list; we keep only the 3-letter code.
        match iso_currency::Currency::from_code(code) {
            Some(c) if code.len() == 3 => {
                let bytes = c.code().as_bytes();
                Ok(Self([bytes[0], bytes[1], bytes[2]]))
            }
            _ => Err(MoneyError::UnknownCurrency(code.to_string())),
        }
    }
    pub fn code(&self) -> &str {
        // Only ASCII letters from the ISO list are ever stored.
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }
}
impl TryFrom<String> for Currency {
    type Error = MoneyError;
    fn try_from(value: String) -> Result<Self, MoneyError> {
        Self::parse(&value)
    }
}
impl From<Currency> for String {
    fn from(value: Currency) -> String {
        value.code().to_string()
    }
}
impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A positive amount of real money in the currency's minor units (cents for USD).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(try_from = "i64", into = "i64")]
#[schemars(with = "i64", extend("minimum" = 1, "maximum" = 1_000_000_000))]
pub struct MinorUnits(i64);

impl MinorUnits {
    /// Ten million in major units: larger single purchases are client bugs.
    pub const MAX: i64 = 1_000_000_000;
    pub fn parse(value: i64) -> Result<Self, MoneyError> {
        if !(1..=Self::MAX).contains(&value) {
            return Err(MoneyError::OutOfRange { min: 1, max: Self::MAX, got: value });
        }
        Ok(Self(value))
    }
    pub fn get(&self) -> i64 {
        self.0
    }
}
impl TryFrom<i64> for MinorUnits {
    type Error = MoneyError;
    fn try_from(value: i64) -> Result<Self, MoneyError> {
        Self::parse(value)
    }
}
impl From<MinorUnits> for i64 {
    fn from(value: MinorUnits) -> i64 {
        value.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currency_accepts_iso_codes_only() {
        assert_eq!(Currency::parse("USD").unwrap().code(), "USD");
        assert_eq!(Currency::parse("EUR").unwrap().to_string(), "EUR");
        assert!(Currency::parse("usd").is_err());
        assert!(Currency::parse("ABC").is_err());
        assert!(Currency::parse("").is_err());
        assert!(Currency::parse("USDX").is_err());
    }

    #[test]
    fn minor_units_must_be_positive_and_bounded() {
        assert!(MinorUnits::parse(0).is_err());
        assert!(MinorUnits::parse(-5).is_err());
        assert!(MinorUnits::parse(MinorUnits::MAX + 1).is_err());
        assert_eq!(MinorUnits::parse(499).unwrap().get(), 499);
    }
}
