//! Runs a [`Scenario`] in memory against nova-proto's client: no sockets, a
//! virtual clock that jumps to the next event, a seeded network. A scenario
//! covering minutes of protocol time runs in milliseconds, the same way every
//! time.

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nova_proto::{Client, Config, Input, Output, Stats, TransportDown};

use crate::engine::{Action, Script};
use crate::faults::{Delivery, Direction, Faults, Pipe};
use crate::record::{ConnectionLog, Transcript};
use crate::scenario::{Scenario, ScenarioError, ScenarioScript};

/// Settings of an in-memory run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimOptions {
    /// Seeds the client (masks, keys, jitter) and the network (jitter).
    pub seed: u64,
    /// The network at the start (a scenario's `faults` steps change it).
    pub faults: Faults,
    /// Virtual time after which the run fails.
    pub max_time: Duration,
}

impl Default for SimOptions {
    fn default() -> SimOptions {
        SimOptions { seed: 1, faults: Faults::latency(Duration::from_millis(2)), max_time: Duration::from_secs(3600) }
    }
}

/// What a successful in-memory run saw.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SimReport {
    /// Everything the server saw and did.
    pub transcript: Transcript,
    /// Each connection, for assertions.
    pub connections: Vec<ConnectionLog>,
    /// Every message and event the client produced, with its virtual time.
    pub outputs: Vec<(Duration, Output)>,
    /// The client's counters at the end.
    pub stats: Stats,
    /// Virtual time the scenario took.
    pub elapsed: Duration,
}

/// A connection of the simulated network.
struct Link {
    to_server: Pipe,
    to_client: Pipe,
    /// The server reset the connection: the client sees it then. (A FIN
    /// travels through the pipes behind the bytes; a reset overtakes them.)
    reset_at: Option<Instant>,
}

struct Sim<A> {
    client: Client,
    app: A,
    script: ScenarioScript,
    t0: Instant,
    now: Instant,
    faults: Faults,
    seed: u64,
    links: BTreeMap<u32, Link>,
    /// The transport the client has open.
    live: Option<u32>,
    /// A transport coming up: its id and when.
    connecting: Option<(u32, Instant)>,
    next_id: u32,
    outputs: Vec<(Duration, Output)>,
}

impl Scenario {
    /// Runs the scenario in memory against a [`nova_proto::Client`] built from
    /// `config`, with default [`SimOptions`]. `app` is the application: it sees
    /// every message and event the client produces and may call commands
    /// (`send`, `close`, ...), as your code does with a real driver.
    ///
    /// # Errors
    ///
    /// The first step that was not met, with the full transcript.
    pub fn run_sim(
        self,
        config: impl Into<Arc<Config>>,
        app: impl FnMut(&mut Client, Instant, &Output),
    ) -> Result<SimReport, Box<ScenarioError>> {
        self.run_sim_with(SimOptions::default(), config, app)
    }

    /// Like [`run_sim`](Self::run_sim), with a seed, network faults and a time limit.
    ///
    /// # Errors
    ///
    /// As [`run_sim`](Self::run_sim).
    pub fn run_sim_with(
        self,
        options: SimOptions,
        config: impl Into<Arc<Config>>,
        app: impl FnMut(&mut Client, Instant, &Output),
    ) -> Result<SimReport, Box<ScenarioError>> {
        let t0 = epoch();
        let mut seed = [0u8; 32];
        seed[..8].copy_from_slice(&options.seed.to_le_bytes());
        let mut sim = Sim {
            client: Client::new(config, seed, t0),
            app,
            script: self.script(t0),
            t0,
            now: t0,
            faults: options.faults,
            seed: options.seed,
            links: BTreeMap::new(),
            live: None,
            connecting: None,
            next_id: 0,
            outputs: Vec::new(),
        };
        // Steps before the first `accept` (network faults, say) take effect
        // before the client does anything.
        sim.script.timeout(t0);
        sim.drain_script();
        sim.client.connect(t0);
        sim.run(t0 + options.max_time)?;
        let rec = sim.script.recorder();
        Ok(SimReport {
            transcript: rec.transcript.clone(),
            connections: rec.connections.clone(),
            outputs: sim.outputs,
            stats: *sim.client.stats(),
            elapsed: sim.now - sim.t0,
        })
    }
}

