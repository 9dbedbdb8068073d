//! The managed token store in a file ([`super::SimOptions::state_file`]), as a gateway with the
//! persistent `AliasBasedTokenStateService` keeps its token state across restarts (docs/knox.md
//! §6.3): a token issued before a restart can still be renewed, revoked, listed, enabled and
//! disabled after it, and the Bearer topology still accepts it. The signing key is the bundled
//! dev key, so such a token's signature still verifies too.
//!
//! The file is the simulator's own JSON, not Knox's keystore: a format marker and every token
//! Knox knows, with all that `store` keeps of it. It is rewritten whole after every change, to a
//! temporary file in the same directory that is then renamed over it, so a reader (or a
//! simulator killed mid-write) sees the old or the new store, never a mix. Like any file
//! `tempfile` creates, it is readable by its owner only. It holds token ids and metadata, never
//! a JWT.

use std::io::{self, Write as _};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::store::{StoredToken, TokenStore};

/// The first field of every state file: whose file it is and which layout.
const FORMAT: &str = "token-keeper-sim-state/1";

/// The state file as written; tokens in the order they were stored.
#[derive(Serialize)]
struct Written<'a> {
    format: &'static str,
    tokens: Vec<&'a StoredToken>,
}

/// The state file as read.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Read {
    format: String,
    tokens: Vec<StoredToken>,
}

/// Reads the store from `path`: empty if the file does not exist, an error naming the file if
/// it cannot be read or is not a state file this simulator wrote.
pub(super) fn load(path: &Path) -> io::Result<TokenStore> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(TokenStore::default()),
        Err(err) => {
            let message = format!("reading the simulator state file {}: {err}", path.display());
            return Err(io::Error::new(err.kind(), message));
        }
    };
    parse(&bytes).map_err(|err| {
        let message = format!("the simulator state file {} is malformed: {err}", path.display());
        io::Error::new(io::ErrorKind::InvalidData, message)
    })
}

/// The store in `bytes`, or what is wrong with them.
fn parse(bytes: &[u8]) -> Result<TokenStore, String> {
    let file: Read = serde_json::from_slice(bytes).map_err(|err| err.to_string())?;
    if file.format != FORMAT {
        return Err(format!("format {:?} is not {FORMAT:?}", file.format));
    }
    let mut store = TokenStore::default();
    for token in file.tokens {
        if store.get(&token.id).is_some() {
            return Err(format!("token {} is stored twice", token.id));
        }
        store.add(token);
    }
    Ok(store)
}

/// Writes every token Knox knows to `path`, atomically: a temporary file in the same directory,
/// flushed to disk, then renamed over `path`. Errors name the file.
pub(super) fn save(path: &Path, store: &TokenStore) -> io::Result<()> {
    write_atomic(path, store).map_err(|err| {
        io::Error::new(err.kind(), format!("writing the simulator state file {}: {err}", path.display()))
    })
}

/// [`save`] without the file name in its errors.
fn write_atomic(path: &Path, store: &TokenStore) -> io::Result<()> {
    let mut json = serde_json::to_vec_pretty(&Written { format: FORMAT, tokens: store.known().collect() })?;
    json.push(b'\n');
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut temp = tempfile::Builder::new().prefix(".token-keeper-sim-state").tempfile_in(dir)?;
    temp.write_all(&json)?;
    temp.as_file().sync_all()?;
    temp.persist(path).map_err(|err| err.error)?;
    Ok(())
}
