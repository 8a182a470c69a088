//! The federation end to end: a real server and real clients over
//! loopback gRPC, in one test binary (one link of burn).

mod end_to_end;
mod faults;
mod names;
mod refinement;
mod refusals;
mod statistics;
mod tls_refusals;
mod weights;
