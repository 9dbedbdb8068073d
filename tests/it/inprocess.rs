//! The keeper as a library, in this process (like mini-redis's `start_server`): scheduling
//! against real time and a real simulator, reloads through the watch channel, and `app::run`
//! stopped by its cancellation token.

use std::sync::Arc;
use std::time::Duration;

use knox_sim::SimOptions;
use token_keeper::config::{Config, Env};
use token_keeper::keeper::{FirstRound, Keeper};
use token_keeper::knox::Clients;
use tokio::sync::{oneshot, watch, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::harness::*;

struct Running {
    shutdown: CancellationToken,
    configs: watch::Sender<Arc<Config>>,
    refresh: Arc<Notify>,
    first_round: oneshot::Receiver<FirstRound>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    /// Runs a keeper for `fx`'s config on a thread with its own current-thread runtime, as
    /// the binary does; the test observes files and the simulator.
    fn start(fx: &Fixture) -> Running {
        let config = Arc::new(token_keeper::config::load(&fx.config, &Env::default()).unwrap());
        let shutdown = CancellationToken::new();
        let (tx, first_round) = oneshot::channel();
        let (configs, config_rx) = watch::channel(config.clone());
        let refresh = Arc::new(Notify::new());
        let (s, r) = (shutdown.clone(), refresh.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let tracker = TaskTracker::new();
                let telemetry = Arc::new(token_keeper::telemetry::Telemetry::new(&config));
                let keeper =
                    Keeper::new(config, Arc::new(Clients::default()), tracker.clone(), s, tx, telemetry)
                        .unwrap();
                keeper.run(config_rx, r).await;
                tracker.close();
                tracker.wait().await;
            });
        });
        Running { shutdown, configs, refresh, first_round, thread: Some(thread) }
    }

    fn first_round(&mut self) -> FirstRound {
        let mut got = None;
        wait_until(WAIT, || {
            got = self.first_round.try_recv().ok();
            got.is_some()
        });
        got.expect("the first round completes in time")
    }

    fn stop(mut self) {
        self.shutdown.cancel();
        self.thread.take().unwrap().join().expect("the keeper thread ends cleanly");
    }
}

#[test]
fn short_lived_tokens_rotate_about_twice_per_lifetime() {
    let sim = SimServer::with_ttl(Duration::from_secs(2));
    let fx = Fixture::new();
    fx.write_config(FAST, &[fx.cluster("vc", &sim.url(), "")]);
    let mut k = Running::start(&fx);
    assert_eq!(k.first_round(), FirstRound { published: 1, failed: 0 });
    let start = std::time::Instant::now();
    assert!(wait_until(WAIT, || sim.acquisitions() >= 5), "five acquisitions");
    let elapsed = start.elapsed();
    // Four rotations at half-life. The lifetime is 1 to 2 s (the JWT's exp is truncated to
    // whole seconds, and the earlier expiry counts), so 0.5 to 1 s each: 2 to 4 s, never a
    // loop.
    assert!(elapsed >= Duration::from_millis(1900), "rotated too fast: {elapsed:?}");
    assert!(elapsed <= Duration::from_secs(12), "rotated too slowly: {elapsed:?}");
    k.stop();
}

#[test]
fn a_token_that_never_expires_is_not_refreshed_on_a_timer() {
    let sim = SimServer::start(SimOptions { ttl: None, ..SimOptions::default() });
    let fx = Fixture::new();
    fx.write_config(FAST, &[fx.cluster("vc", &sim.url(), "")]);
    let mut k = Running::start(&fx);
    assert_eq!(k.first_round().published, 1);
    let json = fx.json("vc").unwrap();
    assert_eq!(json["expires_at"], serde_json::Value::Null);
    assert_eq!(json["expires_at_ms"], -1);
    // Nothing is due: after 1.5 s (longer than any backoff or refresh of a fast config) it
    // still holds the one token. A refresh request still works.
    wait_until(Duration::from_millis(1500), || false);
    assert_eq!(sim.acquisitions(), 1);
    k.refresh.notify_one();
    assert!(wait_until(WAIT, || sim.acquisitions() >= 2));
    k.stop();
}

#[test]
fn reload_through_the_watch_channel_keeps_unchanged_tokens() {
    let sim = SimServer::with_ttl(Duration::from_secs(3600));
    let fx = Fixture::new();
    fx.write_config(FAST, &[fx.cluster("a", &sim.url(), "")]);
    let mut k = Running::start(&fx);
    k.first_round();
    let token_a = fx.token("a").unwrap();
    // Same source, a new policy: the token is kept. A new cluster is started.
    fx.write_config(
        "min_remaining = \"2s\"\n",
        &[fx.cluster("a", &sim.url(), ""), fx.cluster("b", &sim.url(), "")],
    );
    let config = token_keeper::config::load(&fx.config, &Env::default()).unwrap();
    k.configs.send_replace(Arc::new(config));
    assert!(wait_until(WAIT, || fx.token("b").is_some()));
    assert_eq!(sim.acquisitions(), 2);
    assert_eq!(fx.token("a").unwrap(), token_a);
    k.stop();
}

#[test]
fn app_run_stops_when_cancelled() {
    let sim = SimServer::with_ttl(Duration::from_secs(3600));
    let fx = Fixture::new();
    fx.write_config(FAST, &[fx.cluster("vc", &sim.url(), "")]);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let stop = CancellationToken::new();
    let config = fx.config.clone();
    let s = stop.clone();
    let daemon = std::thread::spawn(move || rt.block_on(token_keeper::app::run(&config, s)));
    assert!(wait_until(WAIT, || fx.token("vc").is_some()));
    stop.cancel();
    daemon.join().unwrap().expect("run returns Ok after cancellation");
    assert_eq!(fx.token("vc").unwrap(), sim.jwts()[0]);
}
