//! `fusion certs`: development certificates for TLS and mutual TLS.

use anyhow::{Context, Result};
use fusion_net::DevCertificates;

use super::outputs::list;
use crate::cli::CertsArgs;

/// Runs `fusion certs`.
pub fn run(args: CertsArgs) -> Result<()> {
    let certs = DevCertificates::generate("Fusion development CA", &args.names, args.clients)
        .context("cannot generate certificates")?;
    let written = certs.write(&args.out)?;
    println!("wrote {}", list(&written));
    println!(
        "server: fusion-server --tls-cert {0}/server.pem --tls-key {0}/server.key --client-ca {0}/ca.pem …\n\
         client: fusion-client --server https://localhost:50051 --ca {0}/ca.pem --cert {0}/client-0.pem --key {0}/client-0.key …\n\
         These are for development: keep ca.key private, and use your own CA in production.",
        args.out.display()
    );
    Ok(())
}
