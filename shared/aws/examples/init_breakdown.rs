//! Where the ingest function's init time goes: each step of `run_http` before the first `next`,
//! timed from the start of `main`. Run with the environment of `scripts/coldstart.py`.
use std::time::Instant;

fn main() {
    let t0 = Instant::now();
    let step = |label: &str| eprintln!("{:>8.3} ms  {label}", t0.elapsed().as_secs_f64() * 1000.0);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    step("tokio runtime");
    rt.block_on(async {
        relay_aws::lambda::init_tracing();
        step("tracing");
        let env = relay_aws::lambda::Env::from_env().unwrap();
        step("env");
        let conf = aws_config::load_from_env().await;
        step("aws_config::load_from_env");
        let dynamo = aws_sdk_dynamodb::Client::new(&conf);
        step("dynamodb Client::new");
        let sqs = aws_sdk_sqs::Client::new(&conf);
        step("sqs Client::new");
        let cb = relay_callback::HttpCallback::new(env.policy.clone(), env.attempt_timeout).unwrap();
        step("HttpCallback::new");
        std::hint::black_box((dynamo, sqs, cb));
    });
}
