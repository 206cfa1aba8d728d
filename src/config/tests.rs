use super::*;

fn base() -> Config {
    Config::defaults()
}

#[test]
fn defaults_are_valid() {
    base().validate().unwrap();
}

/// config/default.toml is the one source of defaults: every value in it is required, so
/// no Rust default (`#[serde(default)]`, a `Default` impl) can stand in for it and drift.
#[test]
fn every_default_is_required_from_the_file() {
    let settings: Vec<(usize, &str)> = DEFAULTS
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.starts_with('#') && !line.starts_with('[') && line.contains(" = "))
        .collect();
    assert!(settings.len() > 60, "{} settings", settings.len());
    for (at, line) in settings {
        let without: String =
            DEFAULTS.lines().enumerate().filter(|(i, _)| *i != at).map(|(_, l)| format!("{l}\n")).collect();
        let parsed = config::Config::builder()
            .add_source(config::File::from_str(&without, config::FileFormat::Toml))
            .build()
            .and_then(|c| c.try_deserialize::<Config>());
        assert!(parsed.is_err(), "`{line}` has a second default in Rust");
    }
}

/// The libraries' defaults (their tests' configuration) are read from the same file.
#[test]
fn the_libraries_defaults_are_the_files() {
    let c = base();
    assert_eq!(format!("{:?}", c.actors()), format!("{:?}", gm_actors::ActorsConfig::default()));
    assert_eq!(c.limits(), gm_schemas::validate::Limits::default());
    assert_eq!(c.rate_limits(), gm_gateway::RateLimitConfig::default());
    let jwt = gm_gateway::JwtConfig::default();
    assert_eq!((&jwt.roles_claim, &jwt.games_claim), (&c.auth.roles_claim, &c.auth.games_claim));
    assert_eq!(jwt.leeway, Duration::from_secs(c.auth.jwt_leeway_secs));
    assert_eq!(gm_gateway::GatewayConfig::default().request_timeout, c.request_timeout());
}

#[test]
fn the_log_namespace_is_a_bare_name() {
    let mut c = base();
    for ok in ["", "sbs", "eu-prod_2"] {
        c.log.namespace = ok.into();
        c.validate().unwrap();
    }
    c.log.namespace = "sbs.".into();
    let e = c.validate().unwrap_err().to_string();
    assert!(e.contains("log.namespace") && e.contains("set 'sbs'"), "{e}");
    c.log.namespace = "a b".into();
    assert!(c.validate().unwrap_err().to_string().contains("log.namespace"));
}

#[test]
fn development_credentials_are_told_apart_from_the_deployments_own() {
    let mut c = base();
    assert!(c.uses_development_api_keys() && c.uses_development_analyst_token());
    c.api_keys = ApiKeys::Text("demo=demo-key-0001".into());
    assert!(!c.uses_development_api_keys());
    c.auth.dev_analyst_token = "another-token-of-ours".into();
    assert!(!c.uses_development_analyst_token());
    let mut c = base();
    c.mode = Mode::Production;
    assert!(!c.uses_development_analyst_token(), "never accepted in production, so never shown");
}

