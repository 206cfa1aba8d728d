//! The typed events a game sends, as they appear in the `type` and `properties` of the
//! public format. Each properties struct refuses unknown fields so that a typo is reported
//! instead of silently dropped.

use crate::ids::{Name, SessionId};
use crate::money::{Currency, MinorUnits};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Every event type of the public format, tagged by `type` with its `properties`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", content = "properties", rename_all = "snake_case")]
pub enum EventBody {
    SessionStart(SessionStart),
    SessionEnd(SessionEnd),
    Progression(Progression),
    /// `schema_version` 1: the price flat; 2: `price {amount_minor, currency}` and `store`.
    Purchase(#[schemars(with = "crate::upcast::PurchaseAnyVersion")] Purchase),
    Resource(Resource),
    Score(Score),
    Achievement(Achievement),
    ItemUse(ItemUse),
    Design(Design),
    /// Player command: update the non-personal profile fields (personal ones travel in `personal`).
    ProfileUpdate(ProfileUpdate),
    /// Player command: record the player's consent choices.
    ConsentUpdate(ConsentUpdate),
}

impl EventBody {
    pub const TYPES: &'static [&'static str] = &[
        "session_start",
        "session_end",
        "progression",
        "purchase",
        "resource",
        "score",
        "achievement",
        "item_use",
        "design",
        "profile_update",
        "consent_update",
    ];

    pub fn type_name(&self) -> &'static str {
        match self {
            Self::SessionStart(_) => "session_start",
            Self::SessionEnd(_) => "session_end",
            Self::Progression(_) => "progression",
            Self::Purchase(_) => "purchase",
            Self::Resource(_) => "resource",
            Self::Score(_) => "score",
            Self::Achievement(_) => "achievement",
            Self::ItemUse(_) => "item_use",
            Self::Design(_) => "design",
            Self::ProfileUpdate(_) => "profile_update",
            Self::ConsentUpdate(_) => "consent_update",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionStart {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Name>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_version: Option<Name>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionEnd {
    /// Length as measured by the client, 0..=604800 seconds; derived from timestamps when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 604_800))]
    pub length_seconds: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProgressionStatus {
    Start,
    Complete,
    Fail,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Progression {
    pub status: ProgressionStatus,
    pub level_id: Name,
    /// 0..=1e12.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1_000_000_000_000i64))]
    pub score: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Purchase {
    /// Price paid in the currency's minor units (cents), 1..=1e9.
    pub amount_minor: MinorUnits,
    /// ISO 4217 code.
    pub currency: Currency,
    pub item_id: Name,
    /// 1..=10000, default 1.
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 10_000))]
    pub quantity: u32,
    /// Where the purchase was made. Only `schema_version: 2` purchases carry it (see
    /// [`crate::upcast`]); a v1 purchase has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(skip)]
    pub store: Option<Store>,
}

/// The store a purchase was made in (`purchase` v2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Store {
    AppStore,
    GooglePlay,
    Web,
}

impl Store {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::AppStore => "app_store",
            Self::GooglePlay => "google_play",
            Self::Web => "web",
        }
    }
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResourceFlow {
    /// The player gained the virtual currency.
    Source,
    /// The player spent it.
    Sink,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Resource {
    pub flow: ResourceFlow,
    pub virtual_currency: Name,
    /// 1..=1e12.
    #[schemars(range(min = 1, max = 1_000_000_000_000i64))]
    pub amount: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item_id: Option<Name>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Score {
    pub board: Name,
    /// -1e15..=1e15.
    #[schemars(range(min = -1_000_000_000_000_000i64, max = 1_000_000_000_000_000i64))]
    pub value: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Achievement {
    pub achievement_id: Name,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ItemUse {
    pub item_id: Name,
    /// 1..=10000, default 1.
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 10_000))]
    pub quantity: u32,
}

/// A custom design event: a colon-separated id of 1 to 5 parts (`boss:forest:defeated`) and an
/// optional value, as in GameAnalytics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Design {
    /// 1 to 5 parts of 1 to 32 characters, separated by `:`.
    #[schemars(extend("pattern" = "^[A-Za-z0-9_.-]{1,32}(:[A-Za-z0-9_.-]{1,32}){0,4}$"))]
    pub event_id: Name,
    /// Finite, |value| <= 1e12.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = -1e12, max = 1e12))]
    pub value: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfileUpdate {
    /// ISO 3166-1 alpha-2, upper case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = "^[A-Z]{2}$"))]
    pub country: Option<String>,
    /// ISO 639-1, lower case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = "^[a-z]{2}$"))]
    pub language: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsentUpdate {
    pub analytics: bool,
    pub personalisation: bool,
}

/// Personal data, kept apart from everything else so that it can be encrypted with the
/// player's key and shredded on erasure. Actors and projections never read it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PersonalFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub device_id: Option<String>,
    /// An IPv4 or IPv6 address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub free_text: Option<String>,
}

/// Which session a client said an event belongs to, if any.
pub type ClientSession = Option<SessionId>;
