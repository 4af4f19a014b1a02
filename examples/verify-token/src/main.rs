//! Verifies a bearer token with `scopegate-validator` and prints the principal as JSON.
//!
//! Run with: `cargo run -p example-verify-token -- --issuer https://idp.example.com
//! --audience https://api.example.com --algorithm RS256 <TOKEN>`
//!
//! Add `--require akamai:social_profile:read` (repeatable) to check scopes too, and `--method`
//! with a `prefix:name` requirement to derive the permission from an HTTP method.

use std::process::ExitCode;

use clap::Parser;
use scopegate_validator::{Algorithm, Error, Requirement, Validator};

#[derive(Parser)]
#[command(about = "Verify an OAuth2 bearer token against an issuer's published keys")]
struct Args {
    /// The issuer; its keys are found through OIDC discovery.
    #[arg(long, env = "ISSUER")]
    issuer: String,
    /// An accepted audience (repeatable).
    #[arg(long, env = "AUDIENCE", required = true)]
    audience: Vec<String>,
    /// An accepted algorithm (repeatable): RS256, RS384, RS512, PS256, PS384, PS512, ES256,
    /// ES384, ES512, EdDSA.
    #[arg(long = "algorithm", default_values = ["RS256", "ES256", "EdDSA"])]
    algorithms: Vec<Algorithm>,
    /// Require the `typ` header, e.g. `at+jwt`.
    #[arg(long)]
    typ: Option<String>,
    /// Scopes the token must grant (all of them).
    #[arg(long)]
    require: Vec<String>,
    /// With one `--require prefix:name`: the HTTP method whose permission is required.
    #[arg(long)]
    method: Option<String>,
    /// The token.
    token: String,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<String, String> {
    let mut builder = Validator::builder()
        .issuer(args.issuer)
        .audiences(args.audience)
        .algorithms(args.algorithms);
    if let Some(typ) = args.typ {
        builder = builder.required_typ(typ);
    }
    let validator = builder.build().map_err(|error| error.to_string())?;
    let (requirement, method) = match (&args.method, args.require.as_slice()) {
        (Some(method), [scope]) => (Some(Requirement::method_derived(scope)), method.as_str()),
        (Some(_), _) => return Err("--method needs exactly one --require prefix:name".into()),
        (None, []) => (None, "GET"),
        (None, scopes) => (Some(Requirement::all_of(scopes)), "GET"),
    };
    let requirement = requirement.transpose().map_err(|error| error.to_string())?;
    let principal = validator.validate(&args.token).await.map_err(describe)?;
    if let Some(requirement) = &requirement {
        principal.check(requirement, method).map_err(describe)?;
    }
    let summary = serde_json::json!({
        "sub": principal.subject(),
        "client_id": principal.client_id(),
        "scopes": principal.scopes(),
        "claims": principal.claims(),
    });
    serde_json::to_string_pretty(&summary).map_err(|error| error.to_string())
}

fn describe(error: Error) -> String {
    match error.rfc6750_code() {
        Some(code) => format!("rejected ({code}): {error}"),
        None => format!("rejected: {error}"),
    }
}
