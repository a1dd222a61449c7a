//! The tokens of an embedded store: `<data>/auth/tokens`, a small text
//! file written whole and atomically.
//!
//! Format (version 1), UTF-8, one record a line, fields separated by one
//! space:
//!
//! ```text
//! strata-tokens 1
//! token <name> <scope> <created, Unix seconds> <SHA-256 of the secret, 64 hex digits>
//! ...
//! end <number of tokens> <SHA-256 of every byte before this line, 64 hex digits>
//! ```
//!
//! The file is read whole, at most [`MAX_FILE_BYTES`], and refused (the
//! service does not start, `strata token` stops) when anything in it is
//! off: an unknown version or record, a bad field, a repeated name, more
//! than [`MAX_TOKENS`] tokens, a count or checksum that does not match (a
//! torn or edited file). A change is made under an exclusive lock of
//! `auth/tokens.lock` (so two `strata token` commands do not lose each
//! other's change), written to `auth/tokens.tmp`, synced, renamed over
//! the file and the directory synced: a crash leaves the old file or the
//! new one. The file and its directory are readable by their owner only.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::secret::{hex, unhex};
use super::{IssuedToken, Scope, Secret, StoredToken, TokenInfo, check_name, now_secs};
use crate::error::HttpError;

/// The most tokens a file (or a database) holds.
pub const MAX_TOKENS: usize = 1000;

/// The largest token file read: [`MAX_TOKENS`] lines of at most ~190 bytes.
const MAX_FILE_BYTES: u64 = 256 * 1024;

/// The first line of a version 1 file.
const HEADER: &str = "strata-tokens 1";

/// The token file of a data directory.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct TokenFile {
    path: PathBuf,
}

impl TokenFile {
    /// The token file of the embedded store in `dir`: `dir/auth/tokens`
    /// (which need not exist: then there are no tokens).
    pub fn in_data_dir(dir: impl AsRef<Path>) -> TokenFile {
        TokenFile {
            path: dir.as_ref().join("auth").join("tokens"),
        }
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The tokens, oldest first (ties by name), without their hashes.
    pub fn list(&self) -> Result<Vec<TokenInfo>, HttpError> {
        Ok(self.load()?.into_iter().map(|t| t.info).collect())
    }

    /// Creates a token named `name` with `scope`, and returns its secret
    /// (kept nowhere: only its hash is written). A name in use is
    /// [`HttpError::AlreadyExists`]; an invalid one [`HttpError::InvalidId`].
    pub fn create(&self, name: &str, scope: Scope) -> Result<IssuedToken, HttpError> {
        check_name(name)?;
        let secret = Secret::generate()?;
        let info = TokenInfo {
            name: name.to_string(),
            scope,
            created_at: now_secs(),
        };
        let stored = StoredToken {
            info: info.clone(),
            hash: secret.hash(),
        };
        self.change(|tokens| {
            if tokens.iter().any(|t| t.info.name == name) {
                return Err(HttpError::AlreadyExists {
                    resource: "token",
                    id: name.to_string(),
                });
            }
            if tokens.len() >= MAX_TOKENS {
                return Err(HttpError::ValidationFailed {
                    reason: format!("there are {MAX_TOKENS} tokens already: revoke some first"),
                });
            }
            tokens.push(stored);
            Ok(())
        })?;
        Ok(IssuedToken { info, secret })
    }

    /// Removes the token named `name` and returns it; an unknown name is
    /// [`HttpError::NotFound`].
    pub fn revoke(&self, name: &str) -> Result<TokenInfo, HttpError> {
        let mut removed = None;
        self.change(|tokens| {
            let i = tokens
                .iter()
                .position(|t| t.info.name == name)
                .ok_or_else(|| HttpError::NotFound {
                    resource: "token",
                    id: name.escape_debug().to_string(),
                })?;
            removed = Some(tokens.remove(i).info);
            Ok(())
        })?;
        Ok(removed.expect("set when the change succeeded"))
    }

    /// The tokens with their hashes; none when the file does not exist.
    pub(crate) fn load(&self) -> Result<Vec<StoredToken>, HttpError> {
        let file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.io("opening", e)),
        };
        let mut bytes = Vec::new();
        file.take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| self.io("reading", e))?;
        if bytes.len() as u64 > MAX_FILE_BYTES {
            return Err(self.damaged(format!("larger than {MAX_FILE_BYTES} bytes")));
        }
        let mut tokens = decode(&bytes).map_err(|reason| self.damaged(reason))?;
        // Oldest first, ties by name: as the PostgreSQL table lists them.
        tokens.sort_by(|a, b| (a.info.created_at, &a.info.name).cmp(&(b.info.created_at, &b.info.name)));
        Ok(tokens)
    }

    /// Applies `f` to the tokens under the lock and writes the result.
    fn change(&self, f: impl FnOnce(&mut Vec<StoredToken>) -> Result<(), HttpError>) -> Result<(), HttpError> {
        let dir = self.path.parent().expect("the path has a parent");
        create_private_dir(dir).map_err(|e| self.io("creating the directory of", e))?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("tokens.lock"))
            .map_err(|e| self.io("opening the lock of", e))?;
        lock.lock().map_err(|e| self.io("locking", e))?;
        let mut tokens = self.load()?;
        f(&mut tokens)?;
        let tmp = dir.join("tokens.tmp");
        let mut out = private_file(&tmp).map_err(|e| self.io("creating a new", e))?;
        out.write_all(&encode(&tokens))
            .and_then(|()| out.sync_all())
            .map_err(|e| self.io("writing a new", e))?;
        drop(out);
        fs::rename(&tmp, &self.path).map_err(|e| self.io("replacing", e))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| self.io("syncing the directory of", e))?;
        drop(lock);
        Ok(())
    }

    fn io(&self, doing: &str, source: std::io::Error) -> HttpError {
        HttpError::Io {
            context: format!("{doing} the token file {}", self.path.display()),
            source,
        }
    }

    fn damaged(&self, reason: String) -> HttpError {
        HttpError::TokensDamaged {
            place: self.path.display().to_string(),
            reason,
        }
    }
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match fs::DirBuilder::new().recursive(true).mode(0o700).create(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    fs::create_dir_all(dir)
}