/// The simulation's epoch: virtual time is this plus offsets.
fn epoch() -> Instant {
    Instant::now()
}

impl<A: FnMut(&mut Client, Instant, &Output)> Sim<A> {
    fn run(&mut self, limit: Instant) -> Result<(), Box<ScenarioError>> {
        // Virtual time only moves forward, but a livelock (events at one instant
        // forever) is still possible in principle: bound the steps too.
        for _ in 0..10_000_000u64 {
            self.drain_client();
            self.drain_script();
            match self.script.outcome() {
                Some(Ok(())) => return Ok(()),
                Some(Err(_)) => return Err(self.error()),
                None => {}
            }
            let Some(next) = self.next_event() else {
                self.script.fail(self.now, "nothing more can happen: the client and the server both wait".to_owned());
                return Err(self.error());
            };
            if next > limit {
                self.script.fail(self.now, format!("not finished after {:?} of virtual time", limit - self.t0));
                return Err(self.error());
            }
            self.now = self.now.max(next);
            self.step();
        }
        self.script.fail(self.now, "too many events: livelock".to_owned());
        Err(self.error())
    }

    fn error(&self) -> Box<ScenarioError> {
        Box::new(self.script.error().unwrap_or_else(|| ScenarioError {
            step: self.script.steps_done() + 1,
            step_description: String::new(),
            problem: "failed".to_owned(),
            transcript: self.script.recorder().transcript.clone(),
        }))
    }

    fn new_pipes(&mut self, id: u32) -> (Pipe, Pipe) {
        let seed = self.seed ^ u64::from(id).wrapping_mul(0xA24B_AED4_963E_E407);
        (Pipe::new(Direction::ToServer, self.faults, seed), Pipe::new(Direction::ToClient, self.faults, seed ^ 1))
    }

    /// The client's run loop: bytes out, then one output, until quiet.
    fn drain_client(&mut self) {
        loop {
            self.transmit();
            match self.client.poll_output() {
                Some(output) => self.act(output),
                // Decoding may have queued pongs or a close: done when nothing is left.
                None if self.transmit() => {}
                None => return,
            }
        }
    }

    fn transmit(&mut self) -> bool {
        let mut out = Vec::new();
        if self.client.poll_transmit(&mut out, usize::MAX) == 0 {
            return false;
        }
        if let Some(link) = self.live.and_then(|id| self.links.get_mut(&id)) {
            link.to_server.push(self.now, &out);
        }
        true
    }

    fn act(&mut self, output: Output) {
        match &output {
            Output::Connect(_) => {
                self.next_id += 1;
                let id = self.next_id;
                let (to_server, to_client) = self.new_pipes(id);
                self.links.insert(id, Link { to_server, to_client, reset_at: None });
                self.live = Some(id);
                self.connecting = Some((id, self.now + self.faults.latency));
            }
            Output::CloseTransport => {
                // The last bytes go out, then the client's side ends.
                self.transmit();
                if let Some(id) = self.live.take() {
                    if self.connecting.is_some_and(|(c, _)| c == id) {
                        self.connecting = None;
                    }
                    if let Some(link) = self.links.get_mut(&id) {
                        link.to_server.finish(self.now);
                    }
                }
            }
            Output::Message(_) | Output::Event(_) => {
                self.outputs.push((self.now - self.t0, output.clone()));
                (self.app)(&mut self.client, self.now, &output);
            }
        }
    }

