//! Private DNS: one responder per network, bound on the network's gateway
//! address inside the network's namespace, answering from that network's
//! zone only and forwarding every other name to the node's upstream.
//!
//! Request handling ([`handler`]) is separate from the sockets
//! ([`server`]) so it is tested through a capture handler. Answers with
//! several addresses come in cyclic order on every path ([`rotation`]).

pub mod answer;
pub mod forward;
pub mod handler;
pub mod rotation;
pub mod server;
pub mod wire;
