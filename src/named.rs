//! Values chosen by name from a fixed list (`--model`, `--dispatch`): one parser, one error
//! wording and one config-file deserializer for all of them.

use serde::Deserialize;
use serde::de::{self, Deserializer};

/// A value picked by name from a fixed list.
pub(crate) trait Named: Copy + 'static {
    /// What the value is called in errors ("model", "dispatch").
    const WHAT: &'static str;
    /// Every value, in the order errors list them.
    fn all() -> &'static [Self];
    /// The name used on the command line and in the config file.
    fn name_of(self) -> &'static str;
}

/// The value named `s`, or an error listing the names.
pub(crate) fn parse<T: Named>(s: &str) -> Result<T, String> {
    T::all()
        .iter()
        .copied()
        .find(|v| v.name_of() == s)
        .ok_or_else(|| {
            let names: Vec<&str> = T::all().iter().map(|v| v.name_of()).collect();
            format!(
                "unknown {} '{s}' (expected one of: {})",
                T::WHAT,
                names.join(", ")
            )
        })
}

/// Deserializes a value from its name (config files).
pub(crate) fn deserialize<'de, T: Named, D: Deserializer<'de>>(d: D) -> Result<T, D::Error> {
    let s = String::deserialize(d)?;
    parse(&s).map_err(de::Error::custom)
}
