//! The federation end to end: a real server and real clients over
//! loopback gRPC, in one test binary (one link of burn).

mod batch_norm;
mod end_to_end;
mod faults;
mod identity;
mod names;
mod refinement;
mod refusals;
mod registrations;
mod serve_final;
mod slow_peers;
mod statistics;
mod status_token;
mod tls_refusals;
mod weights;