#[test]
fn production_refuses_every_development_credential_naming_the_setting() {
    let refusal = |c: &Config| c.refuse_development_credentials().unwrap_err().to_string();
    let mut c = base();
    assert!(c.refuse_development_credentials().is_ok(), "the embedded default uses them");
    c.mode = Mode::Production;
    // GM_API_KEYS unset: the compiled-in keys.
    let e = refusal(&c);
    assert!(e.starts_with("configuration setting `api_keys`: ") && e.contains("GM_API_KEYS"), "{e}");
    assert_eq!(e.lines().count(), 1, "{e}");
    // One development key among the deployment's own, plain or hashed.
    c.api_keys = ApiKeys::Text("space-race=our-own-key-1,sim-2=sim-key-0002".into());
    let e = refusal(&c);
    assert!(e.contains("`api_keys`") && e.contains("development key sim-key-0002"), "{e}");
    // `printf %s demo-key-0001 | sha256sum`
    let hashed = "sha256:9d88e2064f8bb678647f49e5c9bfd120fff6dd1ecfe7b806b7bfd1936853f600";
    c.api_keys = ApiKeys::Text(format!("space-race=our-own-key-1,demo={hashed}"));
    assert!(refusal(&c).contains("demo-key-0001"), "{}", refusal(&c));
    // From a file: the file is named.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keys");
    std::fs::write(&file, "space-race=our-own-key-1\ndemo=demo-key-0001\n").unwrap();
    c.api_keys_file = Some(file.clone());
    assert!(refusal(&c).starts_with("configuration setting `api_keys_file`: "), "{}", refusal(&c));
    std::fs::write(&file, "space-race=our-own-key-1\n").unwrap();
    assert!(c.refuse_development_credentials().is_ok());
    c.api_keys_file = None;
    c.api_keys = ApiKeys::Text("space-race=our-own-key-1".into());
    assert!(c.refuse_development_credentials().is_ok());
    // A development token set for production (the compiled-in one is never read there).
    c.auth.dev_analyst_token = "a-token-someone-set-0001".into();
    assert!(refusal(&c).starts_with("configuration setting `auth.dev_analyst_token`: "), "{}", refusal(&c));
    c.auth.dev_analyst_token = Config::defaults().auth.dev_analyst_token;
    c.auth.dev_compliance_token = "a-compliance-token-someone-set".into();
    assert!(refusal(&c).starts_with("configuration setting `auth.dev_compliance_token`: "), "{}", refusal(&c));
}

#[test]
fn the_development_compliance_token_is_the_embedded_defaults_only() {
    let mut c = base();
    assert_eq!(c.dev_compliance_token().unwrap(), Some(Config::defaults().auth.dev_compliance_token));
    assert!(c.uses_development_compliance_token());
    c.auth.dev_compliance_token = "our-own-compliance-token".into();
    assert!(!c.uses_development_compliance_token());
    c.auth.dev_compliance_token = "short".into();
    assert!(c.validate().unwrap_err().to_string().contains("auth.dev_compliance_token"));
    let mut c = base();
    c.mode = Mode::Production;
    assert_eq!(c.dev_compliance_token().unwrap(), None, "never accepted in production");
}

#[test]
fn keyless_legacy_ingest_is_off_by_default_and_always_rate_limited() {
    let mut c = base();
    assert!(c.keyless_legacy().unwrap().games.is_empty(), "off unless games are listed");
    c.compat.keyless_games = " sim-1, old-game ".into();
    let k = c.keyless_legacy().unwrap();
    assert_eq!(k.games.iter().map(|g| g.as_str()).collect::<Vec<_>>(), ["old-game", "sim-1"]);
    assert!(k.per_address_per_second > 0 && !k.trust_forwarded_for);
    c.compat.keyless_per_address_per_second = 0;
    let e = c.validate().unwrap_err().to_string();
    assert!(e.contains("compat.keyless_per_address_per_second"), "{e}");
    c.compat.keyless_per_address_per_second = 5;
    c.compat.keyless_games = "Not A Game".into();
    let e = c.validate().unwrap_err().to_string();
    assert!(e.contains("compat.keyless_games"), "{e}");
}

#[test]
fn funnel_order_is_per_game_and_checked() {
    let mut c = base();
    assert!(c.funnel_orders().unwrap().is_empty(), "natural order unless configured");
    c.funnel.order = " space-race = tutorial, level-1 ,level-2 ; farm=plant ".into();
    let orders = c.funnel_orders().unwrap();
    assert_eq!(orders["space-race"], ["tutorial", "level-1", "level-2"]);
    assert_eq!(orders["farm"], ["plant"]);
    for (bad, why) in [
        ("space-race", "is not game=level"),
        ("Not A Game=l1", "'Not A Game'"),
        ("space-race=l1,,l2", "an empty level id"),
        ("space-race=l1,l2,l1", "level 'l1' listed twice"),
        ("farm=a;farm=b", "game 'farm' listed twice"),
    ] {
        c.funnel.order = bad.into();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("funnel.order") && e.contains(why), "{bad}: {e}");
    }
}

#[test]
fn bad_bind_names_the_setting() {
    let mut c = base();
    c.http.bind = "nowhere".into();
    let e = c.validate().unwrap_err().to_string();
    assert!(e.contains("http.bind"), "{e}");
}

