//! The coming `globus` executor: trials as Globus Compute tasks on the user's endpoint. So far,
//! its wire format ([`wire`]); the REST client and the executor build on it.

pub mod wire;
