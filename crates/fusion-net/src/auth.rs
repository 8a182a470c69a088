//! Bearer-token authentication: a secret in the `authorization` metadata
//! of every call. One shared token makes every holder one principal; a
//! per-client token binds its holder to one client id.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::service::Interceptor;
use tonic::{Request, Status};

use crate::error::WireError;

/// Shortest per-client or shared token a server accepts from its
/// configuration: 16 bytes leave no room for guessing over the network.
pub const MIN_TOKEN_BYTES: usize = 16;

/// Client side: the token a client adds to every call as
/// `authorization: Bearer <token>`. Its `Debug` form hides the secret, so
/// it never lands in a log.
#[derive(Clone, Default)]
pub struct BearerToken(Option<String>);

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "BearerToken(***)"
        } else {
            "BearerToken(none)"
        })
    }
}

impl BearerToken {
    /// A token, or none when `token` is `None` or empty.
    pub fn new(token: Option<String>) -> Self {
        Self(token.filter(|t| !t.is_empty()))
    }
}

impl Interceptor for BearerToken {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(token) = &self.0 {
            let value = MetadataValue::try_from(format!("Bearer {token}")).map_err(|_| {
                Status::invalid_argument("token holds characters not allowed in a header")
            })?;
            request.metadata_mut().insert("authorization", value);
        }
        Ok(request)
    }
}

/// Who a call's token says the caller is. The server's interceptor puts it
/// in the request's extensions; handlers compare it with the client id the
/// request claims.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// No token is configured: anyone who reaches the port.
    Anyone,
    /// The shared token: all holders are one principal, and may act as any
    /// client id. Per-client tokens or mutual TLS tell them apart.
    Shared,
    /// A per-client token: the caller is this client id and no other.
    Client(String),
}

impl Caller {
    /// Refuses (PERMISSION_DENIED) a call whose token is bound to another
    /// client id than the one it claims.
    pub fn check_claim(&self, claimed: &str) -> Result<(), Status> {
        match self {
            Self::Client(id) if id != claimed => Err(Status::permission_denied(format!(
                "this token belongs to another client than `{claimed}`; \
                 a per-client token may only act as its own client id"
            ))),
            _ => Ok(()),
        }
    }
}

/// Server side: the tokens it accepts. Only SHA-256 digests are kept and
/// compared, every entry in constant time, so neither memory nor timing
/// gives a token away.
#[derive(Clone, Default)]
pub struct TokenTable {
    shared: Option<[u8; 32]>,
    clients: Vec<([u8; 32], String)>,
}

impl std::fmt::Debug for TokenTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenTable")
            .field("shared", &self.shared.is_some())
            .field("clients", &self.clients.len())
            .finish()
    }
}

impl TokenTable {
    /// A table from an optional shared token and a map of client id to
    /// that client's own token. With neither, every call is let in (as
    /// [`Caller::Anyone`]). Refuses tokens shorter than
    /// [`MIN_TOKEN_BYTES`], a token given twice (two clients, or a client
    /// and the shared token, could not be told apart), and characters that
    /// cannot travel in a header.
    pub fn new(
        shared: Option<&str>,
        clients: &BTreeMap<String, String>,
    ) -> Result<Self, WireError> {
        let check = |what: String, token: &str| {
            if token.len() < MIN_TOKEN_BYTES {
                return Err(WireError::Config(format!(
                    "{what} is {} bytes; tokens need at least {MIN_TOKEN_BYTES} (try `openssl rand -hex 16`)",
                    token.len()
                )));
            }
            if MetadataValue::try_from(format!("Bearer {token}")).is_err() {
                return Err(WireError::Config(format!(
                    "{what} holds characters that cannot travel in a header (use printable ASCII)"
                )));
            }
            Ok(digest(token))
        };
        let shared = shared
            .filter(|t| !t.is_empty())
            .map(|t| check("the shared token".into(), t))
            .transpose()?;
        let mut table = Self {
            shared,
            clients: Vec::with_capacity(clients.len()),
        };
        for (id, token) in clients {
            let d = check(
                format!("the token of client `{}`", id.escape_debug()),
                token,
            )?;
            if table.shared == Some(d) || table.clients.iter().any(|(c, _)| *c == d) {
                return Err(WireError::Config(format!(
                    "the token of client `{}` is also another client's or the shared token; each client needs its own",
                    id.escape_debug()
                )));
            }
            table.clients.push((d, id.clone()));
        }
        Ok(table)
    }

    /// Whether calls need a token at all.
    pub fn is_open(&self) -> bool {
        self.shared.is_none() && self.clients.is_empty()
    }

    /// How many clients have their own token.
    pub fn client_tokens(&self) -> usize {
        self.clients.len()
    }

    /// Refuses (PERMISSION_DENIED) a call from `caller` that claims an id
    /// it may not act as: a per-client token acts only as its own id, and
    /// the shared token as any id except those with a token of their own
    /// (else any holder of the shared token could take over a client that
    /// was given its own token).
    pub fn check_claim(&self, caller: &Caller, claimed: &str) -> Result<(), Status> {
        caller.check_claim(claimed)?;
        if *caller == Caller::Shared && self.clients.iter().any(|(_, id)| id == claimed) {
            return Err(Status::permission_denied(format!(
                "client `{claimed}` has a token of its own; the shared token may not act as it"
            )));
        }
        Ok(())
    }

