//! JSON Schema of the public event format, checked in under `schemas/json/`.

use crate::envelope::{PublicBatch, PublicEvent};

/// `(file name, pretty JSON)` for every exported schema.
pub fn exported() -> Vec<(&'static str, String)> {
    let render = |schema: schemars::Schema| {
        let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
        text.push('\n');
        text
    };
    vec![
        ("event.schema.json", render(schemars::schema_for!(PublicEvent))),
        ("batch.schema.json", render(schemars::schema_for!(PublicBatch))),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// Fails when `schemas/json/` no longer matches the Rust types. Regenerate with
    /// `GM_BLESS=1 cargo test -p gm-schemas json_schema`.
    #[test]
    fn checked_in_json_schema_is_up_to_date() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("json");
        for (name, text) in exported() {
            let path = dir.join(name);
            if std::env::var_os("GM_BLESS").is_some() {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(&path, &text).unwrap();
            }
            let on_disk = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}; run GM_BLESS=1 cargo test -p gm-schemas", path.display()));
            assert_eq!(on_disk, text, "{} is stale; run GM_BLESS=1 cargo test -p gm-schemas", path.display());
        }
    }

    #[test]
    fn schema_names_every_event_type() {
        let (_, event) = &exported()[0];
        for t in crate::EventBody::TYPES {
            assert!(event.contains(&format!("\"{t}\"")), "{t} missing from the JSON Schema");
        }
    }
}
