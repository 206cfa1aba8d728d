//! The OpenAPI document of the gateway, generated from the handlers' `#[utoipa::path]`
//! attributes. `docs/openapi.json` is a checked-in copy (regenerate with
//! `GM_BLESS=1 cargo test -p gm-gateway openapi`).

use crate::{compat, error, gameanalytics, games, health, ingest, me, privacy, queries, status};
use std::sync::OnceLock;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{Modify, OpenApi};

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The game's API key: `Authorization: Bearer <key>` (game API keys only ingest)"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "basic",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Basic)
                    .description(Some("The game's API key as user name, empty password (Segment SDKs' write key)"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "jwt",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "A person's OAuth2 access token (JWT signed by a key of the configured JWKS, with the \
                         configured issuer and audience, unexpired). The roles claim (default `roles`) grants: \
                         `analyst` the queries, `compliance` the privacy routes, `admin` everything but ingest \
                         (and /metrics). The scopes listed on an operation are the roles that may call it. \
                         The games claim (default `games`) says which games those roles apply to: a list of \
                         game ids (`[\"space-race\"]`, or a space/comma separated string), or `\"*\"` for \
                         every game. Every route about a game (path, body or the erasure's game) answers 403 \
                         `forbidden` for a game the claim does not name, and a token without the claim \
                         reaches no game; the audit trail lists only the entries of the token's games.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "metrics_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The metrics token (`auth.metrics_token`), for Prometheus: reads /metrics only"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "gameanalytics_hmac",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Authorization",
                "GameAnalytics SDKs: the base64 HMAC-SHA256 of the raw body as sent (the gzip bytes when gzip) under \
                 the game's secret key; the game key is in the path (or the `game_key` query of the remote-configs init)",
            ))),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-API-Key",
                "The game's API key, as an alternative to the bearer header",
            ))),
        );
    }
}

/// The 415 of every route that takes a body ([`crate::media_type`]): what it accepts, and
/// `text/plain` among the request body's media types where it is accepted.
struct MediaTypes;

impl Modify for MediaTypes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            let Some(operation) = item.post.as_mut() else { continue };
            let Some(accepts) = crate::media_type::accepts(path, "post") else { continue };
            let types = match accepts {
                crate::media_type::Accepts::Json => "`application/json` (or `application/*+json`)",
                crate::media_type::Accepts::JsonOrText => {
                    "`application/json` (or `application/*+json`), or `text/plain` with a JSON body as \
                     Segment's analytics.js sends"
                }
            };
            let description = format!(
                "Unsupported `Content-Encoding` (only `gzip` or `identity`), or a body declared as another \
                 media type than {types}, or with a charset other than UTF-8 (`unsupported_media_type`; \
                 no `Content-Type` is taken as JSON)"
            );
            operation.responses.responses.insert("415".into(), error_response(description));
            if accepts == crate::media_type::Accepts::JsonOrText {
                if let Some(body) = operation.request_body.as_mut() {
                    if let Some(json) = body.content.get("application/json").cloned() {
                        body.content.insert("text/plain".into(), json);
                    }
                }
            }
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "GameMetrics gateway",
        description = "Ingest of game events, analytics queries, privacy (erasure, export), health and metrics. Errors answer `{\"error\": code, \"reason\": text}`.",
        license(name = "Apache-2.0"),
        version = "0.1.0",
    ),
    paths(
        ingest::post_events,
        compat::segment_batch,
        compat::segment_track,
        compat::segment_identify,
        compat::legacy_event,
        gameanalytics::init_v2,
        gameanalytics::init_remote_configs,
        gameanalytics::events,
        queries::player_profile,
        queries::active_users,
        queries::sessions,
        queries::revenue,
        queries::funnel,
        games::retention,
        games::new_returning,
        games::monetisation,
        games::leaderboard,
        games::standing,
        games::recommendations,
        privacy::post_erasure,
        privacy::list_erasures,
        privacy::verify_receipt,
        privacy::get_erasure,
        privacy::get_export,
        privacy::get_audit,
        me::me,
        me::dev_sign_in,
        status::get_status,
        health::live,
        health::ready,
        health::metrics,
        health::openapi_json,
    ),
    components(schemas(error::ErrorBody)),
    modifiers(&SecuritySchemes, &MediaTypes),
    tags(
        (name = "ingest", description = "Posting events"),
        (name = "compatibility", description = "Ingest in the Segment, GameAnalytics and previous-platform formats (docs/compat.md)"),
        (name = "queries", description = "Read models: profiles and analytics"),
        (name = "privacy", description = "Erasure, its status and receipt, export, the audit trail (compliance role)"),
        (name = "operations", description = "Health, metrics, this document"),
    )
)]
struct ApiDoc;

/// The OpenAPI document of every route of the gateway.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The document as pretty JSON, built once.
pub fn openapi_pretty() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| openapi().to_pretty_json().unwrap_or_else(|_| "{}".to_string()))
}

/// Declares the error answers that several routes share, written once: a type to name in a
/// `#[utoipa::path]`'s `responses(...)`, each status with its description and an
/// [`crate::ErrorBody`].
macro_rules! error_answers {
    ($(#[$attr:meta])* $name:ident { $($status:literal => $description:expr),+ $(,)? }) => {
        $(#[$attr])*
        pub(crate) struct $name;

        impl utoipa::IntoResponses for $name {
            fn responses(
            ) -> std::collections::BTreeMap<String, utoipa::openapi::RefOr<utoipa::openapi::Response>> {
                [$(($status, $description)),+]
                    .into_iter()
                    .map(|(status, description)| (status.to_string(), $crate::openapi::error_response(description)))
                    .collect()
            }
        }
    };
}
pub(crate) use error_answers;

/// An error answer: `description`, with an [`crate::ErrorBody`] as JSON.
pub(crate) fn error_response(description: impl Into<String>) -> RefOr<Response> {
    ResponseBuilder::new()
        .description(description)
        .content("application/json", ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build())
        .build()
        .into()
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_registered_route_is_in_the_document() {
        let doc = openapi();
        for (path, method, _) in crate::routes() {
            let item = doc.paths.paths.get(path).unwrap_or_else(|| panic!("{path} is not in the OpenAPI document"));
            let json = serde_json::to_value(item).unwrap();
            assert!(json.get(method).is_some(), "{method} {path} is not in the OpenAPI document");
        }
    }

    #[test]
    fn every_documented_path_is_registered() {
        let registered: Vec<&str> = crate::routes().iter().map(|(p, _, _)| *p).collect();
        for path in openapi().paths.paths.keys() {
            assert!(registered.contains(&path.as_str()), "{path} is documented but not registered");
        }
    }

    /// Fails when `docs/openapi.json` no longer matches the handlers. Regenerate with
    /// `GM_BLESS=1 cargo test -p gm-gateway openapi`.
    #[test]
    fn checked_in_openapi_document_is_up_to_date() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json");
        let text = format!("{}\n", openapi_pretty());
        if std::env::var_os("GM_BLESS").is_some() {
            std::fs::write(path, &text).unwrap();
        }
        let on_disk = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("{path}: {e}; run GM_BLESS=1 cargo test -p gm-gateway openapi"));
        assert_eq!(on_disk, text, "{path} is stale; run GM_BLESS=1 cargo test -p gm-gateway openapi");
    }
}
