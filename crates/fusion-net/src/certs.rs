//! Development certificates: a CA, a server certificate and client
//! certificates, so that TLS and mutual TLS can be tried in one command.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::error::WireError;

/// A certificate and its private key, both PEM.
#[derive(Clone, Debug)]
pub struct PemPair {
    /// Certificate (PEM).
    pub cert: String,
    /// Private key (PEM, PKCS#8).
    pub key: String,
}

/// A development PKI: one CA that signs the server certificate and every
/// client certificate. For trying TLS and mTLS, and for tests; production
/// deployments bring certificates from their own CA.
#[derive(Clone, Debug)]
pub struct DevCertificates {
    /// The CA (its key signs the others).
    pub ca: PemPair,
    /// Server certificate, valid for the names given.
    pub server: PemPair,
    /// Client certificates, `client-0`, `client-1`, …
    pub clients: Vec<PemPair>,
}

impl DevCertificates {
    /// Generates a CA named `ca_name`, a server certificate for
    /// `server_names` (DNS names or IP addresses) and `clients` client
    /// certificates. ECDSA P-256 keys, valid for a year from now.
    pub fn generate(
        ca_name: &str,
        server_names: &[String],
        clients: usize,
    ) -> Result<Self, WireError> {
        let fail =
            |e: rcgen::Error| WireError::Config(format!("certificate generation failed: {e}"));
        let ca_key = KeyPair::generate().map_err(fail)?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(fail)?;
        ca_params
            .distinguished_name
            .push(DnType::CommonName, ca_name);
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key).map_err(fail)?;
        let ca = PemPair {
            cert: ca_cert.pem(),
            key: ca_key.serialize_pem(),
        };
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf = |names: Vec<String>, cn: &str, usage: ExtendedKeyUsagePurpose| {
            let key = KeyPair::generate().map_err(fail)?;
            let mut params = CertificateParams::new(names).map_err(fail)?;
            params.distinguished_name.push(DnType::CommonName, cn);
            params.extended_key_usages = vec![usage];
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            let cert = params.signed_by(&key, &issuer).map_err(fail)?;
            Ok::<_, WireError>(PemPair {
                cert: cert.pem(),
                key: key.serialize_pem(),
            })
        };
        let server = leaf(
            server_names.to_vec(),
            "fusion-server",
            ExtendedKeyUsagePurpose::ServerAuth,
        )?;
        let clients = (0..clients)
            .map(|i| {
                let name = format!("client-{i}");
                leaf(
                    vec![name.clone()],
                    &name,
                    ExtendedKeyUsagePurpose::ClientAuth,
                )
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            ca,
            server,
            clients,
        })
    }

    /// Writes `ca.pem`, `ca.key`, `server.pem`, `server.key`,
    /// `client-N.pem` and `client-N.key` into `dir` (created if needed) and
    /// returns the paths written. Keys are readable by the owner only.
    pub fn write(&self, dir: &Path) -> Result<Vec<PathBuf>, WireError> {
        let io = |path: &Path, source| WireError::File {
            what: "certificate output",
            path: path.display().to_string(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let mut written = Vec::new();
        let mut put = |name: String, text: &str, secret: bool| {
            let path = dir.join(name);
            std::fs::write(&path, text).map_err(|e| io(&path, e))?;
            if secret {
                restrict(&path).map_err(|e| io(&path, e))?;
            }
            written.push(path);
            Ok::<_, WireError>(())
        };
        put("ca.pem".into(), &self.ca.cert, false)?;
        put("ca.key".into(), &self.ca.key, true)?;
        put("server.pem".into(), &self.server.cert, false)?;
        put("server.key".into(), &self.server.key, true)?;
        for (i, c) in self.clients.iter().enumerate() {
            put(format!("client-{i}.pem"), &c.cert, false)?;
            put(format!("client-{i}.key"), &c.key, true)?;
        }
        Ok(written)
    }
}

#[cfg(unix)]
fn restrict(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

#[cfg(not(unix))]
fn restrict(_path: &Path) -> std::io::Result<()> {
    Ok(())
}
