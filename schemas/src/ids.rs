//! Identifier newtypes. Each one can only be built through `parse`, so an invalid id cannot
//! exist past the boundary (and deserialising re-validates).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Why an identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("must not be empty")]
    Empty,
    #[error("is {len} characters long; at most {max} allowed")]
    TooLong { len: usize, max: usize },
    #[error("contains '{0}'; allowed: {1}")]
    BadChar(char, &'static str),
    #[error("must start with a lowercase letter or digit")]
    BadStart,
}

fn check(value: &str, max: usize, allowed: fn(char) -> bool, allowed_text: &'static str) -> Result<(), IdError> {
    if value.is_empty() {
        return Err(IdError::Empty);
    }
    let len = value.chars().count();
    if len > max {
        return Err(IdError::TooLong { len, max });
    }
    if let Some(c) = value.chars().find(|c| !allowed(*c)) {
        return Err(IdError::BadChar(c, allowed_text));
    }
    Ok(())
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident, $max:literal, $allowed:expr, $allowed_text:expr, $pattern:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
        #[serde(try_from = "String", into = "String")]
        #[schemars(extend("pattern" = $pattern, "minLength" = 1, "maxLength" = $max))]
        pub struct $name(String);

        impl $name {
            pub const MAX_LEN: usize = $max;
            pub fn parse(value: impl Into<String>) -> Result<Self, IdError> {
                let value = value.into();
                check(&value, $max, $allowed, $allowed_text)?;
                Self::extra_check(&value)?;
                Ok(Self(value))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(value: String) -> Result<Self, IdError> {
                Self::parse(value)
            }
        }
        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

fn game_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_'
}
fn player_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@')
}
fn name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')
}

string_id!(
    /// A game: lowercase letters, digits, `-`, `_`; at most 64 characters. No `:` so that
    /// the partition key `game_id:player_id` splits unambiguously.
    GameId, 64, game_char, "a-z 0-9 - _", "^[a-z0-9][a-z0-9_-]*$"
);
string_id!(
    /// A player within a game: letters, digits, `-_.@`; at most 128 characters.
    PlayerId, 128, player_char, "A-Z a-z 0-9 - _ . @", "^[A-Za-z0-9_.@-]+$"
);
string_id!(
    /// A session id chosen by the client, or derived by the SessionActor.
    SessionId, 64, name_char, "A-Z a-z 0-9 - _ . :", "^[A-Za-z0-9_.:-]+$"
);
string_id!(
    /// Items, levels, achievements, boards and virtual currencies.
    Name, 64, name_char, "A-Z a-z 0-9 - _ . :", "^[A-Za-z0-9_.:-]+$"
);

impl GameId {
    fn extra_check(value: &str) -> Result<(), IdError> {
        match value.chars().next() {
            Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit() => Ok(()),
            _ => Err(IdError::BadStart),
        }
    }
}
impl PlayerId {
    fn extra_check(_: &str) -> Result<(), IdError> {
        Ok(())
    }
}
impl SessionId {
    fn extra_check(_: &str) -> Result<(), IdError> {
        Ok(())
    }
}
impl Name {
    fn extra_check(_: &str) -> Result<(), IdError> {
        Ok(())
    }
}

/// The partition key of everything a player does: `game_id:player_id`.
pub fn player_key(game: &GameId, player: &PlayerId) -> String {
    format!("{game}:{player}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn game_id_rejects_uppercase_colon_and_empty() {
        assert_eq!(GameId::parse(""), Err(IdError::Empty));
        assert!(matches!(GameId::parse("Game"), Err(IdError::BadChar('G', _))));
        assert!(matches!(GameId::parse("a:b"), Err(IdError::BadChar(':', _))));
        assert_eq!(GameId::parse("-x"), Err(IdError::BadStart));
        assert!(GameId::parse("space-race_2").is_ok());
    }

    #[test]
    fn ids_enforce_their_maximum_length() {
        assert!(PlayerId::parse("p".repeat(128)).is_ok());
        assert_eq!(PlayerId::parse("p".repeat(129)), Err(IdError::TooLong { len: 129, max: 128 }));
        assert!(GameId::parse("g".repeat(65)).is_err());
        assert!(Name::parse("n".repeat(65)).is_err());
        assert!(SessionId::parse("s".repeat(65)).is_err());
    }

    #[test]
    fn player_id_rejects_spaces_and_colons() {
        assert!(matches!(PlayerId::parse("a b"), Err(IdError::BadChar(' ', _))));
        assert!(matches!(PlayerId::parse("a:b"), Err(IdError::BadChar(':', _))));
        assert!(PlayerId::parse("user.42@studio").is_ok());
    }

    #[test]
    fn deserialising_revalidates() {
        let bad: Result<GameId, _> = serde_json::from_str("\"BAD\"");
        assert!(bad.is_err());
        let good: GameId = serde_json::from_str("\"good\"").unwrap();
        assert_eq!(good.as_str(), "good");
    }
}
