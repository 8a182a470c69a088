//! The round's aggregation, on a thread of its own: alignment and
//! least-squares solves are heavy compute and must not stall the async
//! runtime that serves clients.

use std::sync::Arc;
use std::sync::mpsc;
use std::time::Instant;

use fusion_core::{
    Instructions, MergeOutcome, ModelReport, Refinement, Refiner, RoundContext, Strategy, Update,
};
use tokio::sync::oneshot;

use crate::rounds::Examples;

/// What the round's aggregation produced.
#[derive(Debug)]
pub struct Aggregated {
    /// The merged model and a report per update of exchange 0.
    pub outcome: MergeOutcome,
    /// Client ids (and examples) in the order their exchange-0 updates
    /// were folded in.
    pub clients: Vec<(String, Examples)>,
    /// Seconds spent inside the strategy.
    pub seconds: f64,
    /// The round's refinement, having seen every accepted client model,
    /// ready to refine the merge; `None` without a refiner.
    pub refinement: Option<PendingRefinement>,
}

/// A round's refinement after aggregation: run it on the merged model, or
/// the error that stopped it seeing the clients (then the round saves the
/// merge unrefined and records why).
pub struct PendingRefinement {
    /// The step's name, for the record.
    pub step: String,
    /// The refinement, or why it failed while observing.
    pub round: Result<Box<dyn Refinement>, String>,
    /// Seconds it spent observing client models (teacher forward passes),
    /// counted as the step's time, not the strategy's.
    pub observe_seconds: f64,
}

impl std::fmt::Debug for PendingRefinement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingRefinement")
            .field("step", &self.step)
            .field("ok", &self.round.is_ok())
            .finish_non_exhaustive()
    }
}

enum Command {
    Add {
        client: String,
        exchange: u32,
        examples: Examples,
        // Boxed: the other commands are a few bytes.
        update: Box<Update>,
        reply: oneshot::Sender<Result<ModelReport, String>>,
    },
    Advance {
        reply: oneshot::Sender<Result<Option<Instructions>, String>>,
    },
    Finish {
        reply: oneshot::Sender<Result<Aggregated, String>>,
    },
}

/// Handle to one round's aggregation thread. Updates are folded in as they
/// arrive (for `fedavg`, `align` to a fixed reference, `regmean` and
/// `layerwise` into running sums, so memory does not grow with clients).
/// Dropping the handle abandons the round: the thread ends and its partial
/// sums are discarded.
#[derive(Clone, Debug)]
pub struct Aggregator {
    commands: mpsc::Sender<Command>,
}

impl Aggregator {
    /// Starts the thread and the strategy's aggregation for `round` (and
    /// the refiner's, if any); returns the handle and the instructions of
    /// exchange 0, or why the strategy cannot begin.
    pub fn spawn(
        strategy: Arc<dyn Strategy>,
        refiner: Option<Arc<dyn Refiner>>,
        round: RoundContext,
    ) -> Result<(Self, Instructions), String> {
        let (tx, rx) = mpsc::channel();
        let (began_tx, began_rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("fusion-aggregate".into())
            .spawn(move || serve(strategy.as_ref(), refiner.as_deref(), &round, began_tx, rx))
            .map_err(|e| format!("cannot start the aggregation thread: {e}"))?;
        let instructions = began_rx
            .recv()
            .map_err(|_| "the aggregation thread stopped".to_owned())??;
        Ok((Self { commands: tx }, instructions))
    }

    /// Folds in one verified update of `exchange`. Errors when the update
    /// does not fit (the aggregation is then unchanged); `None` when that
    /// exchange is over or the round has been finished or abandoned.
    pub async fn add(
        &self,
        client: String,
        exchange: u32,
        examples: Examples,
        update: Update,
    ) -> Option<Result<ModelReport, String>> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Add {
                client,
                exchange,
                examples,
                update: Box::new(update),
                reply,
            })
            .ok()?;
        rx.await.ok()
    }

    /// Ends the current exchange: the next one's instructions, or `None`
    /// when the strategy is ready to finish.
    pub async fn advance(&self) -> Option<Result<Option<Instructions>, String>> {
        let (reply, rx) = oneshot::channel();
        self.commands.send(Command::Advance { reply }).ok()?;
        rx.await.ok()
    }

    /// Finishes the aggregation; later `add`s get `None`.
    pub async fn finish(&self) -> Option<Result<Aggregated, String>> {
        let (reply, rx) = oneshot::channel();
        self.commands.send(Command::Finish { reply }).ok()?;
        rx.await.ok()
    }
}