    /// Carries out the server's actions.
    fn drain_script(&mut self) {
        while let Some(action) = self.script.poll_action() {
            match action {
                Action::Send(id, bytes) => {
                    if let Some(link) = self.links.get_mut(&id) {
                        link.to_client.push(self.now, &bytes);
                    }
                }
                Action::Close(id) => {
                    if let Some(link) = self.links.get_mut(&id) {
                        link.to_client.finish(self.now);
                    }
                }
                Action::Reset(id) => {
                    if let Some(link) = self.links.get_mut(&id) {
                        // A reset discards what is in flight, both ways.
                        let (to_server, to_client) = (link.to_server.faults(), link.to_client.faults());
                        link.to_server = Pipe::new(Direction::ToServer, to_server, 0);
                        link.to_client = Pipe::new(Direction::ToClient, to_client, 0);
                        link.reset_at.get_or_insert(self.now + self.faults.latency);
                    }
                }
                Action::Faults(faults) => {
                    self.faults = faults;
                    for link in self.links.values_mut() {
                        link.to_server.set_faults(faults);
                        link.to_client.set_faults(faults);
                    }
                }
            }
        }
    }

    fn next_event(&self) -> Option<Instant> {
        let mut next = [self.client.poll_timeout(), self.script.poll_timeout(), self.connecting.map(|(_, at)| at)]
            .into_iter()
            .flatten()
            .min();
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        for link in self.links.values() {
            consider(link.to_server.poll_timeout());
            consider(link.to_client.poll_timeout());
            consider(link.reset_at);
        }
        next
    }

    /// Delivers everything due at `self.now`.
    fn step(&mut self) {
        let now = self.now;
        if let Some((id, at)) = self.connecting {
            if at <= now {
                self.connecting = None;
                self.script.connected(now, id);
                self.client.handle_input(now, Input::TransportUp);
                return;
            }
        }
        let ids: Vec<u32> = self.links.keys().copied().collect();
        for id in ids {
            self.step_link(id, now);
        }
        if self.client.poll_timeout().is_some_and(|t| t <= now) {
            self.client.handle_timeout(now);
        }
        if self.script.poll_timeout().is_some_and(|t| t <= now) {
            self.script.timeout(now);
        }
    }

    fn step_link(&mut self, id: u32, now: Instant) {
        if self.links.get(&id).and_then(|link| link.reset_at).is_some_and(|at| at <= now) {
            return self.end(id, now, TransportDown::Reset(io::ErrorKind::ConnectionReset));
        }
        let live = self.live == Some(id);
        loop {
            let Some(link) = self.links.get_mut(&id) else { return };
            match link.to_server.poll(now) {
                Some(Delivery::Bytes(bytes)) => self.script.received(now, id, &bytes),
                // The client shut the transport (it is no longer `live`): the
                // server sees the end, and nobody is left to read what it sends.
                Some(Delivery::Fin) => return self.end(id, now, TransportDown::Eof),
                Some(Delivery::Close) => return self.end(id, now, TransportDown::Eof),
                None => break,
            }
        }
        loop {
            let Some(link) = self.links.get_mut(&id) else { return };
            match link.to_client.poll(now) {
                Some(Delivery::Bytes(bytes)) if live => self.client.handle_input(now, Input::Received(&bytes)),
                Some(Delivery::Bytes(_)) => {}
                Some(Delivery::Fin) => return self.end(id, now, TransportDown::Eof),
                Some(Delivery::Close) => return self.end(id, now, TransportDown::Eof),
                None => break,
            }
        }
    }

    /// The connection is over: the server sees the end, and the client, if it
    /// still uses the connection, sees `why`.
    fn end(&mut self, id: u32, now: Instant, why: TransportDown) {
        if self.links.remove(&id).is_none() {
            return;
        }
        self.script.disconnected(now, id);
        if self.live == Some(id) {
            self.live = None;
            self.client.handle_input(now, Input::TransportDown(why));
        }
    }
}
