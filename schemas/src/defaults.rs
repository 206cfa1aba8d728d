//! config/default.toml, compiled in: the one place every default lives. The binary layers
//! its file and environment over it; a library builds its defaults by reading its section
//! here, so no second copy of a value can drift from the file.

use serde::de::DeserializeOwned;

/// The text of config/default.toml.
pub const TOML: &str = include_str!("../../config/default.toml");

/// The table at `path` (dotted, e.g. `"actors"` or `"kafka.producer"`) of config/default.toml.
///
/// # Panics
/// When the section is missing or does not have the shape of `T`: the compiled-in file is
/// part of the program, and the tests of each reader parse their section.
pub fn section<T: DeserializeOwned>(path: &str) -> T {
    static ROOT: std::sync::OnceLock<toml::Table> = std::sync::OnceLock::new();
    let root = ROOT.get_or_init(|| toml::from_str(TOML).expect("config/default.toml is valid TOML"));
    let mut value = toml::Value::Table(root.clone());
    for key in path.split('.') {
        value = match value {
            toml::Value::Table(mut table) => {
                table.remove(key).unwrap_or_else(|| panic!("config/default.toml has no [{path}]"))
            }
            _ => panic!("config/default.toml: {path} is not a table"),
        };
    }
    value.try_into().unwrap_or_else(|e| panic!("config/default.toml [{path}]: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_section_is_read_and_a_missing_one_named() {
        #[derive(serde::Deserialize)]
        struct Limits {
            max_events: usize,
        }
        assert!(section::<Limits>("limits").max_events > 0);
        let missing = std::panic::catch_unwind(|| section::<toml::Table>("no_such_section")).unwrap_err();
        assert!(missing.downcast_ref::<String>().unwrap().contains("[no_such_section]"));
    }
}