fn serve(
    strategy: &dyn Strategy,
    refiner: Option<&dyn Refiner>,
    round: &RoundContext,
    began: mpsc::Sender<Result<Instructions, String>>,
    rx: mpsc::Receiver<Command>,
) {
    let started = Instant::now();
    let mut aggregation = match strategy.begin(round) {
        Ok(a) => a,
        Err(e) => {
            let _ = began.send(Err(e.to_string()));
            return;
        }
    };
    let mut refinement = refiner.map(|r| PendingRefinement {
        step: r.name().to_owned(),
        round: r.begin(round).map_err(|e| e.to_string()),
        observe_seconds: 0.0,
    });
    let mut seconds = started.elapsed().as_secs_f64();
    if began.send(Ok(aggregation.instructions())).is_err() {
        return;
    }
    // The open exchange; `None` once the last one has ended.
    let mut exchange = Some(0u32);
    let mut clients = Vec::new();
    for command in rx {
        let t = Instant::now();
        match command {
            Command::Add {
                client,
                exchange: of,
                examples,
                update,
                reply,
            } => {
                if exchange != Some(of) {
                    // Dropping `reply` answers `None`: that exchange is over.
                    continue;
                }
                // The refinement sees a model only once the strategy has
                // accepted it, so both see the same clients.
                let teacher = match &refinement {
                    Some(PendingRefinement { round: Ok(_), .. }) if of == 0 => {
                        update.params.clone().map(|p| (p, update.weight))
                    }
                    _ => None,
                };
                let result = aggregation.add(*update).map_err(|e| e.to_string());
                let mut observing = 0.0;
                if result.is_ok() && of == 0 {
                    if let (Some((model, weight)), Some(pending)) = (teacher, refinement.as_mut()) {
                        let o = Instant::now();
                        observe(pending, &client, &model, weight);
                        observing = o.elapsed().as_secs_f64();
                        pending.observe_seconds += observing;
                    }
                    clients.push((client, examples));
                }
                seconds += t.elapsed().as_secs_f64() - observing;
                let _ = reply.send(result);
            }
            Command::Advance { reply } => {
                let result = aggregation.advance().map_err(|e| e.to_string());
                exchange = match &result {
                    Ok(Some(next)) => Some(next.exchange),
                    Ok(None) => None,
                    Err(_) => exchange,
                };
                seconds += t.elapsed().as_secs_f64();
                let _ = reply.send(result);
            }
            Command::Finish { reply } => {
                let result = aggregation.finish().map_err(|e| e.to_string());
                seconds += t.elapsed().as_secs_f64();
                let _ = reply.send(result.map(|outcome| Aggregated {
                    outcome,
                    clients,
                    seconds,
                    refinement,
                }));
                return;
            }
        }
    }
}

/// Shows `model` to the refinement; a failure ends the refinement for
/// this round (it is recorded, and the merge is saved unrefined), never
/// the aggregation: the update is already part of the merge.
fn observe(
    pending: &mut PendingRefinement,
    client: &str,
    model: &fusion_core::ParamSet,
    weight: f64,
) {
    let Ok(round) = pending.round.as_mut() else {
        return;
    };
    if let Err(e) = round.observe(model, weight) {
        tracing::error!(client, step = %pending.step, "refinement cannot use this model: {e}");
        pending.round = Err(format!("client `{client}`: {e}"));
    }
}
