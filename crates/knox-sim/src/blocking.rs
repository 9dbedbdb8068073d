//! The simulator for synchronous callers: [`SimServer`] runs a [`Sim`] on a tokio runtime of its
//! own, so that a test or the benchmark can block, sleep and poll on its own thread while the
//! simulator serves.

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use crate::{ApiVersion, Sim, SimOptions};

/// The name of the simulator's runtime threads: the benchmark finds the simulator's CPU time by
/// it in `/proc/self/task/*/comm`.
pub const THREAD_NAME: &str = "knox-sim";

/// A [`Sim`] on `127.0.0.1:<free port>`, served by one worker thread of its own runtime. It
/// dereferences to the [`Sim`] for its methods. Dropping it shuts the runtime down, which drops
/// the simulator's tasks without waiting; [`SimServer::stop`] waits until the port is closed.
pub struct SimServer {
    rt: tokio::runtime::Runtime,
    sim: Option<Arc<Sim>>,
}

impl SimServer {
    /// Starts a plain-HTTP simulator with `opts`.
    ///
    /// # Panics
    /// If the runtime cannot be built or loopback cannot be bound: there is nothing to test then.
    pub fn start(opts: SimOptions) -> SimServer {
        let rt = runtime();
        let sim = rt.block_on(Sim::start(loopback(), opts)).expect("the simulator binds 127.0.0.1:0");
        SimServer { rt, sim: Some(Arc::new(sim)) }
    }

    /// Starts a simulator that serves HTTPS with the PEM certificate chain `cert_pem` and private
    /// key `key_pem` (see [`Sim::start_tls`]).
    ///
    /// # Panics
    /// As [`SimServer::start`], and if the certificate or key is unusable.
    pub fn start_tls(opts: SimOptions, cert_pem: &[u8], key_pem: &[u8]) -> SimServer {
        let rt = runtime();
        let sim = rt
            .block_on(Sim::start_tls(loopback(), opts, cert_pem, key_pem))
            .expect("the simulator serves HTTPS on 127.0.0.1:0");
        SimServer { rt, sim: Some(Arc::new(sim)) }
    }

    /// A simulator with `ttl` and no per-user token limit (tests of the limit set it
    /// themselves; the others rotate more tokens than Knox's default 10 allows).
    pub fn with_ttl(ttl: Duration) -> SimServer {
        SimServer::start(SimOptions { ttl: Some(ttl), token_limit: None, ..SimOptions::default() })
    }

    /// Stops serving: later connections are refused. The simulator is gone afterwards, and
    /// dereferencing this panics.
    pub fn stop(&mut self) {
        if let Some(sim) = self.sim.take() {
            self.rt.block_on(sim.stop());
        }
    }

    /// The v1 token URL.
    pub fn url(&self) -> String {
        self.token_url(ApiVersion::V1)
    }

    /// Every JWT issued so far, oldest first.
    pub fn jwts(&self) -> Vec<String> {
        self.issued().into_iter().map(|i| i.jwt).collect()
    }

    /// The simulator itself, for a thread that outlives this borrow (the benchmark's issue
    /// recorder waits on [`Sim::wait_for_acquisitions`] on a runtime of its own).
    pub fn shared(&self) -> Arc<Sim> {
        Arc::clone(self.sim.as_ref().expect("the simulator is running"))
    }
}

impl Deref for SimServer {
    type Target = Sim;

    fn deref(&self) -> &Sim {
        self.sim.as_ref().expect("the simulator is running")
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(THREAD_NAME)
        .enable_all()
        .build()
        .expect("building the simulator's runtime")
}

fn loopback() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], 0))
}
