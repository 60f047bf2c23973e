//! The `globus` executor: trials as Globus Compute tasks on the user's endpoint, over HTTPS with
//! no SSH. [`wire`] is the service's serialization format, [`client`] its REST routes with the
//! rate limiter, [`executor`] the executor itself, and `trial.py` the Python function the
//! endpoint runs for each trial ([`executor::TRIAL_SOURCE`]).

pub mod client;
pub mod executor;
pub mod wire;