fn private_file(path: &Path) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true).truncate(true).write(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

/// The file's bytes for `tokens`.
fn encode(tokens: &[StoredToken]) -> Vec<u8> {
    let mut out = format!("{HEADER}\n");
    for t in tokens {
        out.push_str(&format!(
            "token {} {} {} {}\n",
            t.info.name,
            t.info.scope,
            t.info.created_at,
            hex(&t.hash)
        ));
    }
    let sum = hex(&Sha256::digest(out.as_bytes()));
    out.push_str(&format!("end {} {sum}\n", tokens.len()));
    out.into_bytes()
}

/// The tokens of a file's bytes, or what is wrong with them.
fn decode(bytes: &[u8]) -> Result<Vec<StoredToken>, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))?;
    let body_end = text
        .trim_end_matches('\n')
        .rfind('\n')
        .map(|i| i + 1)
        .ok_or("no end line (a torn write?)")?;
    let (body, end) = text.split_at(body_end);
    let mut lines = body.lines();
    if lines.next() != Some(HEADER) {
        return Err(format!("the first line is not {HEADER:?}"));
    }
    let mut tokens: Vec<StoredToken> = Vec::new();
    for (n, line) in lines.enumerate() {
        let at = |what: &str| format!("line {}: {what}", n + 2);
        let fields: Vec<&str> = line.split(' ').collect();
        let ["token", name, scope, created, hash] = fields[..] else {
            return Err(at("not a token record"));
        };
        check_name(name).map_err(|e| at(&e.to_string()))?;
        if tokens.iter().any(|t| t.info.name == name) {
            return Err(at("a name seen before"));
        }
        if tokens.len() >= MAX_TOKENS {
            return Err(format!("more than {MAX_TOKENS} tokens"));
        }
        tokens.push(StoredToken {
            info: TokenInfo {
                name: name.to_string(),
                scope: scope.parse().map_err(|_| at("an unknown scope"))?,
                created_at: created
                    .parse()
                    .map_err(|_| at("a creation time that is not a number"))?,
            },
            hash: unhex(hash).ok_or_else(|| at("a hash that is not 64 lower-case hex digits"))?,
        });
    }
    let fields: Vec<&str> = end.trim_end_matches('\n').split(' ').collect();
    let ["end", count, sum] = fields[..] else {
        return Err("the last line is not the end record (a torn write?)".into());
    };
    if !end.ends_with('\n') || end.matches('\n').count() != 1 {
        return Err("the end record is not the last line".into());
    }
    if count != tokens.len().to_string() {
        return Err(format!(
            "the end record counts {count} tokens, the file holds {}",
            tokens.len()
        ));
    }
    if sum != hex(&Sha256::digest(body.as_bytes())) {
        return Err("the checksum does not match the contents (an edited or damaged file)".into());
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_list_revoke_and_the_bytes_written() {
        let dir = tempfile::tempdir().unwrap();
        let file = TokenFile::in_data_dir(dir.path());
        assert!(file.list().unwrap().is_empty(), "no file: no tokens");
        let ci = file.create("ci", Scope::Admin).unwrap();
        let reader = file.create("dash", Scope::Read).unwrap();
        let names: Vec<_> = file.list().unwrap().into_iter().map(|t| (t.name, t.scope)).collect();
        assert_eq!(
            names,
            [("ci".to_string(), Scope::Admin), ("dash".to_string(), Scope::Read)]
        );
        assert!(matches!(
            file.create("ci", Scope::Read),
            Err(HttpError::AlreadyExists { .. })
        ));
        let raw = fs::read_to_string(file.path()).unwrap();
        assert!(!raw.contains(ci.secret.expose()) && !raw.contains(reader.secret.expose()));
        assert!(raw.contains(&hex(&ci.secret.hash())));
        assert_eq!(file.revoke("ci").unwrap().name, "ci");
        assert!(matches!(file.revoke("ci"), Err(HttpError::NotFound { .. })));
        let left = file.load().unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].hash, reader.secret.hash());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(fs::metadata(file.path()).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }

    #[test]
    fn damaged_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = TokenFile::in_data_dir(dir.path());
        file.create("a", Scope::Write).unwrap();
        file.create("b", Scope::Read).unwrap();
        let good = fs::read(file.path()).unwrap();
        assert_eq!(decode(&good).unwrap().len(), 2);
        let text = String::from_utf8(good.clone()).unwrap();
        let mut cases: Vec<(&str, Vec<u8>)> = vec![
            ("empty", Vec::new()),
            ("torn", good[..good.len() - 20].to_vec()),
            (
                "no end",
                text.lines()
                    .take(3)
                    .map(|l| format!("{l}\n"))
                    .collect::<String>()
                    .into_bytes(),
            ),
            ("scope edited", text.replacen(" read ", " admin ", 1).into_bytes()),
            (
                "version",
                text.replacen("strata-tokens 1", "strata-tokens 2", 1).into_bytes(),
            ),
            ("not UTF-8", [&good[..], &[0xff][..]].concat()),
            (
                "trailing line",
                format!("{text}token c read 0 {}\n", "0".repeat(64)).into_bytes(),
            ),
        ];
        // A line changed and the checksum recomputed: still refused by its fields.
        for bad in [" read  ", " reader ", " read -"] {
            let body: String = text.lines().take(3).map(|l| format!("{l}\n")).collect();
            let body = body.replacen(" read ", bad, 1);
            let sum = hex(&Sha256::digest(body.as_bytes()));
            cases.push(("field", format!("{body}end 2 {sum}\n").into_bytes()));
        }
        for (what, bytes) in cases {
            assert!(decode(&bytes).is_err(), "{what}: {}", String::from_utf8_lossy(&bytes));
        }
        fs::write(file.path(), &good[..good.len() - 1]).unwrap();
        assert!(matches!(file.list(), Err(HttpError::TokensDamaged { .. })));
        assert!(matches!(
            file.create("c", Scope::Read),
            Err(HttpError::TokensDamaged { .. })
        ));
        // More tokens than the bound, each line valid and the sum right.
        let many: Vec<StoredToken> = (0..=MAX_TOKENS)
            .map(|i| StoredToken {
                info: TokenInfo {
                    name: format!("t{i}"),
                    scope: Scope::Read,
                    created_at: 0,
                },
                hash: [0; 32],
            })
            .collect();
        let err = decode(&encode(&many)).unwrap_err();
        assert!(err.contains("more than"), "{err}");
        fs::write(file.path(), vec![b'x'; MAX_FILE_BYTES as usize + 1]).unwrap();
        assert!(matches!(file.list(), Err(HttpError::TokensDamaged { .. })));
    }
}
