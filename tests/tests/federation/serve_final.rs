//! With `serve_final`, a finished server stays up (a Kubernetes
//! StatefulSet restarts a process that exits, in a loop): it tells clients
//! the run is finished and serves the final model until it is stopped.

use std::time::Duration;

use fusion_net::{Assembler, ClientTls, pb};
use fusion_server::StrategyKind;
use fusion_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_server_keeps_serving_its_final_model() {
    let dir = scratch("serve-final");
    let mut config = server_config(dir.join("state"));
    config.rounds = 1;
    config.min_clients = 1;
    config.strategy = StrategyKind::Fedavg;
    config.serve_final = true;
    config.finish_grace_secs = 0.5;
    let model = initial_global(&config);
    let server = RunningServer::start(config, None);
    let mut rpc = raw_client(&server.http_url(), &ClientTls::default(), None);
    let client = join(&mut rpc, "c0", 10, &model).await;
    let round = wait_for_train(&mut rpc, &client).await;
    let mut trained = model.clone();
    trained.at_mut(0).data_mut()[0] += 1.0;
    upload(&mut rpc, honest_chunks(&trained, round, &client, 10))
        .await
        .expect("merged");
    // Well past the finish grace, it still answers.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let reply = heartbeat(&mut rpc, &client).await.expect("still serving");
    assert_eq!(reply.action, pb::Action::Finished as i32);
    let mut stream = rpc
        .fetch_global(pb::FetchRequest {
            client_id: client.id.clone(),
            round: 2,
            exchange: 0,
            session: client.session.clone(),
        })
        .await
        .expect("final model served")
        .into_inner();
    let first = stream.message().await.expect("chunk").expect("header");
    let mut assembler = Assembler::start(first, u64::MAX).expect("header");
    while let Some(chunk) = stream.message().await.expect("chunk") {
        assembler.push(chunk).expect("push");
    }
    let final_model = assembler
        .finish()
        .expect("complete")
        .payload
        .to_params()
        .expect("params");
    assert_eq!(final_model, trained, "one client's fedavg is its model");
    server.kill();
}
