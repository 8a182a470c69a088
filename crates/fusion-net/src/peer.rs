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
///
/// DNS names match case-insensitively, with an optional trailing dot, and
/// through wildcards; so that one certificate is one id, a claimed id must
/// be in canonical form (lowercase, no trailing dot), and a certificate
/// whose name matching it is a wildcard is refused.
pub fn check_certificate_names(leaf: &CertificateDer<'_>, claimed: &str) -> Result<(), Status> {
    if claimed.ends_with('.') || claimed.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(Status::permission_denied(format!(
            "client id `{}` is not in canonical form; under mutual TLS a client id is a \
             certificate name in lowercase without a trailing dot",
            claimed.escape_debug()
        )));
    }
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
    })?;
    // A wildcard name (`*.clients.example`) would let one certificate act
    // as every id under it: if the certificate also matches a name no one
    // would choose, in the same place as the claimed id, it is a wildcard.
    if let Some((_, parent)) = claimed.split_once('.') {
        let probe = format!("fusion-wildcard-probe-1f2e3d.{parent}");
        if let Ok(probe) = ServerName::try_from(probe.as_str())
            && cert.verify_is_valid_for_subject_name(&probe).is_ok()
        {
            return Err(Status::permission_denied(format!(
                "this connection's certificate names client `{claimed}` through a wildcard; \
                 under mutual TLS each client needs a certificate naming its own id"
            )));
        }
    }
    Ok(())
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
        // DNS matching ignores case and a trailing dot; ids may not, or one
        // certificate would be many clients.
        for variant in ["Client-0", "CLIENT-0", "client-0."] {
            let s = check_certificate_names(&zero, variant).expect_err(variant);
            assert!(s.message().contains("canonical"), "{variant}: {s:?}");
        }
    }

    #[test]
    fn a_wildcard_certificate_identifies_no_client() {
        let ca_key = rcgen::KeyPair::generate().expect("key");
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).expect("ca");
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let _ = ca_cert;
        let key = rcgen::KeyPair::generate().expect("key");
        let params =
            rcgen::CertificateParams::new(vec!["*.clients.example".to_owned()]).expect("params");
        let cert = params.signed_by(&key, &issuer).expect("signed");
        let leaf = CertificateDer::from(cert.der().to_vec());
        let s = check_certificate_names(&leaf, "a.clients.example").expect_err("wildcard");
        assert!(s.message().contains("wildcard"), "{s:?}");
    }
}
