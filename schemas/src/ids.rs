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
    #[error("'{0}' cannot be an id: a URL path cannot carry it (clients resolve it away)")]
    DotSegment(&'static str),
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
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@' | '+' | '/' | '=' | ':' | '|')
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
    /// A player within a game, as the game's SDK names them: ASCII letters, digits and
    /// `- _ . @ + / = : |`, 1 to 256 characters, not `.` nor `..`. That takes e-mail addresses
    /// (`ana+beta@example.com`; 254 characters at most), base64 and base64url ids
    /// (`q1Zx/9+Ab==`, `q1Zx_9-Ab`), platform-prefixed ids (`steam:76561198000000000`,
    /// `auth0|5f7c8ec7`), UUIDs and numbers.
    ///
    /// Why it is safe everywhere an id goes: the log's key is `game_id:player_id` (a game id
    /// has no `:`, so it splits at the first one) and carries the player's pseudonym anyway;
    /// SQL binds it as a value; Redis keys carry it after a hash tag made of its hash, and no
    /// allowed character is a Redis glob or hash-tag character (`* ? [ ] \ { }`); no file is
    /// named after a player. In a URL path it is one segment, percent-encoded (`/` as `%2F`,
    /// `+` may be sent as is or as `%2B`, `|` as `%7C`); `.` and `..` are refused because
    /// clients resolve them away as path segments. Whitespace, control characters, `%`, `#`,
    /// `?`, quotes and non-ASCII letters are refused (normalise them in the game first).
    PlayerId, 256, player_char, "A-Z a-z 0-9 - _ . @ + / = : |", "^([A-Za-z0-9_@+/=:|-][A-Za-z0-9_.@+/=:|-]*|\\.[A-Za-z0-9_@+/=:|-][A-Za-z0-9_.@+/=:|-]*|\\.\\.[A-Za-z0-9_.@+/=:|-]+)$"
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
    fn extra_check(value: &str) -> Result<(), IdError> {
        match value {
            "." => Err(IdError::DotSegment(".")),
            ".." => Err(IdError::DotSegment("..")),
            _ => Ok(()),
        }
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
    // Built by hand: `format!` goes through the formatting machinery (a measurable share of
    // the gateway's CPU, twice per ingested event).
    let (game, player) = (game.as_str(), player.as_str());
    let mut key = String::with_capacity(game.len() + 1 + player.len());
    key.push_str(game);
    key.push(':');
    key.push_str(player);
    key
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
        assert!(PlayerId::parse("p".repeat(256)).is_ok());
        assert_eq!(PlayerId::parse("p".repeat(257)), Err(IdError::TooLong { len: 257, max: 256 }));
        assert!(GameId::parse("g".repeat(65)).is_err());
        assert!(Name::parse("n".repeat(65)).is_err());
        assert!(SessionId::parse("s".repeat(65)).is_err());
    }

    /// What real SDKs send is accepted as is (issue 17, item 11).
    #[test]
    fn player_ids_of_real_sdks_are_accepted_as_sent() {
        let longest_email = format!("{}@{}.com", "a".repeat(64), "b".repeat(185));
        assert_eq!(longest_email.len(), 254);
        for id in [
            "user.42@studio",
            "ana+beta@example.com",
            "first.last+tag-2024@sub.example.co.uk",
            "q1Zx/9+AbC==",
            "dGhpcyBpcyBhIHRlc3Q=",
            "q1Zx_9-AbC",
            "steam:76561198000000000",
            "xbl:2535405290295552",
            "auth0|5f7c8ec7c33c6c004bbafe82",
            "google-oauth2|104407371985628364071",
            "550e8400-e29b-41d4-a716-446655440000",
            "42",
            "a:b",
            "/",
            "...",
            ".hidden",
            longest_email.as_str(),
        ] {
            assert_eq!(PlayerId::parse(id).map(String::from), Ok(id.to_string()), "{id}");
            let json: PlayerId = serde_json::from_str(&serde_json::to_string(id).unwrap()).unwrap();
            assert_eq!(json.as_str(), id);
        }
    }

    #[test]
    fn player_ids_refuse_what_no_store_or_path_can_carry_safely() {
        for (id, bad) in [
            ("a b", ' '),
            ("tab\there", '\t'),
            ("line\nbreak", '\n'),
            ("50%", '%'),
            ("a#b", '#'),
            ("a?b", '?'),
            ("a*b", '*'),
            ("a[0]", '['),
            ("{tag}", '{'),
            ("back\\slash", '\\'),
            ("quote\"d", '"'),
            ("josé", 'é'),
        ] {
            assert!(
                matches!(PlayerId::parse(id), Err(IdError::BadChar(c, _)) if c == bad),
                "{id}: {:?}",
                PlayerId::parse(id)
            );
        }
        assert_eq!(PlayerId::parse("."), Err(IdError::DotSegment(".")));
        assert_eq!(PlayerId::parse(".."), Err(IdError::DotSegment("..")));
        assert_eq!(PlayerId::parse(""), Err(IdError::Empty));
        // The partition key still splits at the game's end: a game id has no ':'.
        let key = player_key(&GameId::parse("space-race").unwrap(), &PlayerId::parse("steam:7656").unwrap());
        assert_eq!(key.split_once(':'), Some(("space-race", "steam:7656")));
    }

    #[test]
    fn deserialising_revalidates() {
        let bad: Result<GameId, _> = serde_json::from_str("\"BAD\"");
        assert!(bad.is_err());
        let good: GameId = serde_json::from_str("\"good\"").unwrap();
        assert_eq!(good.as_str(), "good");
    }
}
