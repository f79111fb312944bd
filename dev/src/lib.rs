//! # sipgw-dev: development tools for sipgw, kept out of the production build
//!
//! What the demo, the tests and the benchmarks need besides the gateway. None of it belongs
//! in production: the simulator stands in for the vendor, and the issuer mints whatever it
//! is asked to (`alg: none` tokens included). The `sipgw` binary links this crate only
//! through its `dev` feature (on by default, for `sipgw demo` and `sipgw dev-token`);
//! `cargo build --release --no-default-features` builds a gateway without any of it. This
//! crate does not depend on `sipgw`, which depends on it.
//!
//! ## Layout
//! - [`sim`]: a faithful vendor simulator for the demo, the tests and benchmarks (also the
//!   `sipgw-vendor-sim` binary, `src/bin/`).
//! - [`dev_issuer`]: a development JWT issuer (JWKS, discovery, minting) for the demo and
//!   the tests; never a real identity provider.
//! - [`dev_token`]: `sipgw dev-token`, development tokens from a key file.
//! - [`serve`]: the small accept loop both servers run on (HTTP/1.1 + h2c, a connection
//!   cap, graceful drain), and the SIGTERM/SIGINT future of the simulator binary.

#![forbid(unsafe_code)]

pub mod dev_issuer;
pub mod dev_token;
pub mod serve;
pub mod sim;
