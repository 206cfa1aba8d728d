//! What `gamemetrics` (or `gamemetrics serve`) prints once it listens. On the embedded
//! default: the URL, the development credentials of the loaded configuration and two curl
//! commands to try, and the web console's address. The development key and token of config/default.toml are shown; a key or
//! token this deployment configured itself is a secret and is never printed (the commands
//! then read it from a shell variable). In production mode: only where it listens.

use crate::config::{Config, Mode};
use crate::platform::Roles;

/// The text (whole lines) to print on stderr when the process is ready to serve at `url`.
pub fn banner(config: &Config, url: &str, roles: Roles) -> String {
    if config.mode != Mode::Embedded || !roles.gateway {
        return format!("GameMetrics is listening on {url} ({})\n", role_names(roles));
    }
    let mut out = format!("GameMetrics is listening on {url} (embedded, data in {})\n", config.data_dir.display());
    // Validated at start, so no error can show up here; without keys there is nothing to try.
    let Some((game, key)) = config.api_key_pairs().ok().and_then(|pairs| pairs.into_iter().next()) else {
        return out;
    };
    let key = config.uses_development_api_keys().then_some(key);
    let token = match config.dev_analyst_token() {
        Ok(Some(token)) => Some(config.uses_development_analyst_token().then_some(token)),
        _ => None,
    };
    if key.is_some() || matches!(token, Some(Some(_))) {
        out.push_str("\nDevelopment credentials (config/default.toml; replace them in any real deployment):\n");
    } else {
        out.push('\n');
    }
    let mut rows = vec![match &key {
        Some(key) => (format!("game {game}, API key (ingest only):"), key.clone()),
        None => (
            format!("game {game}, API key (ingest only):"),
            "yours, not printed (export API_KEY=… for the commands below)".into(),
        ),
    }];
    match &token {
        Some(Some(token)) => rows.push(("analyst token (reads):".into(), token.clone())),
        Some(None) => {
            rows.push(("analyst token (reads):".into(), "yours, not printed (export ANALYST_TOKEN=…)".into()))
        }
        None => {}
    }
    let width = rows.iter().map(|(label, _)| label.chars().count()).max().unwrap_or(0);
    for (label, value) in rows {
        out.push_str(&format!("  {label:<width$} {value}\n"));
    }

    let player = "alice";
    let bearer = |secret: &Option<String>, variable: &str| match secret {
        Some(secret) => shell_quote(&format!("Authorization: Bearer {secret}")),
        None => format!("\"Authorization: Bearer ${variable}\""),
    };
    out.push_str(&format!(
        "\nSend an event:\n  curl -s -X POST {url}/v1/events -H {} \\\n    -H 'Content-Type: application/json' \\\n    \
         -d '{{\"events\":[{{\"type\":\"session_start\",\"player_id\":\"{player}\",\"client_ts\":\"'$(date -u +%FT%TZ)'\"}}]}}'\n",
        bearer(&key, "API_KEY"),
    ));
    match &token {
        Some(token) => out.push_str(&format!(
            "Read it back (a moment later, once the projections applied it):\n  curl -s {url}/v1/players/{game}/{player} -H {}\n",
            bearer(token, "ANALYST_TOKEN"),
        )),
        None => out.push_str("Reads need an analyst: a JWT from the configured identity provider (auth.jwks_*).\n"),
    }
    let sign_in = match &token {
        Some(Some(_)) => "one-click development sign-in",
        _ => "sign in with an analyst or compliance token",
    };
    out.push_str(&format!("\nThe web console: {url}/ ({sign_in})\n"));
    out.push_str("The API: docs/openapi.json; more examples: README.md, \"A first event\". Ctrl-C stops.\n");
    out
}

fn role_names(roles: Roles) -> String {
    let names: Vec<&str> = [(roles.gateway, "gateway"), (roles.actors, "actors"), (roles.projections, "projections")]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect();
    names.join(", ")
}

