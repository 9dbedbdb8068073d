//! The labels token-keeper puts on every token it acquires (docs/knox.md §2.1), and how it
//! recognises its own tokens in Knox's list again (§4.3).
//!
//! Five query parameters: `comment=token-keeper <id> on <host> for <cluster>` and the custom
//! metadata `md_tk_install`, `md_tk_host`, `md_tk_cluster` and, for a token to keep,
//! `md_tk_generation`. Knox stores them with managed tokens only, and a release that does not
//! know a parameter ignores it: 1.6 keeps the comment only, 2.0 and later both, older releases
//! neither. So a token is this installation's when its `tk_install` metadata is this
//! installation's id, or, without that metadata, when its comment carries `token-keeper <id> `.
//! The comment of a token that is not kept ends in ` (exec)` or ` (doctor)`.

use serde_json::Value;
use url::Url;

use super::wire::TokenMetadata;
use crate::config::Identity;

/// Why a token is acquired. Only a kept token is ever published; the others say what they
/// are in their comment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A token to publish and keep (`run`, `once`) as this generation of the cluster's token.
    Keep {
        /// The generation it will be published as.
        generation: u64,
    },
    /// A token `exec` hands to its command and leaves to expire, unpublished: it is in use
    /// although nobody holds it, so the orphan sweep leaves it alone.
    Exec,
    /// `doctor`'s test token, revoked at once.
    Doctor,
}

/// What a `doctor` token's comment ends with.
pub const DOCTOR_SUFFIX: &str = " (doctor)";

/// What an `exec` token's comment ends with.
pub const EXEC_SUFFIX: &str = " (exec)";

/// The custom metadata name that holds the installation id (`md_tk_install`).
pub const INSTALL_KEY: &str = "tk_install";

/// The custom metadata name that holds the host's name (`md_tk_host`).
pub const HOST_KEY: &str = "tk_host";

/// The custom metadata name that holds the cluster's name (`md_tk_cluster`).
pub const CLUSTER_KEY: &str = "tk_cluster";

/// The parameters that label a token `identity` acquires for `cluster`, in the order sent.
pub fn label_pairs(identity: &Identity, cluster: &str, purpose: Purpose) -> Vec<(&'static str, String)> {
    let mut comment = format!("token-keeper {} on {} for {cluster}", identity.installation_id, identity.host);
    match purpose {
        Purpose::Keep { .. } => {}
        Purpose::Exec => comment.push_str(EXEC_SUFFIX),
        Purpose::Doctor => comment.push_str(DOCTOR_SUFFIX),
    }
    let mut pairs = vec![
        ("comment", comment),
        ("md_tk_install", identity.installation_id.clone()),
        ("md_tk_host", identity.host.clone()),
        ("md_tk_cluster", cluster.to_owned()),
    ];
    if let Purpose::Keep { generation } = purpose {
        pairs.push(("md_tk_generation", generation.to_string()));
    }
    pairs
}

/// Appends the labels to `url`'s query, form-encoded by `url` (a space is `+`, `&` and `=`
/// are escaped), after whatever it already holds.
pub fn add_labels(url: &mut Url, identity: &Identity, cluster: &str, purpose: Purpose) {
    let mut query = url.query_pairs_mut();
    for (name, value) in label_pairs(identity, cluster, purpose) {
        query.append_pair(name, &value);
    }
}

/// Whether a token of Knox's list (its `metadata`) is the installation `installation_id`'s:
/// by its `tk_install` custom metadata when Knox keeps any, else by its comment.
pub fn is_mine(metadata: Option<&TokenMetadata>, installation_id: &str) -> bool {
    let Some(m) = metadata else { return false };
    match m.custom_metadata_map.as_ref().and_then(|map| map.get(INSTALL_KEY)) {
        Some(Value::String(id)) => id == installation_id,
        Some(_) => false,
        None => m.comment.as_deref().is_some_and(|c| c.contains(&format!("token-keeper {installation_id} "))),
    }
}

/// Whether a token of Knox's list is one `exec` handed to a command (its comment says so).
pub fn is_exec(metadata: Option<&TokenMetadata>) -> bool {
    metadata.and_then(|m| m.comment.as_deref()).is_some_and(|c| c.ends_with(EXEC_SUFFIX))
}

/// Which cluster a token of Knox's list was acquired for, by its `tk_cluster` custom metadata
/// when Knox keeps any, else by the `for <cluster>` of its comment (Knox 1.6).
pub fn cluster_of(metadata: Option<&TokenMetadata>) -> Option<String> {
    label_of(metadata, CLUSTER_KEY, |(_, cluster)| cluster)
}

