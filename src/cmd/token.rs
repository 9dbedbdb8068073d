//! `token-keeper token [--cluster NAME] [--format F]`: the published token on stdout.

use std::io::Write as _;
use std::path::Path;
use std::time::SystemTime;

use anyhow::{bail, Context as _};

use crate::config::{self, Env, Format};
use crate::output;

/// `token-keeper token`: writes the published token in `format` to stdout, byte for byte
/// what an output file of that format holds.
pub(super) fn run(config_path: &Path, cluster: Option<&str>, format: Format) -> anyhow::Result<()> {
    let config = config::load(config_path, &Env::from_process())?;
    let c = config.pick(config_path, cluster).map_err(anyhow::Error::msg)?;
    let p = output::read_published(c)?.with_context(|| {
        format!("no token is published for cluster {:?} yet (is token-keeper running?)", c.name)
    })?;
    if p.remaining_ms(SystemTime::now()).is_some_and(|ms| ms <= 0) {
        bail!("the published token for cluster {:?} has expired (is token-keeper running?)", c.name);
    }
    let mut out = std::io::stdout().lock();
    out.write_all(&output::render(format, &p, c.env_var()))?;
    out.flush()?;
    Ok(())
}
