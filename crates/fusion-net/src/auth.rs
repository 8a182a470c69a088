//! Optional bearer-token authentication: a shared secret in the
//! `authorization` metadata of every call.

use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// A shared secret. The server refuses any call without
/// `authorization: Bearer <token>`; the client adds it to every call.
/// Its `Debug` form hides the secret, so it never lands in a log.
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

    /// Server side: accepts the call when no token is configured or the
    /// call carries the right one. The comparison takes the same time
    /// wherever the first difference is.
    pub fn check(&self, metadata: &MetadataMap) -> Result<(), Status> {
        let Some(expected) = &self.0 else {
            return Ok(());
        };
        let given = metadata
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| Status::unauthenticated("missing bearer token"))?;
        let same = given.len() == expected.len()
            && given
                .bytes()
                .zip(expected.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if same {
            Ok(())
        } else {
            Err(Status::unauthenticated("wrong bearer token"))
        }
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

    #[test]
    fn right_wrong_and_missing_tokens() {
        let server = BearerToken::new(Some("s3cret".into()));
        assert!(server.check(&with("s3cret")).is_ok());
        let wrong = server.check(&with("s3cres")).expect_err("wrong");
        assert_eq!(wrong.code(), tonic::Code::Unauthenticated);
        assert!(wrong.message().contains("wrong"));
        let missing = server.check(&MetadataMap::new()).expect_err("missing");
        assert!(missing.message().contains("missing"));
        assert!(BearerToken::new(None).check(&MetadataMap::new()).is_ok());
        assert_eq!(format!("{server:?}"), "BearerToken(***)");
    }
}
