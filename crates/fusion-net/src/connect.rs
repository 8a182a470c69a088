//! A client channel to the server, with TLS and the token applied.

use std::time::Duration;

use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use crate::MAX_MESSAGE_BYTES;
use crate::auth::BearerToken;
use crate::error::WireError;
use crate::pb::federation_client;
use crate::tls::ClientTls;

/// The generated client, with the bearer token on every call.
pub type FederationClient =
    federation_client::FederationClient<InterceptedService<Channel, BearerToken>>;

/// A client for `url` (`http://host:port` or `https://host:port`). The
/// connection is made lazily and remade after failures, so a client can be
/// built before the server is up and survives its restarts; each call
/// reports an unreachable server as `UNAVAILABLE`.
pub fn connect(
    url: &str,
    tls: &ClientTls,
    token: BearerToken,
) -> Result<FederationClient, WireError> {
    let bad = |reason: String| WireError::Address {
        url: url.to_owned(),
        reason,
    };
    let https = url.starts_with("https://");
    if !https && !url.starts_with("http://") {
        return Err(bad("must start with http:// or https://".into()));
    }
    if tls.is_set() && !https {
        return Err(bad(
            "TLS files were given, so the address must be https://".into()
        ));
    }
    let mut endpoint = Endpoint::from_shared(url.to_owned())
        .map_err(|e| bad(e.to_string()))?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true);
    if https {
        endpoint = endpoint
            .tls_config(tls.config()?)
            .map_err(|e| WireError::Config(format!("TLS configuration refused: {e}")))?;
    }
    let channel = endpoint.connect_lazy();
    Ok(
        federation_client::FederationClient::with_interceptor(channel, token)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES),
    )
}