#[test]
fn api_keys_parse_from_text_and_reject_bad_pairs() {
    let mut c = base();
    c.api_keys = ApiKeys::Text("space-race=secret-key-1, space-race=secret-key-2".into());
    assert_eq!(c.api_key_pairs().unwrap().len(), 2);
    c.api_keys = ApiKeys::Text("Bad Game=secret-key-1".into());
    assert!(c.validate().unwrap_err().to_string().contains("api_keys"));
    c.api_keys = ApiKeys::Text("game=short".into());
    assert!(c.validate().unwrap_err().to_string().contains("shorter than 8"));
    c.api_keys = ApiKeys::Text("no-equals-sign".into());
    assert!(c.validate().is_err());
}

#[test]
fn api_keys_come_from_a_file_and_cors_origins_from_a_list() {
    let mut c = base();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("api-keys");
    std::fs::write(&file, "space-race=secret-key-1\nspace-race=secret-key-2,farm=secret-key-3\n").unwrap();
    c.api_keys_file = Some(file);
    let pairs = c.api_key_pairs().unwrap();
    assert_eq!(pairs.len(), 3, "{pairs:?}");
    assert_eq!(pairs[2].1, "secret-key-3");
    c.api_keys_file = Some(dir.path().join("missing"));
    assert!(c.validate().unwrap_err().to_string().contains("api_keys_file"));
    c.http.cors_allowed_origins = " https://play.example.com, ,https://dash.example.com ".into();
    assert_eq!(c.cors_allowed_origins(), ["https://play.example.com", "https://dash.example.com"]);
}

#[test]
fn auth_settings_are_checked_and_secrets_read_from_files() {
    let mut c = base();
    c.auth.jwks_url = Some("https://idp.example/jwks".into());
    assert!(c.validate().unwrap_err().to_string().contains("auth.issuer"));
    c.auth.issuer = "https://idp.example".into();
    c.auth.audience = "gamemetrics".into();
    c.validate().unwrap();
    c.auth.signing_secrets = "space-race=short".into();
    assert!(c.validate().unwrap_err().to_string().contains("auth.signing_secrets"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("secrets");
    std::fs::write(&file, "space-race=0123456789abcdef0123\nfarm=fedcba9876543210fedc\n").unwrap();
    c.auth.signing_secrets_file = Some(file);
    assert_eq!(c.signing_secret_pairs().unwrap().len(), 2);
    c.auth.metrics_token_file = Some(dir.path().join("missing"));
    assert!(c.validate().unwrap_err().to_string().contains("auth.metrics_token"));
    c.auth.metrics_token_file = None;
    c.auth.revoked_keys = " abcdef0123456789 , 01234567".into();
    assert_eq!(c.revoked_keys(), ["abcdef0123456789", "01234567"]);
    assert!(!format!("{c:?}").contains("0123456789abcdef0123"));
}

#[test]
fn gameanalytics_keys_map_a_game_key_to_one_game_with_rotating_secrets() {
    let mut c = base();
    assert!(c.gameanalytics_keys().unwrap().is_empty(), "none by default");
    c.gameanalytics.keys = "space-race=5c6bcb5402204249437fb5a7a80a4959:old-secret-key-000001,\
                            space-race=5c6bcb5402204249437fb5a7a80a4959:new-secret-key-000002"
        .into();
    let keys = c.gameanalytics_keys().unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[1].2, "new-secret-key-000002");
    assert!(!format!("{c:?}").contains("new-secret-key-000002"));
    c.gameanalytics.keys = "space-race=5c6bcb5402204249437fb5a7a80a4959:short".into();
    assert!(c.validate().unwrap_err().to_string().contains("gameanalytics.keys"));
    c.gameanalytics.keys = "a=game-key-0001:secret-key-00000001,b=game-key-0001:secret-key-00000002".into();
    assert!(c.validate().unwrap_err().to_string().contains("two games"));
    c.gameanalytics.keys = "a=bad/key!:secret-key-00000001".into();
    assert!(c.validate().unwrap_err().to_string().contains("game key of a"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ga-keys");
    std::fs::write(&file, "farm=game-key-farm-01:secret-key-farm-0001\n").unwrap();
    c.gameanalytics.keys_file = Some(file);
    assert_eq!(c.gameanalytics_keys().unwrap()[0].1, "game-key-farm-01");
}
