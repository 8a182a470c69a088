//! The identity a client certificate proves: under mutual TLS a client may
//! only use a client id its certificate names, so one certificate cannot
//! act as another client.

use rustls_pki_types::{CertificateDer, ServerName};
use tonic::Status;

/// Refuses (PERMISSION_DENIED) a claimed client id that the peer's leaf
/// certificate does not name as a DNS name in its subjectAltName (the
/// names `fusion certs` writes, `client-0`, `client-1`, …). The handshake
/// has already checked the chain against the client CA; this checks the
/// name, with the parser and matching rules rustls itself uses.
pub fn check_certificate_names(leaf: &CertificateDer<'_>, claimed: &str) -> Result<(), Status> {
    let name = ServerName::try_from(claimed).map_err(|_| {
        Status::permission_denied(format!(
            "client id `{}` is not a DNS name, so no certificate can name it; \
             under mutual TLS a client id must be a subjectAltName DNS name of its certificate",
            claimed.escape_debug()
        ))
    })?;
    let cert = webpki::EndEntityCert::try_from(leaf).map_err(|e| {
        Status::permission_denied(format!("the client certificate cannot be read: {e}"))
    })?;
    cert.verify_is_valid_for_subject_name(&name).map_err(|_| {
        Status::permission_denied(format!(
            "this connection's certificate does not name client `{claimed}`; \
             under mutual TLS a client may only use an id its certificate names"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DevCertificates;

    fn leaf(pem: &str) -> CertificateDer<'static> {
        use rustls_pki_types::pem::PemObject;
        CertificateDer::from_pem_slice(pem.as_bytes()).expect("PEM certificate")
    }

    #[test]
    fn a_certificate_names_only_its_own_client() {
        let certs = DevCertificates::generate("test CA", &["localhost".into()], 2).expect("certs");
        let zero = leaf(&certs.clients[0].cert);
        assert!(check_certificate_names(&zero, "client-0").is_ok());
        let other = check_certificate_names(&zero, "client-1").expect_err("another id");
        assert_eq!(other.code(), tonic::Code::PermissionDenied);
        assert!(other.message().contains("client-1"), "{other:?}");
        let odd = check_certificate_names(&zero, "client 0").expect_err("not a name");
        assert!(odd.message().contains("not a DNS name"), "{odd:?}");
        let junk = CertificateDer::from(vec![0x30, 0x03, 1, 2, 3]);
        assert!(check_certificate_names(&junk, "client-0").is_err());
    }
}
