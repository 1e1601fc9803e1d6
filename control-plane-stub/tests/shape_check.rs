//! The golden transcript's ECS responses fit botocore's ECS model: tests/shape_check.py walks
//! each one against its operation's output shape (members, types; Berth's `berth` extension
//! aside) and checks that errors carry `__type` and `message`. golden.rs keeps the transcript
//! equal to what berth-cp answers, so together they check berth-cp. botocore comes from
//! BERTH_PYTHON (else `python3`), as for the boto3 tests; without it this test fails loudly.

mod common;

use common::clients::*;
use common::*;

#[tokio::test]
async fn the_golden_transcript_fits_botocores_ecs_model() {
    let dir = TempDir::new("shape-check");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/shape_check.py");
    let transcript = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/golden/ecs_transcript.txt"
    );
    let out = python_output(dir.path(), &[script, transcript]).await;
    assert!(
        out.status.success(),
        "{script} found responses botocore's model does not allow ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
