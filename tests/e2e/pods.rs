//! certflow as real Pods on a local kubelet node (certflow_testenv::Node),
//! deployed from deploy/overlays/local-node.

use std::time::Instant;

use certflow_testenv::{CertflowOnNode, Node};

#[tokio::test]
async fn certflow_runs_as_pods() {
    let env = certflow_testenv::shared();
    let started = Instant::now();
    let node = Node::start(env)
        .await
        .unwrap_or_else(|err| panic!("the node did not start: {err}"));
    eprintln!("node {} Ready after {:?}", node.name(), started.elapsed());
    let certflow = CertflowOnNode::deploy(env, &node)
        .await
        .unwrap_or_else(|err| panic!("certflow did not roll out: {err}"));
    eprintln!(
        "certflow rolled out after {:?} ({})",
        started.elapsed(),
        certflow.overlay().display()
    );
}
