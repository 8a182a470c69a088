//! Who may act as a client id. Three locks, each checked on every call
//! that names a client:
//! - a per-client token acts only as its own id ([`Caller`]);
//! - under mutual TLS, a certificate acts only as an id it names;
//! - Heartbeat, FetchGlobal and Upload must carry the session secret the
//!   id's latest Join was given, so a caller that never joined cannot act
//!   for a client that did (and a takeover by a later Join is seen: the
//!   displaced client's next call is refused).
//!
//! With only a shared token (or none), every holder is one principal: any
//! of them may Join under any id. The session lock still stops them acting
//! for a joined client without joining, and makes a takeover visible.

use fusion_net::{Caller, TokenTable, check_certificate_names};
use tonic::transport::CertificateDer;
use tonic::{Request, Status};

/// What the transport proved about a call's sender: its token's principal
/// and, under TLS, its leaf certificate. Taken from the request before its
/// message is unwrapped.
#[derive(Debug)]
pub struct Credentials {
    caller: Caller,
    leaf: Option<CertificateDer<'static>>,
}

impl Credentials {
    /// The credentials of `request`: the caller the token interceptor put
    /// in its extensions (none there means no interceptor ran: anyone) and
    /// the peer's leaf certificate.
    pub fn of<T>(request: &Request<T>) -> Self {
        Self {
            caller: request
                .extensions()
                .get::<Caller>()
                .cloned()
                .unwrap_or(Caller::Anyone),
            leaf: request
                .peer_certs()
                .and_then(|chain| chain.first().cloned()),
        }
    }

    /// Refuses (PERMISSION_DENIED) a call that claims an id its token (as
    /// `tokens` sees it) or, when `mutual_tls`, its certificate does not
    /// carry.
    pub fn check(
        &self,
        tokens: &TokenTable,
        claimed: &str,
        mutual_tls: bool,
    ) -> Result<(), Status> {
        tokens.check_claim(&self.caller, claimed)?;
        if mutual_tls {
            let leaf = self.leaf.as_ref().ok_or_else(|| {
                Status::permission_denied(
                    "mutual TLS is on but this connection presented no client certificate",
                )
            })?;
            check_certificate_names(leaf, claimed)?;
        }
        Ok(())
    }
}

/// The secret a Join hands out: 128 random bits as 32 hex digits. Its
/// `Debug` form hides it, so state dumps and logs never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionSecret(String);

impl std::fmt::Debug for SessionSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionSecret(***)")
    }
}

impl SessionSecret {
    /// A fresh secret from the operating system's generator.
    pub fn generate() -> Self {
        Self(format!("{:032x}", rand::random::<u128>()))
    }

    /// The secret, to send in the Join reply.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `given` is this secret, compared in constant time.
    pub fn matches(&self, given: &str) -> bool {
        fusion_net::same_secret(given, &self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_fresh_hidden_and_compared_exactly() {
        let a = SessionSecret::generate();
        let b = SessionSecret::generate();
        assert_ne!(a, b);
        assert_eq!(a.expose().len(), 32);
        assert!(a.matches(a.expose()));
        assert!(!a.matches(b.expose()));
        assert!(!a.matches(""));
        assert!(!a.matches(&a.expose()[..31]));
        assert_eq!(format!("{a:?}"), "SessionSecret(***)");
    }

    #[test]
    fn a_token_bound_caller_cannot_claim_another_id() {
        let mut request = Request::new(());
        request
            .extensions_mut()
            .insert(Caller::Client("alice".into()));
        let credentials = Credentials::of(&request);
        let tokens = TokenTable::default();
        assert!(credentials.check(&tokens, "alice", false).is_ok());
        let s = credentials
            .check(&tokens, "bob", false)
            .expect_err("impersonation");
        assert_eq!(s.code(), tonic::Code::PermissionDenied);
        // Mutual TLS without a certificate on the connection is refused too.
        let s = credentials
            .check(&tokens, "alice", true)
            .expect_err("no certificate");
        assert!(s.message().contains("no client certificate"), "{s:?}");
        assert!(
            Credentials::of(&Request::new(()))
                .check(&tokens, "anyone", false)
                .is_ok()
        );
    }
}