/// Which host acquired a token of Knox's list, by its `tk_host` custom metadata when Knox
/// keeps any, else by the `on <host>` of its comment (Knox 1.6).
pub fn host_of(metadata: Option<&TokenMetadata>) -> Option<String> {
    label_of(metadata, HOST_KEY, |(host, _)| host)
}

/// The custom metadata `key` as a string, else the part of the comment `pick` takes.
fn label_of(
    metadata: Option<&TokenMetadata>,
    key: &str,
    pick: fn((String, String)) -> String,
) -> Option<String> {
    let m = metadata?;
    if let Some(Value::String(v)) = m.custom_metadata_map.as_ref().and_then(|map| map.get(key)) {
        return Some(v.clone());
    }
    m.comment.as_deref().and_then(parse_comment).map(pick)
}

/// The host and cluster of a label comment, `token-keeper <id> on <host> for <cluster>`
/// (with ` (doctor)` or ` (exec)` after it), as Knox 1.6 keeps it (docs/knox.md §2.5).
pub fn parse_comment(comment: &str) -> Option<(String, String)> {
    let rest = comment.strip_prefix("token-keeper ")?;
    let (_, rest) = rest.split_once(" on ")?;
    let (host, cluster) = rest.split_once(" for ")?;
    let cluster =
        [DOCTOR_SUFFIX, EXEC_SUFFIX].iter().find_map(|s| cluster.strip_suffix(s)).unwrap_or(cluster);
    (!host.is_empty() && !cluster.is_empty()).then(|| (host.to_owned(), cluster.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(id: &str, host: &str) -> Identity {
        Identity { installation_id: id.into(), host: host.into() }
    }

    #[test]
    fn labels_are_form_encoded_after_the_existing_query() {
        let base = "https://k.example/gateway/t/knoxtoken/api/v1/token";
        // (identity, cluster, purpose, existing query, expected query)
        let cases = [
            (
                identity("0123abcd", "edge-1"),
                "vc",
                Purpose::Keep { generation: 7 },
                None,
                "comment=token-keeper+0123abcd+on+edge-1+for+vc&md_tk_install=0123abcd\
                 &md_tk_host=edge-1&md_tk_cluster=vc&md_tk_generation=7",
            ),
            (
                identity("0123abcd", "edge-1"),
                "vc",
                Purpose::Exec,
                None,
                "comment=token-keeper+0123abcd+on+edge-1+for+vc+%28exec%29&md_tk_install=0123abcd\
                 &md_tk_host=edge-1&md_tk_cluster=vc",
            ),
            (
                identity("0123abcd", "edge-1"),
                "vc",
                Purpose::Doctor,
                Some("lifespan=PT1H"),
                "lifespan=PT1H&comment=token-keeper+0123abcd+on+edge-1+for+vc+%28doctor%29\
                 &md_tk_install=0123abcd&md_tk_host=edge-1&md_tk_cluster=vc",
            ),
            // Config and kernel reduce both to [A-Za-z0-9._-]; the encoding holds whatever comes.
            (
                identity("id", "h&md_tk_install=evil"),
                "a b+c/d?e#f%g",
                Purpose::Exec,
                None,
                "comment=token-keeper+id+on+h%26md_tk_install%3Devil+for+a+b%2Bc%2Fd%3Fe%23f%25g+%28exec%29\
                 &md_tk_install=id&md_tk_host=h%26md_tk_install%3Devil&md_tk_cluster=a+b%2Bc%2Fd%3Fe%23f%25g",
            ),
            (
                identity("id", "hôte"),
                "é",
                Purpose::Keep { generation: 1 },
                None,
                "comment=token-keeper+id+on+h%C3%B4te+for+%C3%A9&md_tk_install=id&md_tk_host=h%C3%B4te\
                 &md_tk_cluster=%C3%A9&md_tk_generation=1",
            ),
        ];
        for (who, cluster, purpose, query, want) in cases {
            let mut url = Url::parse(base).unwrap();
            url.set_query(query);
            add_labels(&mut url, &who, cluster, purpose);
            assert_eq!(url.query(), Some(want), "{who:?} {cluster:?}");
            assert_eq!(url.path(), "/gateway/t/knoxtoken/api/v1/token");
            // What Knox's getParameter reads back is exactly what was meant.
            let read: Vec<(String, String)> = url.query_pairs().into_owned().collect();
            let sent: Vec<(String, String)> =
                label_pairs(&who, cluster, purpose).into_iter().map(|(n, v)| (n.to_owned(), v)).collect();
            assert_eq!(read[read.len() - sent.len()..], sent[..], "{who:?}");
        }
    }

    #[test]
    fn a_token_is_mine_by_its_install_metadata_else_by_its_comment() {
        let meta = |json: serde_json::Value| -> TokenMetadata { serde_json::from_value(json).unwrap() };
        let id = "0123abcd";
        // (metadata, mine?)
        let cases = [
            // Knox 2.0+: the metadata decides, whatever the comment says.
            (meta(serde_json::json!({"customMetadataMap": {"tk_install": "0123abcd"}})), true),
            (
                meta(serde_json::json!({"comment": "token-keeper 0123abcd on h for c",
                    "customMetadataMap": {"tk_install": "fedc9876"}})),
                false,
            ),
            (meta(serde_json::json!({"customMetadataMap": {"tk_install": 42}})), false),
            (meta(serde_json::json!({"customMetadataMap": {"tk_install": "0123abcd0"}})), false),
            // No tk_install (Knox 1.6, or a token from before an upgrade): the comment.
            (meta(serde_json::json!({"comment": "token-keeper 0123abcd on h for c"})), true),
            (
                meta(serde_json::json!({"comment": "token-keeper 0123abcd on h for c (doctor)",
                    "customMetadataMap": {}})),
                true,
            ),
            (meta(serde_json::json!({"comment": "token-keeper 0123abcdef on h for c"})), false),
            (meta(serde_json::json!({"comment": "token-keeper 0123abc on h for c"})), false),
            (meta(serde_json::json!({"comment": "token-keeper 0123abcd"})), false),
            (meta(serde_json::json!({"comment": null, "customMetadataMap": null})), false),
            (meta(serde_json::json!({"customMetadataMap": "odd"})), false),
            (meta(serde_json::json!({})), false),
        ];
        for (m, want) in &cases {
            assert_eq!(is_mine(Some(m), id), *want, "{m:?}");
        }
        assert!(!is_mine(None, id), "no metadata at all");
    }

    #[test]
    fn a_token_names_its_cluster_by_metadata_else_by_comment() {
        let meta = |json: serde_json::Value| -> TokenMetadata { serde_json::from_value(json).unwrap() };
        // (metadata, cluster)
        let cases = [
            (
                serde_json::json!({"customMetadataMap": {"tk_cluster": "vc1"}, "comment": "token-keeper i on h for vc2"}),
                Some("vc1"),
            ),
            (serde_json::json!({"comment": "token-keeper i on h for vc2"}), Some("vc2")),
            (serde_json::json!({"comment": "token-keeper i on h for vc2 (doctor)"}), Some("vc2")),
            (
                serde_json::json!({"customMetadataMap": {"tk_cluster": 7}, "comment": "token-keeper i on h for vc2"}),
                Some("vc2"),
            ),
            (serde_json::json!({"comment": "token-keeper i on h"}), None),
            (serde_json::json!({"comment": "someone else's token for vc2"}), None),
            (serde_json::json!({}), None),
        ];
        for (json, want) in cases {
            let m = meta(json);
            assert_eq!(cluster_of(Some(&m)).as_deref(), want, "{m:?}");
        }
        assert_eq!(cluster_of(None), None);
    }

    #[test]
    fn exec_tokens_say_so_in_their_comment() {
        let meta = |json: serde_json::Value| -> TokenMetadata { serde_json::from_value(json).unwrap() };
        // (metadata, exec?)
        let cases = [
            (serde_json::json!({"comment": "token-keeper i on h for vc (exec)"}), true),
            (serde_json::json!({"comment": "token-keeper i on h for vc"}), false),
            (serde_json::json!({"comment": "token-keeper i on h for vc (doctor)"}), false),
            (serde_json::json!({"customMetadataMap": {"tk_install": "i"}}), false),
        ];
        for (json, want) in cases {
            let m = meta(json);
            assert_eq!(is_exec(Some(&m)), want, "{m:?}");
        }
        assert!(!is_exec(None));
        let who = Identity { installation_id: "i".into(), host: "h".into() };
        let comment = &label_pairs(&who, "vc", Purpose::Exec)[0].1;
        assert!(is_exec(Some(&meta(serde_json::json!({ "comment": comment })))), "{comment}");
    }
}