    /// Who the call's `authorization` header says the caller is; refuses
    /// (UNAUTHENTICATED) a missing or unknown token when any is configured.
    pub fn authenticate(&self, metadata: &MetadataMap) -> Result<Caller, Status> {
        if self.is_open() {
            return Ok(Caller::Anyone);
        }
        let given = metadata
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| Status::unauthenticated("missing bearer token"))?;
        let given = digest(given);
        // Every entry is compared, whichever matches, so the time taken
        // says nothing about which token (if any) was close.
        let mut found: Option<&str> = None;
        for (token, id) in &self.clients {
            if bool::from(token.ct_eq(&given)) {
                found = Some(id);
            }
        }
        let shared = self
            .shared
            .is_some_and(|token| bool::from(token.ct_eq(&given)));
        match (found, shared) {
            (Some(id), _) => Ok(Caller::Client(id.to_owned())),
            (None, true) => Ok(Caller::Shared),
            (None, false) => Err(Status::unauthenticated("wrong bearer token")),
        }
    }
}

/// Reads a token file: one line per client, `CLIENT_ID TOKEN` separated by
/// whitespace; blank lines and lines starting with `#` are skipped. Errors
/// name the line but never echo a token.
pub fn parse_token_file(text: &str) -> Result<BTreeMap<String, String>, WireError> {
    let mut clients = BTreeMap::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace();
        let (Some(id), Some(token), None) = (fields.next(), fields.next(), fields.next()) else {
            return Err(WireError::Config(format!(
                "line {}: expected `CLIENT_ID TOKEN` (two fields separated by spaces)",
                number + 1
            )));
        };
        if clients.insert(id.to_owned(), token.to_owned()).is_some() {
            return Err(WireError::Config(format!(
                "line {}: client `{}` is listed twice",
                number + 1,
                id.escape_debug()
            )));
        }
    }
    Ok(clients)
}

/// Whether `given` is the secret `expected`, compared in time that does
/// not depend on where they first differ (a session, a status token).
pub fn same_secret(given: &str, expected: &str) -> bool {
    given.len() == expected.len() && bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(token: &str) -> MetadataMap {
        let mut client = BearerToken::new(Some(token.into()));
        client
            .call(Request::new(()))
            .expect("valid header")
            .metadata()
            .clone()
    }

    const SHARED: &str = "shared-token-0123456789";
    const ALICE: &str = "alice-token-0123456789";
    const BOB: &str = "bob-token-0123456789ab";

    fn table() -> TokenTable {
        let clients = parse_token_file(&format!("# id token\nalice {ALICE}\n\n  bob\t{BOB}  \n"))
            .expect("parse");
        TokenTable::new(Some(SHARED), &clients).expect("table")
    }

    #[test]
    fn tokens_name_their_caller() {
        let t = table();
        assert_eq!(
            t.authenticate(&with(SHARED)).expect("shared"),
            Caller::Shared
        );
        assert_eq!(
            t.authenticate(&with(ALICE)).expect("alice"),
            Caller::Client("alice".into())
        );
        assert_eq!(
            t.authenticate(&with(BOB)).expect("bob"),
            Caller::Client("bob".into())
        );
        let wrong = t
            .authenticate(&with("alice-token-012345678X"))
            .expect_err("wrong");
        assert_eq!(wrong.code(), tonic::Code::Unauthenticated);
        assert!(wrong.message().contains("wrong"));
        let missing = t.authenticate(&MetadataMap::new()).expect_err("missing");
        assert!(missing.message().contains("missing"));
        assert_eq!(
            TokenTable::default()
                .authenticate(&MetadataMap::new())
                .expect("open"),
            Caller::Anyone
        );
        assert_eq!(format!("{t:?}"), "TokenTable { shared: true, clients: 2 }");
        assert_eq!(
            format!("{:?}", BearerToken::new(Some(ALICE.into()))),
            "BearerToken(***)"
        );
    }

    #[test]
    fn a_client_token_acts_only_as_its_client() {
        let alice = Caller::Client("alice".into());
        assert!(alice.check_claim("alice").is_ok());
        let s = alice.check_claim("bob").expect_err("impersonation");
        assert_eq!(s.code(), tonic::Code::PermissionDenied);
        assert!(s.message().contains("`bob`"), "{s:?}");
        assert!(Caller::Shared.check_claim("bob").is_ok());
        assert!(Caller::Anyone.check_claim("bob").is_ok());
        // Through the table, the shared token may not act as an id that
        // has its own token, and may act as any other.
        let t = table();
        let s = t
            .check_claim(&Caller::Shared, "alice")
            .expect_err("owned id");
        assert_eq!(s.code(), tonic::Code::PermissionDenied);
        assert!(s.message().contains("token of its own"), "{s:?}");
        assert!(t.check_claim(&Caller::Shared, "carol").is_ok());
        assert!(
            t.check_claim(&Caller::Client("alice".into()), "alice")
                .is_ok()
        );
    }

    #[test]
    fn bad_tables_are_refused_without_echoing_tokens() {
        let short = TokenTable::new(Some("s3cret"), &BTreeMap::new()).expect_err("short");
        assert!(short.to_string().contains("at least 16"), "{short}");
        let mut clients = BTreeMap::new();
        clients.insert("a".to_owned(), SHARED.to_owned());
        let reused = TokenTable::new(Some(SHARED), &clients).expect_err("reused");
        assert!(reused.to_string().contains("`a`"), "{reused}");
        assert!(!reused.to_string().contains(SHARED));
        clients.insert("b".to_owned(), "line\nbreak-0123456789".to_owned());
        assert!(TokenTable::new(None, &clients).is_err());
        let twice = parse_token_file(&format!("a {ALICE}\na {BOB}\n")).expect_err("twice");
        assert!(twice.to_string().contains("line 2"), "{twice}");
        let three = parse_token_file(&format!("a {ALICE} extra\n")).expect_err("three");
        assert!(three.to_string().contains("line 1") && !three.to_string().contains(ALICE));
    }
}