/// `text` as one word for a POSIX shell.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "http://127.0.0.1:8080";

    #[test]
    fn the_embedded_default_shows_the_url_its_development_credentials_and_curls_to_try() {
        let config = Config::defaults();
        let text = banner(&config, URL, Roles::ALL);
        // Read from the configuration, not written again here.
        let (game, key) = config.api_key_pairs().unwrap().remove(0);
        let token = config.dev_analyst_token().unwrap().unwrap();
        assert!(text.starts_with("GameMetrics is listening on http://127.0.0.1:8080 (embedded"), "{text}");
        let key_line =
            text.lines().find(|l| l.starts_with(&format!("  game {game}, API key (ingest only): "))).unwrap();
        let token_line = text.lines().find(|l| l.starts_with("  analyst token (reads): ")).unwrap();
        assert!(key_line.ends_with(&format!(" {key}")) && token_line.ends_with(&format!(" {token}")), "{text}");
        assert_eq!(key_line.find(&key), token_line.find(&token), "values in one column:\n{text}");
        assert!(text.contains(&format!("curl -s -X POST {URL}/v1/events -H 'Authorization: Bearer {key}'")), "{text}");
        assert!(text.contains(&format!("curl -s {URL}/v1/players/{game}/alice -H 'Authorization: Bearer {token}'")));
        assert!(text.contains(&format!("\nThe web console: {URL}/ (one-click development sign-in)\n")), "{text}");
    }

    #[test]
    fn keys_and_tokens_of_the_deployment_itself_are_never_printed() {
        let mut config = Config::defaults();
        config.api_keys = crate::config::ApiKeys::Text("space-race=our-own-key-1,farm=farm-key-0001".into());
        config.auth.dev_analyst_token = "our-own-analyst-token".into();
        let text = banner(&config, URL, Roles::ALL);
        for secret in ["our-own-key-1", "farm-key-0001", "our-own-analyst-token"] {
            assert!(!text.contains(secret), "{secret} printed:\n{text}");
        }
        assert!(
            text.contains(
                "game space-race, API key (ingest only): yours, not printed (export API_KEY=… for the commands below)"
            ),
            "{text}"
        );
        assert!(text.lines().any(|l| l.starts_with("  analyst token (reads): ")
            && l.ends_with("yours, not printed (export ANALYST_TOKEN=…)")));
        assert!(text.contains(r#"-H "Authorization: Bearer $API_KEY""#), "{text}");
        assert!(text.contains(r#"/v1/players/space-race/alice -H "Authorization: Bearer $ANALYST_TOKEN""#), "{text}");
        assert!(!text.contains("Development credentials"), "{text}");
        assert!(
            text.contains(&format!("The web console: {URL}/ (sign in with an analyst or compliance token)")),
            "{text}"
        );

        // The development keys, from a Secret file: the deployment's, so not printed either.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("api-keys");
        std::fs::write(&file, "sim-1=sim-key-0001\n").unwrap();
        let mut config = Config::defaults();
        config.api_keys_file = Some(file);
        let text = banner(&config, URL, Roles::ALL);
        assert!(!text.contains("sim-key-0001"), "{text}");
        // The development token is still the development one.
        assert!(text.contains(&Config::defaults().auth.dev_analyst_token), "{text}");

        config.auth.dev_analyst_token = String::new();
        let text = banner(&config, URL, Roles::ALL);
        assert!(text.contains("Reads need an analyst: a JWT"), "{text}");
    }

    #[test]
    fn a_quote_in_a_development_key_stays_one_shell_word() {
        assert_eq!(shell_quote("Authorization: Bearer it's"), r"'Authorization: Bearer it'\''s'");
    }

    #[test]
    fn production_mode_prints_no_credential() {
        let mut config = Config::defaults();
        config.mode = Mode::Production;
        let development = Config::defaults();
        let key = development.api_key_pairs().unwrap().remove(0).1;
        let token = development.auth.dev_analyst_token;
        for roles in [Roles::ALL, Roles::GATEWAY, Roles::ACTORS, Roles::PROJECTIONS] {
            let text = banner(&config, "http://10.0.0.5:8080", roles);
            assert!(!text.contains(&key) && !text.contains(&token) && !text.contains("Bearer"), "{text}");
            assert_eq!(text.lines().count(), 1, "{text}");
        }
        assert_eq!(
            banner(&config, "http://10.0.0.5:8080", Roles::ACTORS),
            "GameMetrics is listening on http://10.0.0.5:8080 (actors)\n"
        );
    }
}
