//! rustls configuration from PEM files, with errors naming the file.

use std::path::{Path, PathBuf};

use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

use crate::error::WireError;

/// The server's TLS files. With `client_ca`, the server demands a client
/// certificate signed by that CA (mutual TLS) and refuses the handshake
/// otherwise.
#[derive(Clone, Debug)]
pub struct ServerTls {
    /// Server certificate chain (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// CA that client certificates must chain to (PEM), for mutual TLS.
    pub client_ca: Option<PathBuf>,
}

impl ServerTls {
    /// Reads and checks the files.
    pub fn config(&self) -> Result<ServerTlsConfig, WireError> {
        let cert = read_pem("server certificate", &self.cert, "CERTIFICATE")?;
        let key = read_pem("server key", &self.key, "PRIVATE KEY")?;
        let mut config = ServerTlsConfig::new().identity(Identity::from_pem(cert, key));
        if let Some(ca) = &self.client_ca {
            let ca = read_pem("client CA", ca, "CERTIFICATE")?;
            config = config.client_ca_root(Certificate::from_pem(ca));
        }
        Ok(config)
    }
}

/// A client's TLS files: the CA that signed the server's certificate, and
/// for mutual TLS the client's own certificate and key.
#[derive(Clone, Debug, Default)]
pub struct ClientTls {
    /// CA of the server certificate (PEM). No system roots are bundled, so
    /// `https://` needs it.
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM), for mutual TLS.
    pub cert: Option<PathBuf>,
    /// Client key (PEM), with `cert`.
    pub key: Option<PathBuf>,
    /// Name to verify in the server certificate, when the URL's host is an
    /// address the certificate does not name.
    pub domain: Option<String>,
}

impl ClientTls {
    /// Whether any TLS file was given.
    pub fn is_set(&self) -> bool {
        self.ca.is_some() || self.cert.is_some() || self.key.is_some()
    }

    /// Reads and checks the files.
    pub fn config(&self) -> Result<ClientTlsConfig, WireError> {
        let ca = self.ca.as_ref().ok_or_else(|| {
            WireError::Config(
                "TLS needs --ca: the CA certificate that signed the server's certificate".into(),
            )
        })?;
        let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read_pem(
            "CA certificate",
            ca,
            "CERTIFICATE",
        )?));
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                let cert = read_pem("client certificate", cert, "CERTIFICATE")?;
                let key = read_pem("client key", key, "PRIVATE KEY")?;
                config = config.identity(Identity::from_pem(cert, key));
            }
            (None, None) => {}
            _ => {
                return Err(WireError::Config(
                    "a client certificate needs its key: give both --cert and --key, or neither"
                        .into(),
                ));
            }
        }
        if let Some(domain) = &self.domain {
            config = config.domain_name(domain.clone());
        }
        Ok(config)
    }
}

/// Reads a PEM file and checks that it holds a block of the expected kind.
fn read_pem(what: &'static str, path: &Path, kind: &str) -> Result<Vec<u8>, WireError> {
    let bytes = std::fs::read(path).map_err(|source| WireError::File {
        what,
        path: path.display().to_string(),
        source,
    })?;
    let text = String::from_utf8_lossy(&bytes);
    if !text.contains("-----BEGIN") || !text.contains(kind) {
        return Err(WireError::BadPem {
            what,
            path: path.display().to_string(),
            reason: format!("no PEM block of kind {kind}"),
        });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_wrong_files_are_named() {
        let tls = ServerTls {
            cert: "/nonexistent/server.pem".into(),
            key: "/nonexistent/server.key".into(),
            client_ca: None,
        };
        let err = tls.config().expect_err("missing").to_string();
        assert!(err.contains("server certificate") && err.contains("/nonexistent/server.pem"));

        let dir = std::env::temp_dir().join(format!("fusion-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let junk = dir.join("junk.pem");
        std::fs::write(&junk, "hello").expect("write");
        let client = ClientTls {
            ca: Some(junk.clone()),
            ..ClientTls::default()
        };
        let err = client.config().expect_err("not PEM").to_string();
        assert!(
            err.contains("CA certificate") && err.contains("no PEM block"),
            "{err}"
        );
        let half = ClientTls {
            ca: None,
            cert: Some(junk),
            key: None,
            domain: None,
        };
        assert!(
            half.config()
                .expect_err("no ca")
                .to_string()
                .contains("--ca")
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
