//! Where the ingest function's init time goes: each step of `run_http` before the first `next`,
//! timed from the start of `main`. Run it with the environment of `scripts/coldstart.py` (a clean
//! one: `env -i`, or this machine's SSL_CERT_FILE/AWS_CA_BUNDLE change what is loaded).
//! `init_breakdown default` loads the SDK configuration as `aws_config::load_from_env` does;
//! `init_breakdown lambda` as `relay_aws::lambda::sdk_config` does (what the functions use).
use std::time::Instant;

fn main() {
    let t0 = Instant::now();
    let mode = std::env::args().nth(1).unwrap_or_else(|| "lambda".into());
    let step = |label: &str| eprintln!("{:>8.3} ms  {label}", t0.elapsed().as_secs_f64() * 1000.0);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    step("tokio runtime");
    rt.block_on(async {
        relay_aws::lambda::init_tracing();
        step("tracing");
        let env = relay_aws::lambda::Env::from_env().unwrap();
        step("env");
        let http = relay_aws::http::SdkHttpClient::from_env().unwrap();
        step("SdkHttpClient::from_env (alone)");
        std::hint::black_box(http);
        let conf = match mode.as_str() {
            "default" => aws_config::load_from_env().await,
            _ => relay_aws::lambda::sdk_config().await.unwrap(),
        };
        step(&format!("SDK config ({mode})"));
        let dynamo = aws_sdk_dynamodb::Client::new(&conf);
        step("dynamodb Client::new");
        let sqs = aws_sdk_sqs::Client::new(&conf);
        step("sqs Client::new");
        let cb = env.callback().unwrap();
        step("HttpCallback::new");
        std::hint::black_box((dynamo, sqs, cb));
    });
}
