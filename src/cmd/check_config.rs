//! `token-keeper check-config`: the config validated as the daemon would at start, printed
//! resolved.

use std::io::Write as _;
use std::path::Path;

use crate::app::load_config;

/// `token-keeper check-config`: validates and prints the resolved config.
pub(super) fn run(config_path: &Path) -> anyhow::Result<()> {
    let config = load_config(config_path)?;
    let mut out = std::io::stdout().lock();
    write!(out, "{config}")?;
    Ok(())
}
