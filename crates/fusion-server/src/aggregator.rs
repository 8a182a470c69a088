//! The round's aggregation, on a thread of its own: alignment is heavy
//! compute and must not stall the async runtime that serves clients.

use std::sync::Arc;
use std::sync::mpsc;
use std::time::Instant;

use fusion_core::{MergeError, MergeOutcome, ModelReport, ParamSet, Strategy};
use tokio::sync::oneshot;

/// What the round's aggregation produced.
#[derive(Debug)]
pub struct Aggregated {
    /// The merged model and a report per update.
    pub outcome: MergeOutcome,
    /// Client ids in the order their updates were folded in.
    pub clients: Vec<(String, u64)>,
    /// Seconds spent inside the strategy.
    pub seconds: f64,
}

enum Command {
    Add {
        client: String,
        examples: u64,
        params: ParamSet,
        reply: oneshot::Sender<Result<ModelReport, String>>,
    },
    Finish {
        reply: oneshot::Sender<Result<Aggregated, String>>,
    },
}

/// Handle to one round's aggregation thread. Updates are folded in as they
/// arrive (for `fedavg` and `align` into a running sum, so memory is one
/// model however many clients report). Dropping the handle abandons the
/// round: the thread ends and its partial sum is discarded.
#[derive(Clone, Debug)]
pub struct Aggregator {
    commands: mpsc::Sender<Command>,
}

/// How the aggregation chooses its reference.
#[derive(Clone, Debug)]
pub enum ReferenceMode {
    /// A fixed model (the global one), or none: the strategy then uses the
    /// first update.
    Fixed(Option<Arc<ParamSet>>),
    /// The update with the most examples, chosen at the end: every update
    /// is kept until then.
    Largest,
}

impl Aggregator {
    /// Starts the thread.
    pub fn spawn(strategy: Arc<dyn Strategy>, reference: ReferenceMode) -> Self {
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("fusion-aggregate".into())
            .spawn(move || serve(strategy, reference, rx))
            .map(|_| ())
            .unwrap_or_else(|e| tracing::error!("cannot start the aggregation thread: {e}"));
        Self { commands: tx }
    }

    /// Folds in one verified update. Errors when the update does not fit
    /// (the aggregation is then unchanged) or when the round has already
    /// been finished or abandoned (`None`).
    pub async fn add(
        &self,
        client: String,
        examples: u64,
        params: ParamSet,
    ) -> Option<Result<ModelReport, String>> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Add {
                client,
                examples,
                params,
                reply,
            })
            .ok()?;
        rx.await.ok()
    }

    /// Finishes the aggregation; later `add`s get `None`.
    pub async fn finish(&self) -> Option<Result<Aggregated, String>> {
        let (reply, rx) = oneshot::channel();
        self.commands.send(Command::Finish { reply }).ok()?;
        rx.await.ok()
    }
}

fn serve(strategy: Arc<dyn Strategy>, reference: ReferenceMode, rx: mpsc::Receiver<Command>) {
    match reference {
        ReferenceMode::Fixed(reference) => streaming(strategy.as_ref(), reference.as_deref(), rx),
        ReferenceMode::Largest => buffered(strategy.as_ref(), rx),
    }
}

/// Folds each update in as it comes.
fn streaming(strategy: &dyn Strategy, reference: Option<&ParamSet>, rx: mpsc::Receiver<Command>) {
    let mut seconds = 0.0;
    let mut clients = Vec::new();
    let started = Instant::now();
    let begun = strategy.begin(reference);
    seconds += started.elapsed().as_secs_f64();
    let mut aggregation = match begun {
        Ok(a) => a,
        Err(e) => {
            // Answer every command with the reason, so nothing waits forever.
            let message = e.to_string();
            for command in rx {
                let err = message.clone();
                match command {
                    Command::Add { reply, .. } => drop(reply.send(Err(err))),
                    Command::Finish { reply } => drop(reply.send(Err(err))),
                }
            }
            return;
        }
    };
    for command in rx {
        match command {
            Command::Add {
                client,
                examples,
                params,
                reply,
            } => {
                let t = Instant::now();
                let result = aggregation
                    .add(&params, examples as f64)
                    .map_err(|e| e.to_string());
                seconds += t.elapsed().as_secs_f64();
                if result.is_ok() {
                    clients.push((client, examples));
                }
                let _ = reply.send(result);
            }
            Command::Finish { reply } => {
                let t = Instant::now();
                let result = aggregation.finish().map_err(|e| e.to_string());
                seconds += t.elapsed().as_secs_f64();
                let _ = reply.send(result.map(|outcome| Aggregated {
                    outcome,
                    clients,
                    seconds,
                }));
                return;
            }
        }
    }
}

/// Keeps every update, then merges with the largest as the reference.
fn buffered(strategy: &dyn Strategy, rx: mpsc::Receiver<Command>) {
    let mut kept: Vec<(String, u64, ParamSet)> = Vec::new();
    let mut layout = fusion_core::RunningSum::new();
    for command in rx {
        match command {
            Command::Add {
                client,
                examples,
                params,
                reply,
            } => {
                // Check the layout now, so a bad update is refused on arrival.
                let result = layout
                    .add(&params, examples as f64)
                    .map_err(|e| e.to_string())
                    .map(|()| ModelReport {
                        index: kept.len(),
                        weight: examples as f64,
                        ..ModelReport::default()
                    });
                if result.is_ok() {
                    kept.push((client, examples, params));
                }
                let _ = reply.send(result);
            }
            Command::Finish { reply } => {
                let t = Instant::now();
                // Stable: ties go to the update that arrived first.
                let largest = kept
                    .iter()
                    .enumerate()
                    .max_by_key(|(i, (_, examples, _))| (*examples, std::cmp::Reverse(*i)))
                    .map(|(i, _)| i);
                let result = match largest {
                    None => Err(MergeError::NoModels.to_string()),
                    Some(i) => {
                        let reference = kept[i].2.clone();
                        let models: Vec<(ParamSet, f64)> = kept
                            .iter()
                            .map(|(_, e, p)| (p.clone(), *e as f64))
                            .collect();
                        strategy
                            .merge(Some(&reference), &models)
                            .map_err(|e| e.to_string())
                    }
                };
                let clients = kept.iter().map(|(c, e, _)| (c.clone(), *e)).collect();
                let _ = reply.send(result.map(|outcome| Aggregated {
                    outcome,
                    clients,
                    seconds: t.elapsed().as_secs_f64(),
                }));
                return;
            }
        }
    }
}
